#!/usr/bin/env python3
"""Seed corpora for the fuzz targets: seeds.py FIXTURES_DIR SAMPLES_DIR OUT_DIR

OUT_DIR/fuzz_torch_zip: every torch.save file of FIXTURES_DIR/pth (manifest.json) and the .pth samples.
OUT_DIR/fuzz_unpickler: each zip fixture's data.pkl, the legacy fixture whole (back-to-back pickles)
and the .pkl samples. OUT_DIR/fuzz_safetensors: small safetensors files written here (every dtype,
metadata, empty and 0-d tensors). Only reads files; nothing is unpickled.
The other targets' seeds are small valid files too, written here, plus the fixtures where they are
small: fuzz_tokenizer_json (byte-level BPE tokenizer.json files of 256 byte tokens and a few merges,
each pre-tokenizer kind), fuzz_sentencepiece (the fixture's tokenizer.model, the models with
character maps of tests/data/sentencepiece and two tiny models encoded here), fuzz_shards (uint16 and uint32 token shards), fuzz_shard_index (indexes over the two
shards that fuzz_shard_index.cpp writes), fuzz_config_json (the fixtures' config.json files and one
of each format), fuzz_state_file (state files for the tiny model of fuzz_state_file.cpp).
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


def byte_level_alphabet():
    """GPT-2's bytes -> printable characters map (the ByteLevel pre-tokenizer's alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return [out[b] for b in range(256)]


