#!/usr/bin/env bash
# Runs every ```sh block of docs/DATA.md, in order, in one shell, on a small synthetic tree shaped like
# SlimPajama-627B (train/chunk1, train/chunk2, validation/chunk1; .jsonl.zst files whose lines hold
# `text` and `meta.redpajama_set_name`, all seven RedPajama sources) with the sp_tiny fixture tokenizer
# as data/llama/tokenizer.model. `sambalm train` is scaled down to a tiny model and a few steps; every
# other command runs as written. Needs python3 and the zstd program.
# Usage: scripts/check_data_doc.sh [SAMBALM_BINARY] [WORK_DIR]   (defaults: build/sambalm, a temp dir)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${1:-$ROOT/build/sambalm}")
WORK=${2:-$(mktemp -d /tmp/sambalm_data_doc.XXXXXX)}
FIXTURES=${SAMBALM_FIXTURES:-$ROOT/../shared/fixtures}
command -v zstd >/dev/null || { echo "check_data_doc: needs the zstd program (apt-get install zstd)" >&2; exit 2; }
mkdir -p "$WORK/data/llama"
cd "$WORK"
cp "$FIXTURES/sp_tiny/tokenizer.model" data/llama/tokenizer.model

# The tree: 4 train files (2 chunks) of 140 documents and 1 validation file of 70, sources in turn.
python3 - data/SlimPajama-627B <<'PY'
import json, os, random, subprocess, sys
root = sys.argv[1]
random.seed(20)
sets = ["RedPajamaCommonCrawl", "RedPajamaC4", "RedPajamaGithub", "RedPajamaBook", "RedPajamaArXiv",
        "RedPajamaWikipedia", "RedPajamaStackExchange"]
words = "the state of a selective scan window attention token model layer data train é 中文 😀".split()
def write(path, n):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path[:-4], "w") as f:
        for i in range(n):
            text = " ".join(random.choice(words) for _ in range(random.randint(20, 120)))
            f.write(json.dumps({"text": text, "meta": {"redpajama_set_name": sets[i % len(sets)]}}) + "\n")
    subprocess.run(["zstd", "-q", "--rm", "-f", path[:-4], "-o", path], check=True)
for c in (1, 2):
    for k in range(2):
        write(f"{root}/train/chunk{c}/example_train_{k}.jsonl.zst", 140)
write(f"{root}/validation/chunk1/example_holdout_0.jsonl.zst", 70)
PY

# Section 4 reads data that prepare_slimpajama.py wrote: made here in its layout and names
# (PackedDatasetBuilder chunks, prefix <split>_slimpajama_<process>), from our own litpkd writer.
"$BIN" prepare -q -t data/llama/tokenizer.model --format litpkd --chunk-size 2048 --train-fraction 1 \
  --split train --out litpkd_train data/SlimPajama-627B >/dev/null
"$BIN" prepare -q -t data/llama/tokenizer.model --format litpkd --chunk-size 2048 --train-fraction 1 \
  --split validation --out litpkd_val data/SlimPajama-627B >/dev/null
mkdir -p data/slim
for f in litpkd_train/train_*.bin; do cp "$f" "data/slim/train_slimpajama_0_${f##*_}"; done
for f in litpkd_val/train_*.bin; do cp "$f" "data/slim/validation_slimpajama_0_${f##*_}"; done

# `sambalm` as the page calls it; `train` scaled down (its other options as written); a run with
# --resume goes 2 steps further than the one it continues.
sambalm() {
  { set +x; } 2>/dev/null
  if [ "$1" != train ]; then
    echo "+ sambalm $*" >&2
    "$BIN" "$@"
    return
  fi
  shift
  local a=() steps=4
  for x in "$@"; do [ "$x" = --resume ] && steps=6; done
  while [ $# -gt 0 ]; do
    case "$1" in
      --model) a+=("$1" "$2" --n-layer 2 --n-embd 32 --n-head 2 --intermediate-size 64 --local-window 8); shift 2 ;;
      --seq-len) a+=("$1" 32); shift 2 ;;
      --batch) a+=("$1" 2); shift 2 ;;
      --grad-accum) a+=("$1" 1); shift 2 ;;
      --steps) a+=("$1" "$steps"); shift 2 ;;
      --eval-every | --save-every) a+=("$1" 2); shift 2 ;;
      *) a+=("$1"); shift ;;
    esac
  done
  echo "+ sambalm train ${a[*]} --eval-batches 2 --log-every 1" >&2
  "$BIN" train "${a[@]}" --eval-batches 2 --log-every 1
}

awk '/^```sh$/ {on = 1; next} /^```$/ {on = 0} on' "$ROOT/docs/DATA.md" >doc_commands.sh
echo "check_data_doc: running $(grep -c . doc_commands.sh) lines of docs/DATA.md in $WORK"
# shellcheck disable=SC1091
source ./doc_commands.sh
# What the page promises: seven sources, a mixture run and its resumed continuation, litpkd chunks.
test "$(find data/slim_train -mindepth 1 -maxdepth 1 -type d -name 'RedPajama*' | wc -l)" = 7
test -f runs/samba_421m/metrics.jsonl
grep -q '"step": 6' runs/samba_421m/metrics.jsonl || grep -q '"step":6' runs/samba_421m/metrics.jsonl
test -f runs/from_litgpt/metrics.jsonl
test -f data/slim_litpkd/train_0000000000.bin
echo "check_data_doc: every command of docs/DATA.md ran ($WORK)"
