#!/usr/bin/env bash
# The main job, start to finish on the CPU: install what is missing, build, make the corpus (from an
# installed Debian package, scripts/get_corpus.sh), train a small character-level Samba for a few
# minutes, then show its validation bits per byte, a generated sample and where the loss plot is.
#
# Usage: scripts/demo.sh [RUN_DIR]            (default runs/demo)
# Env:   DEMO_STEPS (default 300), DEMO_THREADS (default: all cores), SAMBALM_BUILD (default build)
# An interrupted demo (Ctrl-C) continues where it stopped when run again.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/demo}
STEPS=${DEMO_STEPS:-300}
BUILD=${SAMBALM_BUILD:-build}
THREADS=${DEMO_THREADS:-$(nproc)}

echo "== 1/4 packages and build"
bash scripts/setup.sh
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" --target sambalm-cli
SAMBALM=$BUILD/sambalm

echo "== 2/4 corpus"
bash scripts/get_corpus.sh data
CORPUS=data/corpus.txt

echo "== 3/4 training a char-level Samba ($STEPS steps; Ctrl-C stops and saves, run again to continue)"
# The reference recipe's model (../shared/training: 4 blocks Mamba/SWA/Mamba/SWA, d=128, 4 heads,
# MLP 256, window 64, 791k parameters) and optimizer, on fewer steps.
RESUME=()
if [ -d "$RUN/checkpoints" ] && [ ! -d "$RUN/model" ]; then
  RESUME=(--resume)
else
  rm -rf "$RUN"
fi
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=1
set +e
"$SAMBALM" train --model Samba_421M --n-layer 4 --n-embd 128 --n-head 4 --intermediate-size 256 \
  --local-window 64 --vocab-size 256 --data "$CORPUS" --tokenizer bytes --val-fraction 0.1 \
  --seq-len 256 --batch 8 --steps "$STEPS" --lr 2e-3 --min-lr 2e-4 --warmup $((STEPS / 12)) \
  --eval-every 100 --eval-batches 16 --sample-every 100 --sample-tokens 200 --temperature 0.8 \
  --save-every 100 --log-every 20 --seed 1234 --out "$RUN" "${RESUME[@]}"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  echo "training stopped (exit $rc); run scripts/demo.sh again to continue from the last checkpoint"
  exit $rc
fi

echo "== 4/4 results"
python3 - "$RUN/metrics.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
evals = [r for r in recs if "val_loss" in r]
first, last = evals[0], evals[-1]
print(f"validation: {last['val_bpb']:.3f} bits per byte (loss {last['val_loss']:.4f} nats) at step {last['step']}, "
      f"from {first['val_bpb']:.3f} at step {first['step']}")
PY
echo "--- a sample from the trained model (sambalm generate, temperature 0.8) ---"
"$SAMBALM" generate --model "$RUN/model" --prompt "The Python " --max-tokens 300 \
  --temperature 0.8 --top-k 0 --seed 1 --quiet || true
echo
echo "---"
"$SAMBALM" plot "$RUN"
echo "loss curves: $RUN/loss.svg (open in a browser); metrics: $RUN/metrics.jsonl; samples during training: $RUN/samples.txt"
