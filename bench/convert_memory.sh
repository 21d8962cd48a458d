#!/usr/bin/env bash
# Checkpoint conversion: peak memory and time of `sambalm convert` on a synthetic torch.save
# pytorch_model.bin (tools/make_big_pth.py: a Mamba LM, mamba_ssm names, tied head), compared with
# copying the same file through user memory (`dd bs=16M conv=fsync`: reads and writes as many bytes
# as an f32 conversion, at disk speed) and with `cp` + `sync` (in-kernel copy, a lower bound).
# Usage: bench/convert_memory.sh [GB]   (default 2.0; BUILD=build, WORK=a temp dir)
# Fails when peak RSS exceeds 1.25x the input file size.
set -euo pipefail
cd "$(dirname "$0")/.."
GB=${1:-2.0}
BUILD=${BUILD:-build}
WORK=${WORK:-$(mktemp -d)}
KEEP=${KEEP:-0}
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
[ -x "$BUILD/sambalm" ] || { echo "build $BUILD/sambalm first (ninja -C $BUILD sambalm-cli)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing: run scripts/setup.sh (Debian package 'time')" >&2; exit 1; }

[ -f "$WORK/src/pytorch_model.bin" ] || python3 tools/make_big_pth.py "$WORK/src" --gb "$GB"
SRC="$WORK/src/pytorch_model.bin"
BYTES=$(stat -c %s "$SRC")
cat "$SRC" > /dev/null  # the same page-cache state for both measurements

calc() { awk "BEGIN { print $1 }"; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); calc "$t1 - $t0"; }
DD_S=$(secs dd if="$SRC" of="$WORK/copy.bin" bs=16M conv=fsync status=none)
rm -f "$WORK/copy.bin"
CP_S=$(secs bash -c "cp '$SRC' '$WORK/copy.bin' && sync '$WORK/copy.bin'")
rm -f "$WORK/copy.bin"

run_convert() {  # $1 = label, rest = extra convert arguments
  local label=$1; shift
  rm -rf "$WORK/out"
  /usr/bin/time -v "$BUILD/sambalm" convert "$WORK/src" --out "$WORK/out" "$@" > /dev/null 2> "$WORK/time.txt"
  local rss_kb wall
  rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/time.txt")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$WORK/time.txt")
  local ratio
  ratio=$(calc "$rss_kb * 1024 / $BYTES")
  printf '| %s | %.2f GB | %.2f GB | %.2fx | %s | %.1f s | %.1f s |\n' "$label" "$(calc "$BYTES / 1e9")" \
    "$(calc "$rss_kb * 1024 / 1e9")" "$ratio" "$wall" "$DD_S" "$CP_S"
  if [ "$(calc "($ratio > 1.25) ? 1 : 0")" = 1 ]; then echo "FAIL: peak RSS ${ratio}x the file size" >&2; return 1; fi
}

echo "| conversion | input | peak RSS | RSS / input | convert wall | dd wall | cp + sync wall |"
echo "|---|---:|---:|---:|---:|---:|---:|"
run_convert "sambalm names, f32"
run_convert "mamba_ssm names, f32" --to mamba_ssm
run_convert "sambalm names, bf16" --dtype bf16
