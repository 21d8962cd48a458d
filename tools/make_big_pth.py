#!/usr/bin/env python3
"""Write a large synthetic Mamba `pytorch_model.bin` + mamba_ssm `config.json` (torch not needed).

Usage: make_big_pth.py OUT_DIR [--gb 2.0] [--d-model 1536]

The model is a state-spaces Mamba LM (mamba_ssm key names, tied head: lm_head.weight and
backbone.embedding.weight are one storage pickled under both names, like the real checkpoints)
with as many layers as it takes to reach about --gb gigabytes of float32 weights. Values are
small deterministic floats; the point is the size, for measuring conversion memory and speed.
"""
import argparse
import array
import collections
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_pth import Storage, Tensor, write_checkpoint  # noqa: E402

VOCAB = 50280  # GPT-NeoX vocabulary padded to a multiple of 8, as in the mamba-*m checkpoints
D_STATE, D_CONV, EXPAND = 16, 4, 2


def layer_shapes(d):
    di = EXPAND * d
    dt_rank = math.ceil(d / 16)
    return [("norm.weight", (d,)), ("mixer.A_log", (di, D_STATE)), ("mixer.D", (di,)),
            ("mixer.in_proj.weight", (2 * di, d)), ("mixer.conv1d.weight", (di, 1, D_CONV)),
            ("mixer.conv1d.bias", (di,)), ("mixer.x_proj.weight", (dt_rank + 2 * D_STATE, di)),
            ("mixer.dt_proj.weight", (di, dt_rank)), ("mixer.dt_proj.bias", (di,)),
            ("mixer.out_proj.weight", (d, di))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--gb", type=float, default=2.0, help="approximate size in GB (1e9 bytes)")
    ap.add_argument("--d-model", type=int, default=1536)
    a = ap.parse_args()
    d = a.d_model
    per_layer = sum(math.prod(s) for _, s in layer_shapes(d))
    fixed = VOCAB * d + d
    n_layer = max(1, round((a.gb * 1e9 / 4 - fixed) / per_layer))

    storages = []

    def tensor(shape):
        s = Storage("FloatStorage", len(storages), math.prod(shape))
        storages.append(s)
        return Tensor(s, shape)

    sd = collections.OrderedDict()
    emb = tensor((VOCAB, d))
    sd["backbone.embedding.weight"] = emb
    for i in range(n_layer):
        for name, shape in layer_shapes(d):
            sd[f"backbone.layers.{i}.{name}"] = tensor(shape)
    sd["backbone.norm_f.weight"] = tensor((d,))
    sd["lm_head.weight"] = Tensor(emb.storage, emb.size)  # tied: a second tensor on the same storage

    block = array.array("f", [((k * 7919) % 2001 - 1000) * 1e-5 for k in range(1 << 18)]).tobytes()  # 1 MiB

    def data(s):
        left, phase = s.nbytes, (int(s.key) * 4096) % len(block)
        while left > 0:
            chunk = block[phase:] + block[:phase]
            yield chunk[:left]
            left -= min(left, len(chunk))

    os.makedirs(a.out_dir, exist_ok=True)
    path = os.path.join(a.out_dir, "pytorch_model.bin")
    write_checkpoint(path, sd, data, top="pytorch_model")
    config = {"d_model": d, "d_intermediate": 0, "n_layer": n_layer, "vocab_size": VOCAB, "ssm_cfg": {},
              "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
              "fused_add_norm": True, "pad_vocab_size_multiple": 8, "tie_embeddings": True}
    with open(os.path.join(a.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"wrote {path}: {os.path.getsize(path) / 1e9:.2f} GB, {n_layer} layers, d_model {d}, "
          f"{len(storages)} storages")


if __name__ == "__main__":
    main()
