#!/usr/bin/env python3
"""sambalm and llama.cpp side by side on one Hugging Face Mamba model, CPU, alternating runs.

    bench/compare_llamacpp.py --llama-build LLAMA_BUILD --hf HF_DIR [--gguf-dir DIR] [--bin build/sambalm]
                              [--threads 2] [--rounds 3] [--work DIR]

LLAMA_BUILD is a llama.cpp build folder holding bin/llama-bench; HF_DIR a MambaForCausalLM directory
(config.json + model.safetensors) and --gguf-dir the folder with its GGUF conversions
mamba-130m-{f32,f16,q8_0}.gguf (default: HF_DIR's parent). ../shared/peers/llamacpp_mamba_cpu.sh WORK
makes all three: WORK/llama_cpp_python-*/vendor/llama.cpp/build, WORK/hf and WORK/*.gguf.

The same HF directory is converted once per format with `sambalm convert HF_DIR --dtype F` (f32, bf16,
f16, q8). Then, in each round, every format in turn runs:
  llama.cpp  llama-bench -t THREADS -p 512 -n 128 -r 1 (its own warm-up first): prefill pp512 and decode tg128
             (-n is --llama-tokens); once per GGUF and round, so bf16 and f16 share their round's F16 run;
  sambalm    bench --batch 1 --fill jump --decode-tokens 64 --bandwidth: batch-1 decode and the bound
             measured in place (the step's weight bytes read right after each step), and
             bench --context 512,512 --fill real --decode-tokens 2: a 512-token prompt prefilled twice in
             one process, the second (warm) one reported, as llama-bench reports after its warm-up.
The pairs: sambalm f32 / llama.cpp F32, bf16 / F16 (llama.cpp's converter run here makes no BF16),
f16 / F16, q8 / Q8_0 (both int8 with one scale per block of 32). Prints one Markdown table with the
CPU's model name and the load average before and after.
"""
import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

PAIRS = [("f32", "f32"), ("bf16", "f16"), ("f16", "f16"), ("q8", "q8_0"), ("q8-float", "q8_0")]
# q8-float: the q8 directory run with SAMBALM_Q8_DOT=float (weights widened to float, activations not
# quantized), to compare with the integer dot products.


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def run(cmd, threads, extra_env=None):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), **(extra_env or {}))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout.decode(errors='replace')[-3000:]}")
    return proc.stdout.decode(errors="replace")


def llama_bench(exe, gguf, threads, tokens):
    cmd = [exe, "-m", gguf, "-t", str(threads), "-p", "512", "-n", str(tokens), "-r", "1", "-o", "json"]
    out = run(cmd, threads)
    runs = json.loads(out[out.index("["):out.rindex("]") + 1])  # llama-bench may log before the JSON
    res = {("pp" if x["n_gen"] == 0 else "tg"): x for x in runs}
    return res["tg"]["avg_ts"], res["pp"]["avg_ts"], runs[0], " ".join(cmd)


def model_dir(work, fmt):
    return os.path.join(work, fmt.split("-")[0]), ({"SAMBALM_Q8_DOT": "float"} if fmt == "q8-float" else {})


def sambalm_decode(exe, fmt, work, threads, json_path):
    model, env = model_dir(work, fmt)
    cmd = [exe, "bench", "-m", model, "--batch", "1", "--context", "1K", "--fill", "jump", "--prefill-tokens", "64",
           "--decode-tokens", "64", "--threads", str(threads), "--bandwidth", "--json", json_path]
    run(cmd, threads, env)
    j = json.load(open(json_path))
    row = j["rows"][0]
    return row["decode_tok_s"], row["bound_tok_s"], j, " ".join(cmd)


def sambalm_prefill(exe, fmt, work, threads, json_path):
    model, env = model_dir(work, fmt)
    cmd = [exe, "bench", "-m", model, "--batch", "1", "--context", "512,512", "--fill", "real", "--decode-tokens", "2",
           "--warmup", "0", "--threads", str(threads), "--json", json_path]
    run(cmd, threads, env)
    return json.load(open(json_path))["rows"][-1]["prefill_tok_s"], " ".join(cmd)


def med(v):
    return statistics.median(v)


