#!/usr/bin/env python3
"""Write the small pickles and checkpoints under tests/data/pickles/ (fuzz seeds and examples).

Usage: make_pickle_seeds.py [OUT_DIR]   (default: tests/data/pickles beside this repository's tools/)

Plain data is pickled by Python's pickle module at protocols 2, 4 and 5 (so the seeds hold FRAME,
MEMOIZE, STACK_GLOBAL, sets, bytes and big ints); state_dicts use the torch stand-ins of make_pth.py.
The hostile examples (evil_*) are written opcode by opcode; nothing here is ever unpickled.
"""
import collections
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickle  # noqa: E402

from make_pth import Storage, Tensor, pickle_bytes, write_checkpoint  # noqa: E402


def state_dict():
    s = Storage("FloatStorage", "0", 12)
    h = Storage("BFloat16Storage", "1", 4)
    sd = collections.OrderedDict()
    sd["embedding.weight"] = Tensor(s, (3, 2))
    sd["lm_head.weight"] = Tensor(s, (3, 2))                 # tied: same storage, second tensor
    sd["t.weight"] = Tensor(s, (2, 3), stride=(1, 2), offset=6)  # transposed view at an offset
    sd["norm.weight"] = Tensor(h, (4,))
    return sd


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "data", "pickles")
    os.makedirs(out, exist_ok=True)
    plain = {"a": [1, -2, 3.5, None, True, False, (1, 2), (1, 2, 3, 4)], "b": {"nested": {1: "x"}},
             "big": 2 ** 100, "neg": -(2 ** 70), "bytes": b"\x00\x01", "set": {1, 2}, "fs": frozenset({3}),
             "u": "h\u00e9llo", "long": "x" * 300}
    files = {}
    # Protocol 2 spells bytes and sets as calls (_codecs.encode, builtins.set), which are refused.
    plain2 = {k: v for k, v in plain.items() if k not in ("bytes", "set", "fs")}
    for proto in (2, 4, 5):
        files[f"plain_p{proto}.pkl"] = pickle.dumps(plain2 if proto == 2 else plain, protocol=proto)
        files[f"state_dict_p{proto}.pkl"] = pickle_bytes(state_dict(), protocol=proto)
    files["fabric_p2.pkl"] = pickle_bytes({"model": state_dict(), "optimizer": {"state": {0: {"step": 3}}},
                                           "hparams": {"lr": 4e-4, "betas": (0.9, 0.95)}, "iter_num": 7})
    files["evil_os_system.pkl"] = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."
    files["evil_builtins_eval_p4.pkl"] = (b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93"
                                          b"\x8c\x0a__import__\x85R.")
    files["evil_inst.pkl"] = b"\x80\x02(X\x02\x00\x00\x00idios\nsystem\n."
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    def data(s):
        n = s.numel
        return [struct.pack(f"<{n}f", *[0.5 * k for k in range(n)]) if s.type_name == "FloatStorage"
                else struct.pack(f"<{n}H", *[0x3f80 + k for k in range(n)])]

    write_checkpoint(os.path.join(out, "small_state_dict.pth"), state_dict(), data, top="small_state_dict")
    print(f"wrote {len(files) + 1} files to {out}")


if __name__ == "__main__":
    main()
