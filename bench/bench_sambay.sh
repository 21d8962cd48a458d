#!/usr/bin/env bash
# SambaY (Phi-4-mini-flash shape) on the CPU: prefill of a 4K prompt with and without the cross-decoder
# skip, batch-1 decode against the memory-bandwidth bound at 1K and 32K of context, and the decode state
# per sequence (with the peak RSS) at 1K, 16K and 64K. Random fp32 weights. The full 32-layer shape
# needs 15.4 GB of weights; on a small machine this runs bench/phi4miniflash_d8.json, the same shape at
# depth 8 (blocks M D M D m K G X: the self-decoder, the memory and shared-KV layers, one GMU and one
# cross-attention). Prints the raw table lines; docs/BENCHMARKS.md ("SambaY") has the figures.
#
#   bench/bench_sambay.sh [path/to/sambalm] [config or preset] [threads]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/build/sambalm}"
MODEL="${2:-$ROOT/bench/phi4miniflash_d8.json}"
THREADS="${3:-2}"
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
run() { echo "+ sambalm bench $*"; "$BIN" bench -m "$MODEL" "$@"; }
# Prefill: a real 4K prompt, the cross-decoder on its last token only, then on every token.
run --context 4K --max-context 4096 --cross-decoder last --decode-tokens 2 --warmup 0
run --context 4K --max-context 4096 --cross-decoder all --decode-tokens 2 --warmup 0
# Decode at 1K and 32K (position jumped after a 64-token prefill: the shared cache is read up to it).
run --context 1K,32K --max-context 32768 --fill jump --prefill-tokens 64 --decode-tokens 8 --bandwidth
# State per sequence and peak RSS, each context in its own process with a cache of that length.
for ctx in 1024 16384 65536; do
  run --context "$ctx" --max-context "$ctx" --fill jump --prefill-tokens 64 --decode-tokens 2 --warmup 0
done
