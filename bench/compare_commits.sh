#!/usr/bin/env bash
# Side-by-side speed of an earlier commit and the working tree, on this machine, in one run.
#
# Builds BASE in a worktree (build-base/src, built in build-base/out) and the working tree (in
# build-base/new), then takes every
# measurement below with both programs, alternating which goes first, for ROUNDS rounds, and prints a
# Markdown table of the medians with the ratio new/base (higher is better for tokens/s, the ratio is
# inverted for milliseconds so that > 1 always means the new tree is faster).
#   decode, batch 1:   mamba-130m, Samba_421M            sambalm bench --fill jump (tokens/s)
#   decode, batch 32:  mamba-130m, Samba_421M
#   prefill of a 4K-token prompt: Samba_421M              sambalm bench --fill real (tokens/s)
#   training step: bench_model (the reference recipe's Samba, forward + backward, ms)
# Weights are the presets' random initialisation (speed does not depend on the values). Both programs
# run with the same OpenMP settings (OMP_WAIT_POLICY, default PASSIVE; OMP_NUM_THREADS if set).
#
# Usage: bench/compare_commits.sh BASE [ROUNDS]      e.g. bench/compare_commits.sh a65a50f 5
set -euo pipefail
BASE=${1:?usage: bench/compare_commits.sh BASE [ROUNDS]}
ROUNDS=${2:-5}
cd "$(dirname "$0")/.."
ROOT=$PWD
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$ROOT")}
# The base tree lives in build-base/src (ignored by git, reused between runs so the compiler cache hits).
WT=$ROOT/build-base/src
git -C "$ROOT" worktree remove --force "$WT" > /dev/null 2>&1 || rm -rf "$WT"
git -C "$ROOT" worktree prune
mkdir -p "$ROOT/build-base"
git -C "$ROOT" worktree add -q --detach "$WT" "$BASE"
trap 'git -C "$ROOT" worktree remove --force "$WT" > /dev/null 2>&1 || true' EXIT
base_sha=$(git -C "$WT" rev-parse --short HEAD)
new_sha=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src bench || echo "+changes")

build() {  # src_dir build_dir
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSAMBALM_TESTS=OFF -DSAMBALM_CUDA=OFF > /dev/null
  cmake --build "$2" -j "${JOBS:-$(nproc)}" --target sambalm-cli bench_model > /dev/null
}
echo "building $BASE ($base_sha) and the working tree ($new_sha)" >&2
build "$WT" "$ROOT/build-base/out"
build "$ROOT" "$ROOT/build-base/new"

OUT=$(mktemp -d)
# measure KIND BIN_DIR -> prints one number
measure() {
  local kind=$1 dir=$2 j="$OUT/m.json"
  case $kind in
    dec1_m130) "$dir/sambalm" bench -m mamba-130m --batch 1 --context 1K --fill jump --warmup 4 --decode-tokens 48 --json "$j" > /dev/null ;;
    dec1_s421) "$dir/sambalm" bench -m Samba_421M --batch 1 --context 1K --fill jump --warmup 2 --decode-tokens 24 --json "$j" > /dev/null ;;
    dec32_m130) "$dir/sambalm" bench -m mamba-130m --batch 32 --context 1K --fill jump --warmup 4 --decode-tokens 48 --json "$j" > /dev/null ;;
    dec32_s421) "$dir/sambalm" bench -m Samba_421M --batch 32 --context 1K --fill jump --warmup 1 --decode-tokens 8 --json "$j" > /dev/null ;;
    pre4k_s421) "$dir/sambalm" bench -m Samba_421M --batch 1 --context 4K --fill real --warmup 0 --decode-tokens 1 --json "$j" > /dev/null ;;
    train) "$dir/bench_model" --iters 5 | sed -n 's/.*step \([0-9.]*\) ms.*/\1/p'; return ;;
  esac
  case $kind in
    pre4k_*) python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows'][0]['prefill_tok_s'])" "$j" ;;
    *) python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows'][0]['decode_tok_s'])" "$j" ;;
  esac
}

KINDS=(dec1_m130 dec1_s421 dec32_m130 dec32_s421 pre4k_s421 train)
declare -A A B
for r in $(seq 1 "$ROUNDS"); do
  for k in "${KINDS[@]}"; do
    if (( r % 2 )); then
      a=$(measure "$k" "$ROOT/build-base/out"); b=$(measure "$k" "$ROOT/build-base/new")
    else
      b=$(measure "$k" "$ROOT/build-base/new"); a=$(measure "$k" "$ROOT/build-base/out")
    fi
    A[$k]+="$a "; B[$k]+="$b "
    echo "round $r $k base $a new $b" >&2
  done
done

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "Base $BASE ($base_sha) against $new_sha, $ROUNDS rounds alternating, medians; $cpu, $(nproc) cores, OMP_WAIT_POLICY=$OMP_WAIT_POLICY."
echo
echo "| measurement | unit | base | new | new vs base |"
echo "|---|---|---:|---:|---:|"
for k in "${KINDS[@]}"; do
  python3 - "$k" "${A[$k]}" "${B[$k]}" <<'EOF'
import statistics, sys
k, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
names = {"dec1_m130": ("decode batch 1, mamba-130m", "tok/s"), "dec1_s421": ("decode batch 1, Samba_421M", "tok/s"),
         "dec32_m130": ("decode batch 32, mamba-130m", "tok/s"), "dec32_s421": ("decode batch 32, Samba_421M", "tok/s"),
         "pre4k_s421": ("prefill 4K prompt, Samba_421M", "tok/s"), "train": ("training step, bench_model", "ms")}
name, unit = names[k]
ma, mb = statistics.median(a), statistics.median(b)
ratio = ma / mb if unit == "ms" else mb / ma
print(f"| {name} | {unit} | {ma:.2f} | {mb:.2f} | {ratio:.3f}x |")
EOF
done
