#!/usr/bin/env python3
"""rlvr's math verifier against Hugging Face Math-Verify, on the same inputs, one core each.

    python3 bench/math_verify/run.py [--rlvr-bin PATH] [--data-dir ../shared/data]

Inputs: every GSM8K test reference solution scored against its "####" answer (GSM8K style) and
every MATH-500 reference solution scored against its gold answer (MATH style): full chains of
thought, answer extraction included. The *_short styles score only the final sentence
"The answer is $\\boxed{gold}$." (printed first, for reference). rlvr runs in bench_math_verify (built with -DRLVR_BENCH=ON);
Math-Verify (`pip install math-verify`) runs parse(gold), parse(completion), verify() in this
process on the first --peer-gsm / --peer-math pairs (it is ~1000x slower). Both sides are timed
in CPU seconds of one thread (the machines are shared; wall time would count waits for a core). The last two lines are
the headlines: `math_verify_<style>: rlvr X verif/s, peer Y verif/s, ratio Z`.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time


def find_binary():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    hits = sorted(glob.glob(os.path.join(root, "build*", "**", "bench_math_verify"), recursive=True),
                  key=os.path.getmtime, reverse=True)
    return hits[0] if hits else None


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def peer_rate(pairs, wrap_gold):
    from math_verify import parse, verify  # imported here so --help works without it
    # Warm up (imports, caches), then time.
    for completion, gold in pairs[:5]:
        verify(parse(wrap_gold(gold)), parse(completion))
    correct = 0
    # CPU time, like bench_math_verify: the machines are shared and wall time would count the
    # waits for a core. Math-Verify runs with its default settings (parsing timeouts on).
    start = time.process_time()
    for completion, gold in pairs:
        correct += bool(verify(parse(wrap_gold(gold)), parse(completion)))
    elapsed = time.process_time() - start
    return len(pairs) / elapsed, correct


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rlvr-bin", default=None, help="path to bench_math_verify")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data-dir", default=os.path.join(here, "..", "..", "..", "shared", "data"))
    ap.add_argument("--min-seconds", type=float, default=2.0, help="rlvr timing per style")
    ap.add_argument("--peer-gsm", type=int, default=400, help="GSM8K pairs timed for the peer")
    ap.add_argument("--peer-math", type=int, default=150, help="MATH-500 pairs timed for the peer")
    args = ap.parse_args()

    binary = args.rlvr_bin or find_binary()
    if not binary or not os.path.exists(binary):
        sys.exit("bench_math_verify not found: build it (cmake --build BUILD --target "
                 "bench_math_verify) or pass --rlvr-bin")
    out = subprocess.run([binary, "--data-dir", args.data_dir, "--min-seconds", str(args.min_seconds)],
                         check=True, capture_output=True, text=True).stdout
    rlvr = {}
    for line in out.splitlines():
        print(line)
        if line.startswith("RESULT "):
            _, style, rate, correct, total = line.split()
            rlvr[style] = (float(rate), int(correct), int(total))

    gsm = load(os.path.join(args.data_dir, "gsm8k_test.jsonl"))
    gsm_pairs = [(r["answer"], r["answer"].split("####")[-1].strip()) for r in gsm]
    math = load(os.path.join(args.data_dir, "math500_test.jsonl"))
    math_pairs = [(r["solution"], r["answer"]) for r in math]

    def short(pairs):
        return [("The answer is $\\boxed{" + g + "}$.", g) for _, g in pairs]

    results = []
    for style, pairs, n in (("gsm8k_short", short(gsm_pairs), args.peer_gsm),
                            ("math500_short", short(math_pairs), args.peer_math),
                            ("gsm8k", gsm_pairs, args.peer_gsm), ("math500", math_pairs, args.peer_math)):
        rate, correct = peer_rate(pairs[:n], lambda g: "$" + g + "$")
        print(f"peer {style}: Math-Verify {rate:.1f} verif/s on the first {min(n, len(pairs))} pairs "
              f"({correct} correct)")
        results.append((style, rlvr[style][0], rate))
    for style, ours, peer in results:
        print(f"math_verify_{style}: rlvr {ours:.0f} verif/s, peer {peer:.1f} verif/s, "
              f"ratio {ours / peer:.0f}")


if __name__ == "__main__":
    main()
