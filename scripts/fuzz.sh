#!/usr/bin/env bash
# Fuzzes every reader of untrusted files: builds the libFuzzer targets tests/fuzz/fuzz_*.cpp with
# clang, ASan + UBSan and coverage instrumentation of the library code they reach (build-fuzz/), then
# runs each for SECONDS (default 40: nine targets make six minutes) on a fresh copy of its seed corpus:
#   fuzz_safetensors     safetensors files            fuzz_torch_zip     torch.save zip/legacy files
#   fuzz_unpickler       pickles                      fuzz_shard_index   *.index.json of sharded checkpoints
#   fuzz_config_json     config.json (every format)   fuzz_tokenizer_json  tokenizer.json, then encode/decode
#   fuzz_sentencepiece   tokenizer.model              fuzz_shards        token shards (prepare's .bin files)
#   fuzz_state_file      decode state files (--save-state)
# Seeds: the fixtures' files, tests/data, and small valid files that tests/fuzz/seeds.py writes.
# Exits non-zero when a target crashes; the crashing input is kept as build-fuzz/artifacts/<target>-crash-*.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
SECS=${1:-40}
cd "$(dirname "$0")/.."
FIXTURES=${SAMBALM_FIXTURES:-$PWD/../shared/fixtures}
BUILD=build-fuzz
export CCACHE_DIR=${CCACHE_DIR:-$PWD/.cache/ccache}

CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAMBALM_FUZZ=ON -DSAMBALM_CUDA=OFF \
  -DSAMBALM_TESTS=OFF -DSAMBALM_BENCH=OFF > /dev/null
TARGETS=()
for f in tests/fuzz/fuzz_*.cpp; do TARGETS+=("$(basename "$f" .cpp)"); done
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target "${TARGETS[@]}"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TMPDIR="$WORK"  # the targets that read by path write their inputs here
python3 tests/fuzz/seeds.py "$FIXTURES" tests/data/pickles "$WORK"
mkdir -p "$BUILD/artifacts"
status=0
for t in "${TARGETS[@]}"; do
  echo "== $t: ${SECS}s"
  log="$BUILD/artifacts/$t.log"
  if "$BUILD/$t" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$BUILD/artifacts/$t-" "$WORK/$t" > "$log" 2>&1; then
    grep -E "^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb" "$log" || tail -n 3 "$log"
  else
    echo "$t FAILED (log: $log)"
    tail -n 40 "$log"
    status=1
  fi
done
exit $status
