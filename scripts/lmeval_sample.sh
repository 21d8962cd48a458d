#!/usr/bin/env bash
# Runs the sample multiple-choice task (data/tasks/sample_mc.jsonl) through lm-evaluation-harness's
# `local-completions` model against `sambalm serve`, and through `sambalm eval mc`, on the same small
# model, and compares the two: acc, acc_norm and every choice's log-likelihood (docs/SERVE.md,
# "lm-evaluation-harness through sambalm serve"). Not part of the tests: it installs lm-eval from PyPI
# into a virtual environment outside the repository.
#
#   scripts/lmeval_sample.sh [WORK_DIR]       (default /tmp/sambalm-lmeval)
# Environment: SAMBALM (default build/sambalm), VENV (default WORK_DIR/venv), FIXTURES (default
# ../shared/fixtures), PYTHON (default python3), LM_EVAL_VERSION (default 0.4.13).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/sambalm-lmeval}
SAMBALM=${SAMBALM:-build/sambalm}
VENV=${VENV:-$WORK/venv}
FIXTURES=${FIXTURES:-../shared/fixtures}
PYTHON=${PYTHON:-python3}
LM_EVAL_VERSION=${LM_EVAL_VERSION:-0.4.13}
mkdir -p "$WORK"

# lm-eval's API models, and transformers for the huggingface tokenizer backend (no PyTorch needed).
if [[ ! -x $VENV/bin/lm_eval ]]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q "lm-eval[api]==$LM_EVAL_VERSION" transformers
fi

# A small Samba over the bpe_tiny fixture tokenizer, trained for a few seconds on this repository's docs.
MODEL=$WORK/run/model
if [[ ! -f $MODEL/model.safetensors ]]; then
  cat docs/*.md README.md >"$WORK/corpus.txt"
  "$SAMBALM" train --model Samba_421M --n-layer 2 --n-embd 64 --n-head 4 --intermediate-size 128 \
    --local-window 32 --vocab-size 3000 -t "$FIXTURES/bpe_tiny/tokenizer.json" -d "$WORK/corpus.txt" \
    --seq-len 64 -b 8 --steps 150 --eval-every 0 --threads 1 -q -o "$WORK/run"
fi

"$SAMBALM" eval mc --model "$MODEL" --tasks data/tasks/sample_mc.jsonl --threads 1 -q --json >"$WORK/eval_mc.json"

"$SAMBALM" serve --model "$MODEL" --port 0 --threads 1 >"$WORK/port.txt" 2>"$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER' EXIT
for _ in $(seq 100); do [[ -s $WORK/port.txt ]] && break; sleep 0.1; done
PORT=$(head -1 "$WORK/port.txt")

# The task's data is a local file and the tokenizer comes from the server (or the model directory):
# nothing is fetched from a hub.
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
for backend in remote huggingface; do
  args=model=model,base_url=http://127.0.0.1:$PORT/v1/completions,tokenizer_backend=$backend
  [[ $backend == huggingface ]] && args+=,tokenizer=$MODEL
  rm -rf "$WORK/lm_eval_$backend"
  (
    set -x
    "$VENV/bin/lm_eval" --model local-completions --model_args "$args" \
      --include_path data/tasks --tasks sambalm_sample_mc \
      --log_samples --output_path "$WORK/lm_eval_$backend"
  ) 2>&1 | grep -v -e '^[0-9-]*:[0-9:]* INFO' -e 'it/s]' -e 'PyTorch was not found'
done

"$VENV/bin/python" - "$WORK" <<'EOF'
import glob, json, sys
work = sys.argv[1]
mc = json.load(open(f"{work}/eval_mc.json"))
print(f"sambalm eval mc: acc {mc['acc']:.4f} acc_norm {mc['acc_norm']:.4f}")
for backend in ("remote", "huggingface"):
    res = json.load(open(glob.glob(f"{work}/lm_eval_{backend}/*/results_*.json")[0]))["results"]["sambalm_sample_mc"]
    diff = 0.0
    for line in open(glob.glob(f"{work}/lm_eval_{backend}/*/samples_*.jsonl")[0]):
        s = json.loads(line)
        for j, r in enumerate(s["filtered_resps"]):
            diff = max(diff, abs(float(r[0]) - mc["results"][s["doc_id"]]["loglik"][j]))
    # sambalm's acc_norm divides by UTF-8 bytes: the harness's acc_bytes (its acc_norm: characters).
    same = res["acc,none"] == mc["acc"] and res["acc_bytes,none"] == mc["acc_norm"]
    print(f"lm_eval ({backend} tokenizer): acc {res['acc,none']:.4f} acc_norm {res['acc_norm,none']:.4f} "
          f"acc_bytes {res['acc_bytes,none']:.4f}; largest |log-likelihood difference| {diff:.2e}; "
          f"{'equal' if same else 'DIFFERENT'}")
EOF