def tokenizer_json_seeds(fixtures, out):
    """Byte-level BPE tokenizer.json files: 256 byte tokens, a few merges, each supported part."""
    os.makedirs(out, exist_ok=True)
    alphabet = byte_level_alphabet()
    vocab = {c: i + 1 for i, c in enumerate(alphabet)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("e", "ll"), ("1", "2")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab) + 1)
    added = [{"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    base = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": {"type": "NFC"},
            "pre_tokenizer": byte_level, "post_processor": byte_level, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": {"<|endoftext|>": 0, **vocab}, "merges": [f"{a} {b}" for a, b in merges]}}
    seeds = [base]
    # Pairs for merges, a prefix space, a Sequence normalizer, special tokens around $A, stripping.
    t = json.loads(json.dumps(base))
    t["model"]["merges"] = [[a, b] for a, b in merges]
    t["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}]}
    t["pre_tokenizer"] = dict(byte_level, add_prefix_space=True)
    t["model"]["vocab"].update({"<s>": len(t["model"]["vocab"]), "</s>": len(t["model"]["vocab"]) + 1})
    t["added_tokens"] += [dict(added[0], id=t["model"]["vocab"]["<s>"], content="<s>"),
                          dict(added[0], id=t["model"]["vocab"]["</s>"], content="</s>", lstrip=True, rstrip=True,
                               normalized=True, special=False)]
    t["post_processor"] = {"type": "TemplateProcessing", "single": [
        {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
        {"SpecialToken": {"id": "</s>", "type_id": 0}}]}
    seeds.append(t)
    # A Split regex before a ByteLevel without its own regex (the fixture's, a GPT-4-style split).
    split = os.path.join(fixtures, "bpe_split_tiny", "tokenizer.json")
    if os.path.exists(split):
        t = json.loads(json.dumps(base))
        t["normalizer"] = None
        t["pre_tokenizer"] = json.load(open(split))["pre_tokenizer"]
        t["post_processor"] = {"type": "Sequence", "processors": [byte_level]}
        seeds.append(t)
    for i, t in enumerate(seeds):
        with open(os.path.join(out, f"seed{i}.json"), "w") as f:
            json.dump(t, f, ensure_ascii=False)


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def pb_field(num, value):
    """One protobuf field: bytes/str (length-delimited), float (fixed32) or int (varint)."""
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return varint(num << 3 | 2) + varint(len(value)) + value
    if isinstance(value, float):
        return varint(num << 3 | 5) + struct.pack("<f", value)
    return varint(num << 3) + varint(value & 0xFFFFFFFFFFFFFFFF)


def sentencepiece_seeds(fixtures, out):
    """The fixture's tokenizer.model and two tiny ModelProtos (BPE with byte fallback, unigram)."""
    os.makedirs(out, exist_ok=True)
    sp = os.path.join(fixtures, "sp_tiny", "tokenizer.model")
    if os.path.exists(sp):
        shutil.copy(sp, os.path.join(out, "fixture.model"))
    # Models with precompiled character maps (normalizer and denormalizer), from tests/data.
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sentencepiece")
    for name in sorted(os.listdir(data)) if os.path.isdir(data) else []:
        if name.endswith(".model"):
            shutil.copy(os.path.join(data, name), os.path.join(out, name))
    # sentencepiece_model.proto: ModelProto.pieces = 1 (piece 1, score 2, type 3: NORMAL 1, UNKNOWN 2,
    # CONTROL 3, BYTE 6), trainer_spec = 2 (model_type 3: UNIGRAM 1, BPE 2; vocab_size 4;
    # byte_fallback 35), normalizer_spec = 3 (name 1, add_dummy_prefix 3, remove_extra_whitespaces 4).
    for i, (model_type, byte_fallback) in enumerate([(2, True), (1, False)]):
        pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
        if byte_fallback:
            pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
        pieces += [(p, -float(k), 1) for k, p in enumerate(["▁", "e", "l", "o", "h", "▁h", "ll", "he", "llo"])]
        proto = b"".join(pb_field(1, pb_field(1, p) + pb_field(2, s) + pb_field(3, t)) for p, s, t in pieces)
        trainer = pb_field(3, model_type) + pb_field(4, len(pieces)) + pb_field(35, int(byte_fallback))
        normalizer = pb_field(1, "identity") + pb_field(3, 1) + pb_field(4, 0)
        proto += pb_field(2, trainer) + pb_field(3, normalizer)
        with open(os.path.join(out, f"tiny{i}.model"), "wb") as f:
            f.write(proto)


def shard_seeds(out):
    """Token shards (io/shards.h): uint16 with an EOS, uint32 without, and an empty one."""
    os.makedirs(out, exist_ok=True)
    for i, (width, vocab, eos, n) in enumerate([(2, 300, 0, 40), (4, 70000, -1, 12), (2, 256, 1, 0)]):
        tokens = [(k * 7919) % vocab for k in range(n)]
        header = b"SMBTOKS1" + struct.pack("<IIQIi", 1, width, n, vocab, eos) + bytes(32)
        body = struct.pack(f"<{n}{'H' if width == 2 else 'I'}", *tokens)
        with open(os.path.join(out, f"seed{i}.bin"), "wb") as f:
            f.write(header + body)


def shard_index_seeds(out):
    """Indexes over fuzz_shard_index.cpp's shards (a, b in the first, c in the second)."""
    os.makedirs(out, exist_ok=True)
    one, two = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    seeds = [{"metadata": {"total_size": 24}, "weight_map": {"a": one, "b": one, "c": two}},
             {"weight_map": {"b": one, "a": one, "c": two}},
             {"metadata": {}, "weight_map": {"a": one, "b": two, "c": two}}]
    for i, j in enumerate(seeds):
        with open(os.path.join(out, f"seed{i}.json"), "w") as f:
            json.dump(j, f)


def config_json_seeds(fixtures, out):
    """The fixtures' config.json files (lit_gpt, mamba_ssm, Hugging Face) and a sambalm one."""
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(fixtures)) if os.path.isdir(fixtures) else []:
        for cfg in ["config.json", "lit_config.json"]:
            src = os.path.join(fixtures, name, cfg)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(out, f"{name}_{cfg}"))
    own = {"format": "sambalm", "version": 1, "name": "seed", "mamba": False, "n_layer": 2, "n_embd": 32,
           "vocab_size": 100, "padded_vocab_size": 128, "padding_multiple": 64, "block_size": 64,
           "norm": "rmsnorm", "norm_eps": 1e-5, "tied_embeddings": True, "mamba_init": True, "d_state": 8,
           "d_conv": 4, "expand": 2, "dt_rank": 0, "conv_bias": True, "proj_bias": False, "n_head": 2,
           "n_query_groups": 1, "head_size": 16, "intermediate_size": 64, "local_window": 8,
           "full_per_layer": 1000000, "mb_per_layer": 2, "attn_layer_pos": [], "mamba_swa_mlp": False,
           "abl_mamba": False, "mlp": True, "nope": False, "rotary_percentage": 1.0, "rope_base": 10000.0,
           "condense_ratio": 1.0, "bias": False}
    with open(os.path.join(out, "sambalm_config.json"), "w") as f:
        json.dump(own, f)


def state_file_seeds(out):
    """Decode state files (infer/state_file.cpp) for fuzz_state_file.cpp's tiny model."""
    os.makedirs(out, exist_ok=True)
    floats = 288  # kStateFloats there, as are the hashes and the vocabulary
    for i, (pos, tokens) in enumerate([(3, [5, 6, 7]), (10, []), (2, [63, 0])]):
        header = json.dumps({"format": "sambalm-decode-state", "model": "fuzz_samba",
                             "config_hash": "5eed0000c0f16000", "weights_hash": "5eed00000e175000", "pos": pos,
                             "n_tokens": len(tokens), "state_floats": floats, "padded_vocab": 64,
                             "max_context": 0}).encode()
        body = b"SBDSTATE" + struct.pack("<II", 1, len(header)) + header
        body += struct.pack(f"<{len(tokens)}i", *tokens) + struct.pack(f"<{floats}f", *[k / 64 for k in range(floats)])
        h = 0xCBF29CE484222325
        for b in body:
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        with open(os.path.join(out, f"seed{i}.state"), "wb") as f:
            f.write(body + struct.pack("<Q", h))


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
    tokenizer_json_seeds(fixtures, os.path.join(out, "fuzz_tokenizer_json"))
    sentencepiece_seeds(fixtures, os.path.join(out, "fuzz_sentencepiece"))
    shard_seeds(os.path.join(out, "fuzz_shards"))
    shard_index_seeds(os.path.join(out, "fuzz_shard_index"))
    config_json_seeds(fixtures, os.path.join(out, "fuzz_config_json"))
    state_file_seeds(os.path.join(out, "fuzz_state_file"))
    print(f"seeds: {len(os.listdir(zdir))} archives, {len(os.listdir(pdir))} pickles")


if __name__ == "__main__":
    main()
