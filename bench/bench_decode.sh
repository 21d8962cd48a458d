#!/usr/bin/env bash
# Decoding benchmarks on the CPU: batch-1 decode speed of mamba-130m- and Samba_421M-sized models
# (random fp32 weights) beside the memory-bandwidth bound, constant memory/time over 1K..1M tokens of
# context, and batch throughput. Writes the section "Decoding (CPU)" of docs/BENCHMARKS.md.
#
#   bench/bench_decode.sh [path/to/sambalm] [threads]
#
# Peak-RSS rows run each configuration in its own process, so each peak is that configuration's own;
# the per-token time over the context runs all contexts interleaved in one process.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/build/sambalm}"
THREADS="${2:-2}"
# BENCH_OUT=DIR keeps the raw JSON there; BENCH_RENDER_ONLY=1 with it rewrites the section from
# an earlier run without measuring again.
if [ -n "${BENCH_OUT:-}" ]; then
  OUT="$BENCH_OUT"
  mkdir -p "$OUT"
else
  OUT="$(mktemp -d)"
  trap 'rm -rf "$OUT"' EXIT
fi
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"

# A small Samba (same block pattern as Samba_421M: Mamba / SWA, each + SwiGLU MLP) whose 1M-token
# prefill takes minutes on 2 cores, for the real-context constant-memory run.
cat > "$OUT/samba_small.json" <<'EOF'
{"name": "samba_small", "n_layer": 4, "n_embd": 32, "n_head": 4, "n_query_groups": 4, "head_size": 8,
 "intermediate_size": 64, "local_window": 64, "mb_per_layer": 2, "vocab_size": 256,
 "padded_vocab_size": 256, "padding_multiple": 64, "block_size": 4096, "rotary_percentage": 1.0,
 "bias": false, "mamba_init": true, "_norm_class": "RMSNorm", "_mlp_class": "LLaMAMLP", "norm_eps": 1e-05,
 "mlp": true, "mamba": false, "full_per_layer": 1000000, "condense_ratio": 1, "parallel_residual": false}
EOF

run() {  # name, args...
  local name="$1"; shift
  echo "+ sambalm bench $*" >&2
  "$BIN" bench "$@" --json "$OUT/$name.json" >&2
}

if [ -z "${BENCH_RENDER_ONLY:-}" ]; then
  cut -d' ' -f1-3 /proc/loadavg >"$OUT/load_before"
  git -C "$ROOT" rev-parse --short HEAD >"$OUT/commit" 2>/dev/null || echo "?" >"$OUT/commit"
  # 1. Batch-1 decode speed against the bound (bandwidth measured in the same process).
  run m130 -m mamba-130m --batch 1 --context 1K --fill jump --prefill-tokens 64 --decode-tokens 32 --bandwidth
  run s421 -m Samba_421M --batch 1 --context 4K --fill jump --prefill-tokens 64 --decode-tokens 16 --bandwidth
  # 2. Constant memory and time. Memory: each context in its own process (its own peak RSS):
  # Samba_421M with the position jump, a small Samba with every token really prefilled. Time: all
  # contexts in one process, steps interleaved round-robin (machine noise falls on every context alike),
  # for Samba_421M (window 2048) and Samba_421M_1k_window (window 1024: full rings at every context).
  for c in 1K 16K 128K 1M; do
    run "s421_$c" -m Samba_421M --batch 1 --context "$c" --fill jump --prefill-tokens 64 --decode-tokens 16
  done
  for c in 1K 16K 128K 1M; do
    run "small_$c" -m "$OUT/samba_small.json" --batch 1 --context "$c" --fill real --chunk 1024 --decode-tokens 256 \
      --warmup 16
  done
  run s421_inter -m Samba_421M --batch 1 --context 1K,16K,128K,1M --fill jump --prefill-tokens 64 \
    --decode-tokens 96 --warmup 4 --interleave
  run s421w1k_inter -m Samba_421M_1k_window --batch 1 --context 1K,16K,128K,1M --fill jump --prefill-tokens 64 \
    --decode-tokens 96 --warmup 4 --interleave
  # 3. Throughput over the batch.
  run m130_batch -m mamba-130m --batch 1,2,4,8,16,32,64,128 --context 1K --fill jump --prefill-tokens 16 --decode-tokens 8
  cut -d' ' -f1-3 /proc/loadavg >"$OUT/load_after"
  # 4. Work per step, counted (last: it needs no quiet machine). callgrind counts the instructions of
  # one process (1 thread) that decodes at every context, dumping its counts after each DecodeModel::step; the same binary and inputs give the
  # same count whatever else the machine is doing. Each context runs 3 steps: the first dump of a
  # context also holds its set-up, the next two are one step each.
  if command -v valgrind >/dev/null; then
    echo "+ valgrind --tool=callgrind sambalm bench -m Samba_421M --context 1K,16K,128K,1M" >&2
    OMP_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg" \
      --dump-after='sambalm::DecodeModel::step(sambalm::DecodeState* const*, long, int const*, float*)' \
      "$BIN" bench -m Samba_421M --batch 1 --context 1K,16K,128K,1M --fill jump --prefill-tokens 0 --warmup 1 \
      --decode-tokens 2 >"$OUT/cg.log" 2>&1 || echo "callgrind run failed (see $OUT/cg.log)" >&2
  fi
