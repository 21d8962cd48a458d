#!/usr/bin/env python3
"""Write files in the `torch.save` zip format without torch, for tests, fuzz seeds and benchmarks.

The pickle is produced by Python's own `pickle` module (protocol 2, as torch writes it) with small
stand-ins registered under torch's names, so the opcodes are exactly those of a real checkpoint:
GLOBAL 'collections OrderedDict', 'torch._utils _rebuild_tensor_v2', persistent ids
('storage', torch.FloatStorage, key, 'cpu', numel). Storages are written as stored (uncompressed)
zip entries whose data starts 64-byte aligned, like torch's writer does.

As a program it writes a small checkpoint:  make_pth.py OUT.pth  (two tensors sharing one storage).
"""
import collections
import io
import pickle
import struct
import sys
import types
import zipfile

ALIGN = 64

# --- stand-ins for the torch names the pickle refers to (never called) -------------------------
_torch = sys.modules.get("torch") or types.ModuleType("torch")
_utils = sys.modules.get("torch._utils") or types.ModuleType("torch._utils")
sys.modules.setdefault("torch", _torch)
sys.modules.setdefault("torch._utils", _utils)
_torch._utils = _utils


def _rebuild_tensor_v2(*args):  # pragma: no cover - only its name is pickled
    raise RuntimeError("stand-in")


_rebuild_tensor_v2.__module__ = "torch._utils"
_utils._rebuild_tensor_v2 = _rebuild_tensor_v2

ELEMENT_SIZE = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
                "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
                "ByteStorage": 1, "BoolStorage": 1}
STORAGE_TYPES = {}
for _name in ELEMENT_SIZE:
    _cls = type(_name, (), {"__module__": "torch"})
    setattr(_torch, _name, _cls)
    STORAGE_TYPES[_name] = _cls


class Storage:
    """One storage: its type name ("FloatStorage"), key (its entry name under data/) and size."""

    def __init__(self, type_name, key, numel):
        self.type_name, self.key, self.numel = type_name, str(key), numel

    @property
    def nbytes(self):
        return self.numel * ELEMENT_SIZE[self.type_name]


class Tensor:
    """A strided view of a Storage, pickled the way torch pickles a tensor."""

    def __init__(self, storage, size, stride=None, offset=0):
        self.storage, self.size, self.offset = storage, tuple(size), offset
        if stride is None:
            stride, acc = [], 1
            for d in reversed(size):
                stride.insert(0, acc)
                acc *= d
        self.stride = tuple(stride)

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2,
                (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", STORAGE_TYPES[obj.type_name], obj.key, "cpu", obj.numel)
        return None


def pickle_bytes(obj, protocol=2):
    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def _aligned_info(zf, name):
    """A ZipInfo whose local-header extra field pads the data start to ALIGN bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    header_end = zf.fp.tell() + 30 + len(name.encode())
    pad = (-(header_end + 4)) % ALIGN  # a 4-byte extra block header plus `pad` bytes
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # 'FB', as torch names it
    return info


def write_checkpoint(path, obj, storage_data, top="archive"):
    """Writes `obj` (containing Tensors) as `path`. storage_data(storage) yields the bytes of each
    storage in chunks; storages are written in key order."""
    storages = {}

    class _Collect(_Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                storages[o.key] = o
            return super().persistent_id(o)

    buf = io.BytesIO()
    _Collect(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(_aligned_info(zf, f"{top}/data.pkl"), buf.getvalue())
        zf.writestr(_aligned_info(zf, f"{top}/byteorder"), b"little")
        for key in sorted(storages, key=lambda k: (len(k), k)):
            s = storages[key]
            info = _aligned_info(zf, f"{top}/data/{key}")
            info.file_size = s.nbytes
            with zf.open(info, "w", force_zip64=s.nbytes > (1 << 30)) as out:
                written = 0
                for chunk in storage_data(s):
                    out.write(chunk)
                    written += len(chunk)
                if written != s.nbytes:
                    raise ValueError(f"storage {key}: wrote {written} bytes, expected {s.nbytes}")
        zf.writestr(_aligned_info(zf, f"{top}/version"), b"3\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    s = Storage("FloatStorage", "0", 6)
    sd = collections.OrderedDict()
    sd["a"] = Tensor(s, (2, 3))
    sd["b"] = Tensor(s, (3,), offset=3)
    write_checkpoint(sys.argv[1], sd, lambda st: [struct.pack("<6f", 1, 2, 3, 4, 5, 6)])


if __name__ == "__main__":
    main()
