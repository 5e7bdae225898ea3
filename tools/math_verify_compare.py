#!/usr/bin/env python3
"""Scores the hand-checked math cases with rlvr and with Hugging Face Math-Verify.

    pip install math-verify
    python3 tools/math_verify_compare.py [--cases tests/verifiers/math/cases.jsonl]
                                         [--rlvr-bin build/bin/bench_math_verify] [--markdown]

Each case has a gold answer, a prediction (a bare answer or a whole completion) and the verdict
a careful human gives ("correct", "wrong", "no_answer", "unparsed"). A verifier agrees with a case
when it says correct exactly for the "correct" cases. rlvr is run through
`bench_math_verify --verify` (the same VerifyMath call the CLI and trainer use). Math-Verify gets
parse("$gold$") and parse(pred), with a bare prediction (short, one line, no $, \boxed, \(,
<answer> or ####) wrapped as "$pred$" since its LaTeX extraction needs delimiters; when that finds
nothing it is retried unwrapped; then verify().
Prints a table per category and the cases where the two disagree with the human.
"""
import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile


def find_binary(root):
    hits = sorted(glob.glob(os.path.join(root, "build*", "**", "bench_math_verify"), recursive=True),
                  key=os.path.getmtime, reverse=True)
    return hits[0] if hits else None


def rlvr_verdicts(binary, cases):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            for c in cases:
                f.write(json.dumps({"completion": c["pred"], "answer": c["gold"]}) + "\n")
        subprocess.run([binary, "--verify", src, dst], check=True)
        with open(dst, encoding="utf-8") as f:
            return [json.loads(line)["correct"] for line in f]


def math_verify_verdicts(cases):
    import logging
    from math_verify import parse, verify
    logging.disable(logging.CRITICAL)  # it logs every timeout with the whole input
    out = []
    for c in cases:
        try:
            gold = parse("$" + c["gold"] + "$")
            p = c["pred"]
            markers = ("$", "\\boxed", "\\fbox", "\\(", "\\[", "<answer>", "####")
            bare = len(p) <= 80 and "\n" not in p and not any(m in p for m in markers)
            pred = parse("$" + p + "$") if bare else parse(p)
            if not pred:
                pred = parse(p)
            out.append(bool(verify(gold, pred)))
        except Exception:  # Math-Verify raises on some inputs; that is a "not correct"
            out.append(False)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=os.path.join(root, "tests", "verifiers", "math", "cases.jsonl"))
    ap.add_argument("--rlvr-bin", default=None, help="path to bench_math_verify")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--show", type=int, default=40, help="disagreements to list per verifier")
    args = ap.parse_args()

    binary = args.rlvr_bin or find_binary(root)
    if not binary:
        sys.exit("bench_math_verify not found; build it or pass --rlvr-bin")
    with open(args.cases, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()]
    truth = [c["expected"] == "correct" for c in cases]
    ours = rlvr_verdicts(binary, cases)
    peer = math_verify_verdicts(cases)

    stats = collections.OrderedDict()
    for c, t, a, b in zip(cases, truth, ours, peer):
        s = stats.setdefault(c["category"], [0, 0, 0])
        s[0] += 1
        s[1] += a == t
        s[2] += b == t
    total = [sum(v[i] for v in stats.values()) for i in range(3)]
    if args.markdown:
        print("| category | cases | rlvr agrees | Math-Verify agrees |")
        print("|---|---:|---:|---:|")
        for k, (n, a, b) in stats.items():
            print(f"| {k} | {n} | {a} | {b} |")
        print(f"| **all** | **{total[0]}** | **{total[1]} ({100 * total[1] / total[0]:.1f}%)** | "
              f"**{total[2]} ({100 * total[2] / total[0]:.1f}%)** |")
    else:
        print(f"{'category':<22}{'cases':>6}{'rlvr':>8}{'Math-Verify':>13}")
        for k, (n, a, b) in stats.items():
            print(f"{k:<22}{n:>6}{a:>8}{b:>13}")
        print(f"{'all':<22}{total[0]:>6}{total[1]:>8}{total[2]:>13}")
    for name, verdicts in (("rlvr", ours), ("Math-Verify", peer)):
        misses = [(c, v) for c, t, v in zip(cases, truth, verdicts) if v != t]
        print(f"\n{name}: {len(misses)} disagreements with the hand labels")
        for c, v in misses[:args.show]:
            pred = c["pred"] if len(c["pred"]) < 70 else c["pred"][:67] + "..."
            print(f"  [{c['category']}] gold={c['gold'][:50]!r} pred={pred!r} "
                  f"human={c['expected']} said_correct={v}")
    print(f"\nagreement: rlvr {total[1]}/{total[0]}, Math-Verify {total[2]}/{total[0]}")


if __name__ == "__main__":
    main()
