#!/usr/bin/env python3
# Usage: make_slim_like.py CORPUS ROOT NFILES RAW_BYTES_PER_FILE  (writes ROOT/train/chunkK/example_train_N.jsonl.zst)
# Synthetic SlimPajama-shaped JSON Lines: documents are random 1-8 KB slices (cut at line ends) of a text
# corpus, with meta.redpajama_set_name; each file piped through `zstd -3`.
import json, random, subprocess, sys, os
corpus, root, nfiles, raw_per_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(float(sys.argv[4]))
text = open(corpus, encoding="utf-8").read()
sets = ["RedPajamaCommonCrawl", "RedPajamaC4", "RedPajamaGithub", "RedPajamaBook", "RedPajamaArXiv",
        "RedPajamaWikipedia", "RedPajamaStackExchange"]
rng = random.Random(5)
for f in range(nfiles):
    path = f"{root}/train/chunk{f // 10 + 1}/example_train_{f % 10}.jsonl.zst"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    p = subprocess.Popen(["zstd", "-3", "-q", "-f", "-o", path], stdin=subprocess.PIPE)
    n = 0
    buf = []
    while n < raw_per_file:
        a = rng.randrange(len(text) - 9000)
        a = text.find("\n", a) + 1
        b = text.find("\n", a + rng.randint(1000, 8000))
        line = json.dumps({"text": text[a:b], "meta": {"redpajama_set_name": rng.choice(sets)}}) + "\n"
        buf.append(line)
        n += len(line)
        if len(buf) >= 2000:
            p.stdin.write("".join(buf).encode()); buf = []
    p.stdin.write("".join(buf).encode())
    p.stdin.close(); p.wait()
