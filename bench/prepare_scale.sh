#!/usr/bin/env bash
# `sambalm prepare` at scale: tokens/s, MB/s of compressed input and peak RSS for about 100 MB and 1 GB
# of SlimPajama-shaped .jsonl.zst (the first 10% of the files, then all), with each tokenizer given.
# Usage: bench/prepare_scale.sh WORK_DIR TOKENIZER... (from the repository root, after a Release build)
#   WORK_DIR/slim is made first when missing: 40 files of ~99 MB of JSON Lines each (~1 GB as .zst) cut
#   from data/corpus.txt (scripts/get_corpus.sh) by bench/make_slim_like.py. Output goes to WORK_DIR/out
#   (removed after each run). Prints one Markdown table row per run.
set -euo pipefail
WORK=$1
shift
BIN=${SAMBALM:-build/sambalm}
CORPUS=${CORPUS:-data/corpus.txt}
if [ ! -d "$WORK/slim" ]; then
  python3 bench/make_slim_like.py "$CORPUS" "$WORK/slim" 40 99e6
fi
echo "| tokenizer | input .zst MB | files | tokens | wall s | tokens/s (wall) | MB/s of .zst (wall) | CPU s | tokens/s per CPU s | peak RSS MB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for tok in "$@"; do
  for pct in 0.1 1; do
    rm -rf "$WORK/out"
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/time.txt" \
      "$BIN" prepare -q -t "$tok" --threads 2 --percentage "$pct" --split train --out "$WORK/out" "$WORK/slim" \
      >"$WORK/summary.txt"
    read -r wall user sys rss_kb <"$WORK/time.txt"
    python3 - "$tok" "$pct" "$wall" "$user" "$sys" "$rss_kb" "$WORK/out/meta.json" <<'PY'
import json, os, sys
tok, pct, wall, user, sys_, rss_kb, meta = sys.argv[1:]
m = json.load(open(meta))
tokens = m["train_tokens"] + m["val_tokens"]
mb = sum(os.path.getsize(f) for f in m["inputs"]) / 1e6
cpu = float(user) + float(sys_)
print(f"| {os.path.basename(tok)} | {mb:,.0f} | {len(m['inputs'])} | {tokens:,} | {float(wall):.1f} | "
      f"{tokens / float(wall) / 1e6:.2f} M | {mb / float(wall):.1f} | {cpu:.1f} | {tokens / cpu / 1e6:.2f} M | "
      f"{int(rss_kb) / 1024:.0f} |")
PY
  done
done
rm -rf "$WORK/out"
