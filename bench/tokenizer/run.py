#!/usr/bin/env python3
"""Tokenizer throughput: rlvr vs the Hugging Face `tokenizers` package, one thread each.

    python3 bench/tokenizer/run.py [--bin build/bin/bench_tokenizer] [--tokenizer qwen2]

Both encode every text of ../shared/data (the texts the tokenizer tests use) with the same
tokenizer.json, best of 3 passes (word caches warm in both), and must produce identical ids. Times are process
CPU seconds (the machines are shared; CPU time is much less sensitive to other load). The
peer uses Tokenizer.encode_batch with RAYON_NUM_THREADS=1 so that neither side uses more than
one core and Python call overhead is paid once per batch. Headline last.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_tokenizer_fixtures as fixtures  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "bench_tokenizer"))
    parser.add_argument("--tokenizer", default="qwen2", choices=["qwen2", "llama3", "gpt2"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    path = os.path.join(ROOT, "tests", "fixtures", "tokenizers", args.tokenizer, "tokenizer.json")

    run = subprocess.run([args.bin, path, fixtures.DATA, str(args.repeats)], check=True,
                         capture_output=True, text=True)
    print(run.stdout, end="")
    result = dict(kv.split("=") for kv in
                  re.search(r"^RESULT (.*)$", run.stdout, re.M).group(1).split())

    texts = []
    for name in fixtures.data_files():
        texts.extend(fixtures.file_texts(name))
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    tok = Tokenizer.from_file(path)
    best_encode = best_decode = float("inf")
    for _ in range(args.repeats):
        start = time.process_time()
        encodings = tok.encode_batch(texts, add_special_tokens=False)
        best_encode = min(best_encode, time.process_time() - start)
        ids = [e.ids for e in encodings]
        start = time.process_time()
        tok.decode_batch(ids, skip_special_tokens=False)
        best_decode = min(best_decode, time.process_time() - start)
    h = 0xCBF29CE484222325
    for seq in ids:
        h = fixtures.fnv1a64(fixtures.ids_bytes(seq), h)
    same = f"{h:016x}" == result["ids_fnv1a64"]
    peer_mbs = nbytes / 1e6 / best_encode
    rlvr_mbs = int(result["bytes"]) / 1e6 / float(result["encode_s"])
    print(f"tokenizers {tokenizers.__version__} encode: {best_encode:.3f} CPU s = {peer_mbs:.2f} MB/s; "
          f"decode: {best_decode:.3f} CPU s = {nbytes / 1e6 / best_decode:.2f} MB/s")
    print(f"identical ids: {same} ({sum(map(len, ids))} ids)")
    if not same:
        sys.exit("ids differ between rlvr and tokenizers")
    print(f"tokenizer_encode[{args.tokenizer}, 1 thread]: rlvr {rlvr_mbs:.2f} MB/s, "
          f"peer {peer_mbs:.2f} MB/s, ratio {rlvr_mbs / peer_mbs:.2f}")


if __name__ == "__main__":
    main()
