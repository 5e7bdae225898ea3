#!/usr/bin/env python3
"""Makes and checks the safetensors fixtures of tests/core/safetensors_test.cc.

Writes, with the reference `safetensors` package (pip: safetensors, numpy, ml_dtypes; no torch):
  tests/fixtures/safetensors/all_dtypes.safetensors   every dtype rlvr supports, with metadata
  tests/fixtures/safetensors/all_dtypes.json          expected dtype, shape, bytes and values
  tests/fixtures/safetensors/sharded/                 a 2-shard checkpoint with its index
  tests/fixtures/safetensors/conversions.json         float32 -> bf16/f16/f8 bit patterns
                                                      computed by ml_dtypes
and checks the other direction: tests/fixtures/safetensors/written_by_rlvr.safetensors (made by
rlvr's writer, see safetensors_test.cc) must load in `safetensors` with the tensors of
RLVR_WRITTEN_RECIPE below, and must be byte-identical to what `safetensors.serialize` produces
for them.

Usage: python3 tools/make_safetensors_fixtures.py [--check-only]
"""
import argparse
import json
import math
import os
import sys

import ml_dtypes
import numpy as np
from safetensors import TensorSpec, deserialize, safe_open, serialize, serialize_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "safetensors")

_keep_alive = []


def spec(array):
    array = np.array(array, order="C", copy=True)  # ascontiguousarray would make 0-d arrays 1-d
    _keep_alive.append(array)
    return TensorSpec(dtype=array.dtype.name, shape=list(array.shape),
                      data_ptr=array.ctypes.data, data_len=array.nbytes)


def json_float(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def all_dtypes_tensors():
    inf, nan = np.inf, np.nan
    return {
        "f64": np.array([[1.5, -2.25], [1e300, 5e-324]], np.float64),
        "f32": np.array([0.0, -0.0, 1.0, -3.5, 3.4028235e38, 1e-45, inf, nan], np.float32),
        "f16": np.array([0.0, 1.0, -2.5, 65504.0, 6e-8, 0.0009765625, -inf, nan], np.float16),
        "bf16": np.array([1.0, -3.140625, 1e30, 1e-40, inf, nan], ml_dtypes.bfloat16).reshape(2, 3),
        "f8_e4m3": np.array([0.5, -448.0, 2.0**-9, 1.75, 0.0, nan], ml_dtypes.float8_e4m3fn),
        "f8_e5m2": np.array([1.0, -57344.0, 2.0**-16, 0.375, inf, nan], ml_dtypes.float8_e5m2),
        "i64": np.array([0, -1, 2**40, -(2**63), 2**63 - 1], np.int64),
        "u64": np.array([0, 2**64 - 1], np.uint64),
        "i32": np.array([[-7, 2**31 - 1], [-(2**31), 0]], np.int32),
        "u32": np.array([0, 2**32 - 1, 12345], np.uint32),
        "i16": np.array([-32768, 32767, 3], np.int16),
        "u16": np.array([0, 65535], np.uint16),
        "i8": np.array([-128, 127, 0], np.int8),
        "u8": np.array([[0, 128, 255]], np.uint8),
        "bool": np.array([True, False, False, True], np.bool_),
        "scalar": np.array(3.25, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }


SAFETENSORS_NAME = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "int64": "I64", "uint64": "U64",
    "int32": "I32", "uint32": "U32", "int16": "I16", "uint16": "U16", "int8": "I8",
    "uint8": "U8", "bool": "BOOL",
}

# The tensors rlvr's writer puts in written_by_rlvr.safetensors (safetensors_test.cc,
# RlvrWrittenTensors() builds the same ones).
def rlvr_written_tensors():
    return {
        "weight": (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) * 0.25,
        "bias": np.array([1.0, -2.5, 3.140625], ml_dtypes.bfloat16),
        "half": np.array([[0.5, -1.0], [65504.0, 0.0009765625]], np.float16),
        "ids": np.array([0, -1, 2**40, 7], np.int64),
        "mask": np.array([[True, False], [False, True]], np.bool_),
        "fp8": np.array([0.5, -448.0, 2.0**-9, 1.75], ml_dtypes.float8_e4m3fn),
        "scalar": np.array(3.25, np.float64),
        "empty": np.zeros((0, 4), np.float32),
        "bytes": np.array([0, 128, 255], np.uint8),
        "i32": np.array([-7, 2**31 - 1], np.int32),
        "i8": np.array([-128, 127], np.int8),
    }


RLVR_WRITTEN_METADATA = {"format": "pt"}


def describe(tensors):
    out = {}
    for name, a in tensors.items():
        out[name] = {
            "dtype": SAFETENSORS_NAME[a.dtype.name],
            "shape": list(a.shape),
            "hex": a.tobytes().hex(),
            "values": [json_float(x) for x in a.astype(np.float64).reshape(-1)],
        }
    return out


def conversions():
    rng = np.random.default_rng(1234)
    n = 1500
    mags = np.exp(rng.uniform(np.log(1e-12), np.log(1e6), n))
    signs = rng.choice([-1.0, 1.0], n)
    x = (mags * signs).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 448.0, 464.0, 465.0, 480.0, 500.0,
                         57344.0, 61440.0, 61441.0, 65504.0, 65520.0, 65519.0, 1e-7, 5.96e-8,
                         2.98e-8, 2.0**-9, 2.0**-10, 3 * 2.0**-11, 2.0**-16, 2.0**-17,
                         1.00390625, 1.01171875, 3.4028235e38, 1e-45, 1.0 + 2.0**-8,
                         1.0 + 3 * 2.0**-9], np.float32)
    x = np.concatenate([specials, -specials, x])
    def bits(a, t):  # overflow to inf/NaN is part of what is tested
        return [int(v) for v in a.astype(t).view(np.uint16 if t in (np.float16, ml_dtypes.bfloat16)
                                                   else np.uint8)]
    with np.errstate(over="ignore"):
        return {
            "f32_bits": [int(v) for v in x.view(np.uint32)],
            "bf16": bits(x, ml_dtypes.bfloat16),
            "f16": bits(x, np.float16),
            "f8_e4m3": bits(x, ml_dtypes.float8_e4m3fn),
            "f8_e5m2": bits(x, ml_dtypes.float8_e5m2),
        }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def make():
    os.makedirs(OUT, exist_ok=True)
    tensors = all_dtypes_tensors()
    metadata = {"format": "pt", "producer": "make_safetensors_fixtures.py"}
    serialize_file({k: spec(v) for k, v in tensors.items()},
                   os.path.join(OUT, "all_dtypes.safetensors"), metadata)
    write_json(os.path.join(OUT, "all_dtypes.json"),
               {"metadata": metadata, "tensors": describe(tensors)})

    sharded = os.path.join(OUT, "sharded")
    os.makedirs(sharded, exist_ok=True)
    shard1 = {
        "model.embed_tokens.weight": (np.arange(12, dtype=np.float32).reshape(4, 3) / 8),
        "model.layers.0.mlp.weight": np.array([[1, -1, 0.5]] * 3, ml_dtypes.bfloat16),
    }
    shard2 = {"lm_head.weight": -(np.arange(12, dtype=np.float32).reshape(4, 3) / 4)}
    weight_map = {}
    total = 0
    for i, shard in enumerate([shard1, shard2]):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        serialize_file({k: spec(v) for k, v in shard.items()}, os.path.join(sharded, name),
                       {"format": "pt"})
        for k, v in shard.items():
            weight_map[k] = name
            total += v.nbytes
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                           indent=2, sort_keys=True) + "\n")
    with open(os.path.join(sharded, "config.json"), "w") as f:
        f.write(json.dumps({"model_type": "qwen2", "hidden_size": 3, "vocab_size": 4,
                            "num_hidden_layers": 1}, indent=2) + "\n")
    write_json(os.path.join(sharded, "expected.json"),
               {"tensors": describe({**shard1, **shard2})})
    write_json(os.path.join(OUT, "conversions.json"), conversions())
    print(f"wrote fixtures in {OUT}")


