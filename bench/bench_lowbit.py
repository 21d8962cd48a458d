#!/usr/bin/env python3
"""Decode speed and memory of one random model in each weight format (f32, bf16, f16, q8, q4).

    bench/bench_lowbit.py [--bin build/sambalm] [--model mamba-130m] [--threads 2] [--rounds 3] [--batch 1,8]

Writes the model's random weights (seed 0) once per format with `sambalm convert PRESET --dtype F`
(so each run loads its format from the file, as a user's converted model would), then runs
`sambalm bench` on each directory in turn, alternating the formats within every round, and prints one
Markdown table: decode tokens/s per round (at each --batch, all sequences together), the memory-bandwidth bound measured in place
(bench --bandwidth: the step's own weight bytes read right after each step) and the peak RSS while
decoding (bench resets the peak after loading, so this is the weights in memory plus the decode state
and buffers; the float32 load also maps the file beside its copy for a moment).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_bench(binary, directory, threads, batch, json_path, extra):
    cmd = [binary, "bench", "-m", directory, "--batch", str(batch), "--context", "1K", "--fill", "jump",
           "--prefill-tokens", "64", "--decode-tokens", "32", "--threads", str(threads), "--bandwidth",
           "--json", json_path] + extra
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = proc.stdout.read().decode()
    if proc.wait() != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out}")
    return json.load(open(json_path)), " ".join(cmd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "sambalm"))
    ap.add_argument("--model", default="mamba-130m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", default="f32,bf16,f16,q8")
    ap.add_argument("--batch", default="1", help="comma-separated batch sizes, e.g. 1,8 (each in every round)")
    ap.add_argument("--dir", default="", help="where the converted models go (default: a temporary folder)")
    a = ap.parse_args()
    formats = a.formats.split(",")
    batches = [int(b) for b in a.batch.split(",")]
    work = a.dir or tempfile.mkdtemp(prefix="sambalm_lowbit_")
    for f in formats:
        d = os.path.join(work, f)
        if not os.path.exists(os.path.join(d, "model.safetensors")):
            subprocess.run([a.bin, "convert", a.model, "--out", d, "--dtype", f], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load_before = open("/proc/loadavg").read().split()[:3]
    results = {(b, f): [] for b in batches for f in formats}
    cmd_shown = ""
    for r in range(a.rounds):
        for b in batches:
            for f in formats:
                row, cmd = run_bench(a.bin, os.path.join(work, f), a.threads, b,
                                     os.path.join(work, f"r{r}_b{b}_{f}.json"), [])
                cmd_shown = cmd_shown or cmd
                results[(b, f)].append(row)
    load_after = open("/proc/loadavg").read().split()[:3]

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; model {a.model} (random weights, seed 0), "
          f"batch {a.batch}, {a.threads} threads, {a.rounds} rounds alternating {', '.join(formats)}; load average "
          f"{' '.join(load_before)} before, {' '.join(load_after)} after.\n")
    print("| batch | format | weight MB/token | decode tok/s (rounds) | median | bound tok/s (median) | % of bound | "
          "peak RSS decoding MiB |")
    print("|---:|---|---:|---|---:|---:|---:|---:|")
    for b, f in results:
        if f == formats[0]:
            base = None
        rows = [x["rows"][0] for x in results[(b, f)]]
        tps = [r["decode_tok_s"] for r in rows]
        bounds = sorted(r["bound_tok_s"] for r in rows)
        med = sorted(tps)[len(tps) // 2]
        bmed = bounds[len(bounds) // 2]
        wmb = results[(b, f)][0].get("weight_bytes_per_token", 0) / 1e6
        peak = max(r["peak_rss_bytes"] for r in rows) / 2**20
        base = base or med
        fmts = results[(b, f)][0].get("weight_formats", f)
        print(f"| {b} | {fmts} | {wmb:.1f} | {' / '.join(f'{t:.1f}' for t in tps)} | {med:.1f} ({med / base:.2f}x) | "
              f"{bmed:.1f} | {100 * med / bmed:.0f}% | {peak:.0f} |")
    print(f"\nCommand per run: `{cmd_shown}` (the directory of each format in turn), from "
          f"`bench/bench_lowbit.py --model {a.model} --threads {a.threads} --rounds {a.rounds} --batch {a.batch}`; "
          f"the batch in each run as given.")


if __name__ == "__main__":
    main()
