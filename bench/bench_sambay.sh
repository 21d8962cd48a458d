#!/usr/bin/env bash
# SambaY (Phi-4-mini-flash shape) on the CPU: prefill with and without the cross-decoder skip, batch-1
# decode against the memory-bandwidth bound at 1K and 32K of context, and the decode state per sequence
# (with the peak RSS) at 1K, 16K and 64K. Random weights, fp32 unless a weight format is given: the
# full 32-layer shape (phi4miniflash_d32) needs 15.4 GB of weights in fp32, 7.7 GB in bf16 (drawn
# straight into bf16, one fp32 matrix at a time); the default model is bench/phi4miniflash_d8.json, the
# same shape at depth 8 (blocks M D M D m K G X: the self-decoder, the memory and shared-KV layers, one
# GMU and one cross-attention). Prints the raw table lines; docs/BENCHMARKS.md ("SambaY") has the figures.
#
#   bench/bench_sambay.sh [path/to/sambalm] [config or preset] [threads] [weights format: f32|bf16|f16|q8]
#   e.g. bench/bench_sambay.sh build/sambalm phi4miniflash_d32 2 bf16
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/build/sambalm}"
MODEL="${2:-$ROOT/bench/phi4miniflash_d8.json}"
THREADS="${3:-2}"
DTYPE="${4:-}"
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
WD=()
[[ -n "$DTYPE" ]] && WD=(--weights-dtype "$DTYPE")
run() { echo "+ sambalm bench -m $MODEL ${WD[*]} $*"; "$BIN" bench -m "$MODEL" "${WD[@]}" "$@"; }
# Prefill of a real prompt (PROMPT tokens, default 4K: about 4 minutes per run at depth 8 on a
# shared 2-core machine), the cross-decoder on every token first, then on the last one only; then
# steps at that context.
PROMPT="${PROMPT:-4096}"
run --context "$PROMPT" --max-context $((PROMPT + 8)) --cross-decoder both --decode-tokens 4 --warmup 1
# Decode at 1K and 32K (position jumped after a 64-token prefill: the shared cache is read up to it),
# both contexts' states held at once and their steps interleaved, beside the bandwidth bound.
run --context 1K,32K --max-context 32800 --fill jump --prefill-tokens 64 --decode-tokens 6 --warmup 1 --bandwidth \
  --interleave
# State per sequence and peak RSS, each context in its own process with a cache of that length (+8).
for ctx in 1024 16384 65536; do
  run --context "$ctx" --max-context $((ctx + 8)) --fill jump --prefill-tokens 64 --decode-tokens 2 --warmup 0
done