fi
LOAD_BEFORE="$(cat "$OUT/load_before")"
LOAD_AFTER="$(cat "$OUT/load_after")"

python3 - "$OUT" "$ROOT/docs/BENCHMARKS.md" "$THREADS" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import json, os, re, subprocess, sys
out, md_path, threads, load0, load1 = sys.argv[1:6]
def J(n):  # None when that run did not finish
    p = os.path.join(out, n + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
L = []
L.append("## Decoding (CPU)\n")
commit = open(os.path.join(out, "commit")).read().strip() if os.path.exists(os.path.join(out, "commit")) else "?"
L.append(f"`bench/bench_decode.sh` (`sambalm bench`, src/cli/cmd_bench.cpp): random fp32 weights, {threads} OpenMP "
         f"threads, machine `{cpu}` ({os.cpu_count()} cores), Release build of commit `{commit}`. Load average while measuring: "
         f"{load0} before, {load1} after (the machine is shared; high load makes every figure pessimistic).\n")
L.append("### Batch-1 decode against the memory-bandwidth bound\n")
L.append("Bound = the time to read the weight bytes a step reads (every parameter once; the tied embedding "
         "once, as the head), measured in place: after every timed step the same number of bytes of the "
         "weights themselves is read (a sum on all threads, 8 streams each, as the GEMV streams 8 weight rows) and timed, so step and bound see the machine in "
         "the same state (its bandwidth drifts by tens of percent on this shared VM). `% of bound` = median "
         "read time / mean step time. The bandwidth of a 512 MiB buffer, read and copied before decoding, is "
         "beside it for reference.\n")
L.append("| model | parameters | weight MB/token | in-place read GB/s | buffer read GB/s | memcpy GB/s | bound tok/s | step ms | decode tok/s | % of bound |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n, label in (("m130", "mamba-130m"), ("s421", "Samba_421M")):
    j = J(n)
    if j is None:
        L.append(f"| {label} | not measured | | | | | | | | |"); continue
    r = j["rows"][0]; bw = j["bandwidth"]
    inplace = j["weight_bytes_per_token"] / (r["weights_read_ms_median"] * 1e-3) / 1e9
    L.append(f"| {label} | {j['parameters']/1e6:.1f}M | {j['weight_bytes_per_token']/1e6:.1f} | {inplace:.1f} | "
             f"{bw['read_gbs']:.1f} | {bw['memcpy_gbs']:.1f} | {r['bound_tok_s']:.1f} | {r['step_ms_median']:.1f} | "
             f"{r['decode_tok_s']:.2f} | {100*r['decode_tok_s']/r['bound_tok_s']:.0f}% |")
L.append("\nCommands: `sambalm bench -m mamba-130m --batch 1 --context 1K --fill jump --prefill-tokens 64 "
         "--decode-tokens 32 --bandwidth`, the same with `-m Samba_421M --context 4K --decode-tokens 16`.\n")
L.append("### Constant memory and time per token over the context\n")
L.append("**Memory.** Each row is its own process; peak RSS is the process's high-water mark (weights "
         "included). Samba_421M: the position jumps to the context length after a 64-token prefill (a step's "
         "work does not depend on the position: every attention layer attends over at most its 2048-key ring "
         "and every Mamba layer updates a fixed state). samba_small (4 blocks (M S)x2, d=32, window 64): the "
         "whole context is really prefilled, in chunks of 1024.\n")
L.append("| model | context | fill | prefill tok/s | state MiB/seq | peak RSS MiB |")
L.append("|---|---:|---|---:|---:|---:|")
for pre, label in (("s421", "Samba_421M"), ("small", "samba_small")):
    rows = []
    for c in ("1K", "16K", "128K", "1M"):
        j = J(f"{pre}_{c}")
        if j is None:
            L.append(f"| {label} | {c} | | not measured | | |"); continue
        r = j["rows"][0]; rows.append(r)
        L.append(f"| {label} | {r['context']:,} | {r['fill']} | {r['prefill_tok_s']:.0f} | "
                 f"{r['state_bytes_per_seq']/2**20:.2f} | {r['peak_rss_bytes']/2**20:.1f} |")
    if rows:
        m = [r["peak_rss_bytes"] for r in rows]; st = [r["state_bytes_per_seq"] for r in rows]
        L.append(f"| {label}: spread (max/min - 1) | | | | {100*(max(st)/min(st)-1):.1f}% | {100*(max(m)/min(m)-1):.1f}% |")
L.append("\n**Time.** One process per model holds the states of all four contexts and times their steps "
         "round-robin, 96 rounds after 4 of warm-up (`--interleave`), so load from other processes falls on "
         "every context alike. `step ms` is the median wall time of a step, `min ms` the fastest, `cpu ms` the "
         "median process CPU time of a step (both threads).\n")
L.append("| model (window) | context | step ms | min ms | cpu ms | decode tok/s |")
L.append("|---|---:|---:|---:|---:|---:|")
for n, label in (("s421_inter", "Samba_421M (2048)"), ("s421w1k_inter", "Samba_421M_1k_window (1024)")):
    j = J(n)
    if j is None:
        L.append(f"| {label} | not measured | | | | |"); continue
    for r in j["rows"]:
        L.append(f"| {label} | {r['context']:,} | {r['step_ms_median']:.2f} | {r['step_ms_min']:.2f} | "
                 f"{r['step_cpu_ms_median']:.2f} | {r['decode_tok_s']:.2f} |")
    t = [r["step_ms_median"] for r in j["rows"]]
    full = [r["step_ms_median"] for r in j["rows"] if r["context"] >= j["local_window"]]
    L.append(f"| {label}: spread of the medians, all contexts | | {100*(max(t)/min(t)-1):.1f}% | | | |")
    if 1 < len(full) < len(t):
        L.append(f"| {label}: spread, contexts >= the window | | {100*(max(full)/min(full)-1):.1f}% | | | |")
L.append("")
ir = {}
for k, c in enumerate(("1K", "16K", "128K", "1M")):
    steps = []
    for d in (3 * k + 2, 3 * k + 3):
        p = os.path.join(out, f"cg.{d}")
        m = re.search(r"\ntotals: (\d+)", open(p).read()) if os.path.exists(p) else None
        if m: steps.append(int(m.group(1)))
    if len(steps) == 2: ir[c] = sum(steps) / 2
if ir:
    L.append("**Work.** Instructions per decode step (Samba_421M, batch 1, one "
             "thread, `valgrind --tool=callgrind --dump-after=...DecodeModel::step...`, one process over the "
             "four contexts, mean of 2 steps after one of warm-up): a count, not a time, so the machine's load does not enter it.\n")
    L.append("| context | instructions per step | vs 1M |")
    L.append("|---:|---:|---:|")
    ref = ir.get("1M") or max(ir.values())
    for c, v in ir.items():
        L.append(f"| {c} | {v:,.0f} | {100*(v/ref-1):+.2f}% |")
    L.append("")
L.append("\n### Throughput over the batch (mamba-130m, context 1K)\n")
L.append("| batch | step ms (median) | decode tok/s |")
L.append("|---:|---:|---:|")
for r in (J("m130_batch") or {"rows": []})["rows"]:
    L.append(f"| {r['batch']} | {r['step_ms_median']:.1f} | {r['decode_tok_s']:.1f} |")
L.append("\nUp to batch 64 a step reads each weight from memory once for all sequences (a GEMV tiled in "
         "registers: 8 weight rows at a time for one sequence, 4 rows x 3 sequences for more); larger batches use sgemm (OpenBLAS, OpenMP build).\n")
# What the numbers say, from the numbers.
s4, w1 = J("s421_inter"), J("s421w1k_inter")
if s4 and w1:
    def spread(rows):
        t = [r["step_ms_median"] for r in rows]
        return 100 * (max(t) / min(t) - 1)
    full = [r for r in s4["rows"] if r["context"] >= s4["local_window"]]
    r1k = next(r for r in s4["rows"] if r["context"] == 1024)
    mean_full = sum(r["step_ms_median"] for r in full) / len(full)
    # A full 2048-key ring minus a 1024-key one is the K/V a 1K step does not read: the state
    # difference between the two models (same weights and Mamba states, rings of 2048 vs 1024).
    kv_mb = (s4["rows"][0]["state_bytes_per_seq"] - w1["rows"][0]["state_bytes_per_seq"]) / 1e6
    step_mb = (s4["weight_bytes_per_token"] + s4["rows"][0]["state_bytes_per_seq"]) / 1e6
    L.append(f"What the numbers say. Memory: the decode state is a fixed size per sequence and the peak RSS "
             f"does not move from 1K to 1M tokens of context, also when every token is really prefilled. "
             f"Time: with the contexts interleaved in one process, Samba_421M_1k_window's step medians at 1K, 16K, "
             f"128K and 1M lie within {spread(w1['rows']):.1f}% of each other, and Samba_421M's within "
             f"{spread(full):.1f}% from 16K to 1M. Samba_421M's 1K row is {100*(1-r1k['step_ms_median']/mean_full):.1f}% "
             f"faster than the mean of the others because its 2048-key rings are half full at 1K: a step there "
             f"reads {kv_mb:.0f} MB less of K/V ({100*kv_mb/step_mb:.1f}% of the {step_mb:.0f} MB of weights and state "
             f"a step reads) and does less attention arithmetic; from the first full window on, a step's work is "
             f"fixed. The instruction counts say the same without timing noise: equal to "
             f"{max(abs(v/ir['1M']-1) for c, v in ir.items() if c != '1K')*100 if ir else 0:.3f}% at 16K, 128K "
             f"and 1M.\n")
sec = "\n".join(L) + "\n"
md = open(md_path).read() if os.path.exists(md_path) else "# Benchmarks\n\n"
pat = re.compile(r"## Decoding \(CPU\)\n.*?(?=\n## |\Z)", re.S)
md = pat.sub(lambda _: sec.rstrip("\n") + "\n", md) if pat.search(md) else md.rstrip("\n") + "\n\n" + sec
open(md_path, "w").write(md)
print(sec)
PY
