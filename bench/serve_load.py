#!/usr/bin/env python3
"""Load test of a running `sambalm serve` (standard library only).

Phase 1: CLIENTS concurrent streaming clients, each sending requests back to back for DURATION seconds:
failed requests, time to first token (p50/p99), inter-token latency (p50/p99), total tokens/s, and the
server's RSS (VmRSS of --pid) sampled every second.
Phase 2: CLIENTS fixed requests, all at once (batched) and then one after another: the throughput of each
and their ratio.

Usage: bench/serve_load.py --port 8080 --pid SERVER_PID [--clients 64] [--duration 60] [--max-tokens 64]
"""
import argparse
import http.client
import json
import statistics
import threading
import time


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def body(i, k, args, stream):
    return {"prompt": f"Request {i}.{k}: the quick brown fox jumps over the lazy dog. " * 2,
            "max_tokens": args.max_tokens, "temperature": 0.8, "seed": 1000 * i + k, "ignore_eos": True,
            "stream": stream, "logprobs": 0}


def stream_request(port, payload):
    """One streaming request: (ok, time to first token, inter-token gaps, tokens)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(payload), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        resp.read()
        conn.close()
        return False, None, [], 0
    ttft, gaps, tokens, last, done = None, [], 0, None, False
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            break
        ev = json.loads(data)
        if "error" in ev:
            break
        lp = ev["choices"][0].get("logprobs")
        n = len(lp["tokens"]) if lp else 0
        if n == 0:
            continue
        now = time.perf_counter()
        if ttft is None:
            ttft = now - t0
        else:
            gaps.append((now - last) / n)
        last = now
        tokens += n
    conn.close()
    return done, ttft, gaps, tokens


def plain_request(port, payload):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/completions", json.dumps(payload), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status != 200:
        return 0
    return json.loads(data)["usage"]["completion_tokens"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    # Phase 1: sustained streaming load.
    stop_at = time.perf_counter() + args.duration
    lock = threading.Lock()
    stats = {"ok": 0, "failed": 0, "tokens": 0, "ttft": [], "gaps": []}
    rss = []

    def client(i):
        k = 0
        while time.perf_counter() < stop_at:
            ok, ttft, gaps, tokens = stream_request(args.port, body(i, k, args, True))
            k += 1
            with lock:
                stats["ok" if ok else "failed"] += 1
                stats["tokens"] += tokens
                if ttft is not None:
                    stats["ttft"].append(ttft)
                stats["gaps"].extend(gaps)

    def sampler():
        while time.perf_counter() < stop_at:
            rss.append(rss_kib(args.pid))
            time.sleep(1)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ms = lambda s: s * 1000
    print(f"phase 1: {args.clients} streaming clients for {elapsed:.1f} s, max_tokens {args.max_tokens}")
    print(f"  requests ok {stats['ok']}, failed {stats['failed']}")
    print(f"  time to first token p50 {ms(pct(stats['ttft'], 50)):.1f} ms, p99 {ms(pct(stats['ttft'], 99)):.1f} ms")
    print(f"  inter-token latency p50 {ms(pct(stats['gaps'], 50)):.1f} ms, p99 {ms(pct(stats['gaps'], 99)):.1f} ms")
    print(f"  tokens {stats['tokens']}, {stats['tokens'] / elapsed:.1f} tokens/s")
    if rss:
        head, tail = rss[: max(1, len(rss) // 6)], rss[-max(1, len(rss) // 6):]
        print(f"  server RSS: first {len(head)} s max {max(head) / 1024:.1f} MiB, last {len(tail)} s max "
              f"{max(tail) / 1024:.1f} MiB, overall max {max(rss) / 1024:.1f} MiB")

    # Phase 2: the same fixed requests batched (all at once) and one after another.
    reqs = [body(i, 0, args, False) for i in range(args.clients)]
    got = [0] * len(reqs)

    def one(i):
        got[i] = plain_request(args.port, reqs[i])

    t0 = time.perf_counter()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(reqs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    batched = time.perf_counter() - t0
    batched_tokens = sum(got)
    t0 = time.perf_counter()
    seq_tokens = sum(plain_request(args.port, r) for r in reqs)
    sequential = time.perf_counter() - t0
    print(f"phase 2: {len(reqs)} requests of {args.max_tokens} tokens")
    print(f"  concurrent: {batched:.2f} s, {batched_tokens / batched:.1f} tokens/s ({batched_tokens} tokens)")
    print(f"  one after another: {sequential:.2f} s, {seq_tokens / sequential:.1f} tokens/s ({seq_tokens} tokens)")
    print(f"  batching speed-up: {(batched_tokens / batched) / (seq_tokens / sequential):.2f}x")


if __name__ == "__main__":
    main()