def rounds(v, digits=1):
    return " / ".join(f"{x:.{digits}f}" for x in v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-build", required=True, help="llama.cpp build folder (with bin/llama-bench)")
    ap.add_argument("--hf", required=True, help="Hugging Face Mamba directory that the GGUF files were made from")
    ap.add_argument("--gguf-dir", default="", help="folder of mamba-130m-{f32,f16,q8_0}.gguf (default: --hf's parent)")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "sambalm"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", default="f32,bf16,f16,q8",
                    help="sambalm formats: some of f32,bf16,f16,q8,q8-float (q8 with SAMBALM_Q8_DOT=float)")
    ap.add_argument("--llama-tokens", type=int, default=128, help="llama-bench's decode test length (-n)")
    ap.add_argument("--work", default="", help="where the sambalm conversions go (default: a temporary folder)")
    a = ap.parse_args()
    if a.threads < 1 or a.rounds < 1 or a.llama_tokens < 1:
        sys.exit("--threads, --rounds and --llama-tokens must be at least 1")
    exe = os.path.join(a.llama_build, "bin", "llama-bench")
    if not os.access(exe, os.X_OK):
        sys.exit(f"no llama-bench at {exe}")
    gdir = a.gguf_dir or os.path.dirname(os.path.abspath(a.hf))
    pairs = [p for p in PAIRS if p[0] in a.formats.split(",")]
    if not pairs:
        sys.exit(f"--formats '{a.formats}': expected some of f32,bf16,f16,q8,q8-float")
    ggufs = {}
    for _, g in pairs:
        matches = sorted(glob.glob(os.path.join(gdir, f"*-{g}.gguf")))
        if not matches:
            sys.exit(f"no *-{g}.gguf in {gdir}")
        ggufs[g] = matches[0]
    work = a.work or tempfile.mkdtemp(prefix="sambalm_vs_llamacpp_")
    for s in sorted({s.split("-")[0] for s, _ in pairs}):
        d = os.path.join(work, s)
        if not os.path.exists(os.path.join(d, "model.safetensors")):
            run([a.bin, "convert", a.hf, "--out", d, "--dtype", s], a.threads)

    load_before = loadavg()
    res = {s: {"l_tg": [], "l_pp": [], "s_tg": [], "s_bound": [], "s_pp": []} for s, _ in pairs}
    info, cmds = {}, {}
    for r in range(a.rounds):
        seen = {}  # llama.cpp runs each GGUF once a round (bf16 and f16 both compare with F16)
        for s, g in pairs:
            x = res[s]
            if g not in seen:
                seen[g] = llama_bench(exe, ggufs[g], a.threads, a.llama_tokens)
            tg, pp, info["llama"], cmds["llama"] = seen[g]
            x["l_tg"].append(tg)
            x["l_pp"].append(pp)
            tps, bound, info["sambalm"], cmds["decode"] = sambalm_decode(a.bin, s, work, a.threads,
                                                                         os.path.join(work, f"r{r}_{s}_decode.json"))
            x["s_tg"].append(tps)
            x["s_bound"].append(bound)
            pp_s, cmds["prefill"] = sambalm_prefill(a.bin, s, work, a.threads,
                                                    os.path.join(work, f"r{r}_{s}_prefill.json"))
            x["s_pp"].append(pp_s)
            print(f"round {r + 1} {s}: llama.cpp {g} tg {tg:.1f} pp {pp:.1f}; sambalm decode {tps:.1f} "
                  f"(bound {bound:.1f}) prefill {pp_s:.1f}", file=sys.stderr, flush=True)
    load_after = loadavg()

    li = info["llama"]
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores; llama.cpp says: {li.get('cpu_info', '?')}); "
          f"llama.cpp {li.get('build_commit', '?')}, {a.threads} threads, {a.rounds} rounds, each round alternating "
          f"the formats and within each format llama.cpp then sambalm; load average {load_before} before, "
          f"{load_after} after.\n")
    print("| what | sambalm / llama.cpp | llama.cpp tok/s (rounds) | median | sambalm tok/s (rounds) | median | "
          "ratio | sambalm % of bound |")
    print("|---|---|---|---:|---|---:|---:|---:|")
    for kind, lk, sk in (("decode (batch 1)", "l_tg", "s_tg"), ("prefill 512", "l_pp", "s_pp")):
        for s, g in pairs:
            x = res[s]
            lm, sm = med(x[lk]), med(x[sk])
            bound = f"{100 * sm / med(x['s_bound']):.0f}%" if sk == "s_tg" else "-"
            print(f"| {kind} | {s} / {g.upper()} | {rounds(x[lk])} | {lm:.1f} | {rounds(x[sk])} | {sm:.1f} | "
                  f"{sm / lm:.2f}x | {bound} |")
    fmts = info["sambalm"].get("weight_formats", "")
    print(f"\nsambalm's last weight formats: {fmts}. Commands per run (each format's file in turn):\n"
          f"`{cmds['llama']}`, `{cmds['decode']}`, `{cmds['prefill']}`.")


if __name__ == "__main__":
    main()
