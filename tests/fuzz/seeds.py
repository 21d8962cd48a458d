#!/usr/bin/env python3
"""Seed corpora for the fuzz targets: seeds.py FIXTURES_DIR SAMPLES_DIR OUT_DIR

OUT_DIR/fuzz_torch_zip: every torch.save file of FIXTURES_DIR/pth (manifest.json) and the .pth samples.
OUT_DIR/fuzz_unpickler: each zip fixture's data.pkl, the legacy fixture whole (back-to-back pickles)
and the .pkl samples. Only reads files; nothing is unpickled.
"""
import json
import os
import shutil
import sys
import zipfile


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
    print(f"seeds: {len(os.listdir(zdir))} archives, {len(os.listdir(pdir))} pickles")


if __name__ == "__main__":
    main()