def check_rlvr_written():
    path = os.path.join(OUT, "written_by_rlvr.safetensors")
    if not os.path.exists(path):
        print(f"{path}: missing (run safetensors_test with RLVR_UPDATE_FIXTURES=1)")
        return False
    data = open(path, "rb").read()
    want = rlvr_written_tensors()
    got = {name: t for name, t in deserialize(data)}
    ok = True
    if set(got) != set(want):
        print(f"tensor names differ: {sorted(got)} vs {sorted(want)}")
        ok = False
    for name, a in want.items():
        t = got.get(name)
        if t is None:
            continue
        if (t["dtype"] != SAFETENSORS_NAME[a.dtype.name] or list(t["shape"]) != list(a.shape)
                or bytes(t["data"]) != a.tobytes()):
            print(f"{name}: differs: {t['dtype']} {t['shape']} vs "
                  f"{SAFETENSORS_NAME[a.dtype.name]} {list(a.shape)}")
            ok = False
    # The numpy front end too, for the dtypes numpy has.
    with safe_open(path, framework="numpy") as f:
        if f.metadata() != RLVR_WRITTEN_METADATA:
            print(f"metadata differs: {f.metadata()}")
            ok = False
        for name in ["weight", "half", "ids", "mask", "scalar", "empty", "bytes", "i32", "i8"]:
            if not np.array_equal(f.get_tensor(name), want[name]):
                print(f"{name}: numpy load differs")
                ok = False
    reference = bytes(serialize({k: spec(v) for k, v in want.items()}, RLVR_WRITTEN_METADATA))
    if reference != data:
        print("written_by_rlvr.safetensors is not byte-identical to safetensors.serialize output")
        ok = False
    print(f"{path}: {'OK' if ok else 'FAILED'}: {len(got)} tensors load identically in "
          f"safetensors; bytes equal safetensors.serialize's: {reference == data}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-only", action="store_true",
                        help="only check written_by_rlvr.safetensors")
    args = parser.parse_args()
    if not args.check_only:
        make()
    return 0 if check_rlvr_written() else 1


if __name__ == "__main__":
    sys.exit(main())
