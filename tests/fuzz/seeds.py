#!/usr/bin/env python3
"""Seed corpora for the fuzz targets: seeds.py FIXTURES_DIR SAMPLES_DIR OUT_DIR

OUT_DIR/fuzz_torch_zip: every torch.save file of FIXTURES_DIR/pth (manifest.json) and the .pth samples.
OUT_DIR/fuzz_unpickler: each zip fixture's data.pkl, the legacy fixture whole (back-to-back pickles)
and the .pkl samples. OUT_DIR/fuzz_safetensors: small safetensors files written here (every dtype,
metadata, empty and 0-d tensors). Only reads files; nothing is unpickled.
"""
import json
import os
import shutil
import struct
import sys
import zipfile


def safetensors_seeds(out):
    """A handful of small valid safetensors files: the reader's paths, in few bytes each."""
    os.makedirs(out, exist_ok=True)
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}
    seeds = [
        [("a", "F32", [2, 3])],
        [("w", "BF16", [4]), ("b", "F16", [2, 2])],
        [("x", "F64", []), ("e", "F32", [0, 5])],
        [(f"t{i}", d, [3]) for i, d in enumerate(sizes)],
    ]
    for i, tensors in enumerate(seeds):
        header, data = {}, b""
        for name, dtype, shape in tensors:
            n = sizes[dtype]
            for s in shape:
                n *= s
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
            data += bytes((j * 37 + i) % 256 for j in range(n))
        if i == 1:
            header["__metadata__"] = {"format": "pt", "note": "seed"}
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        with open(os.path.join(out, f"seed{i}.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + data)


def main():
    fixtures, samples, out = sys.argv[1:4]
    zdir, pdir = os.path.join(out, "fuzz_torch_zip"), os.path.join(out, "fuzz_unpickler")
    os.makedirs(zdir, exist_ok=True)
    os.makedirs(pdir, exist_ok=True)
    manifest = os.path.join(fixtures, "pth", "manifest.json")
    entries = json.load(open(manifest)) if os.path.exists(manifest) else []
    for i, e in enumerate(entries):
        src = os.path.join(fixtures, "pth", e["file"])
        shutil.copy(src, os.path.join(zdir, f"fixture{i}"))
        if e["format"] == "zip":
            with zipfile.ZipFile(src) as z:
                pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
                with open(os.path.join(pdir, f"fixture{i}.pkl"), "wb") as f:
                    f.write(z.read(pkl))
        else:
            shutil.copy(src, os.path.join(pdir, f"fixture{i}.legacy"))
    for name in sorted(os.listdir(samples)):
        dst = zdir if name.endswith(".pth") else pdir
        shutil.copy(os.path.join(samples, name), os.path.join(dst, name))
    safetensors_seeds(os.path.join(out, "fuzz_safetensors"))
    print(f"seeds: {len(os.listdir(zdir))} archives, {len(os.listdir(pdir))} pickles")


if __name__ == "__main__":
    main()
