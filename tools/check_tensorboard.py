#!/usr/bin/env python3
"""Loads a TensorBoard event file (or a log directory) with TensorBoard's own EventAccumulator
and prints what it holds; with --expect-fixture, also checks the contents of
tests/fixtures/tensorboard/events.out.tfevents.1700000000.rlvr-fixture (written by
tests/core/tensorboard_test.cc, WriteFixtureEvents()).

Usage:
  python3 tools/check_tensorboard.py PATH [--expect-fixture]
Needs: pip install tensorboard
"""
import argparse
import math
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util


def load(path):
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0,
                             event_accumulator.TENSORS: 0})
    acc.Reload()
    return acc


def describe(acc):
    tags = acc.Tags()
    out = {"scalars": {}, "histograms": {}, "text": {}}
    for tag in tags.get("scalars", []):
        out["scalars"][tag] = [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
    for tag in tags.get("histograms", []):
        out["histograms"][tag] = [(e.step, e.histogram_value) for e in acc.Histograms(tag)]
    for tag in tags.get("tensors", []):
        events = acc.Tensors(tag)
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if plugin == "text":
            out["text"][tag] = [(e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode())
                                for e in events]
    return out


def print_contents(contents):
    for tag, events in contents["scalars"].items():
        print(f"scalar {tag}: " + ", ".join(f"step {s}: {v:.6g}" for s, v, _ in events))
    for tag, events in contents["histograms"].items():
        for step, h in events:
            print(f"histogram {tag} step {step}: num={h.num:g} min={h.min:.4g} max={h.max:.4g} "
                  f"sum={h.sum:.4g} buckets={len(h.bucket)}")
    for tag, events in contents["text"].items():
        for step, text in events:
            print(f"text {tag} step {step}: {text!r}")


def check_fixture(contents):
    errors = []

    def expect(cond, what):
        if not cond:
            errors.append(what)

    loss = contents["scalars"].get("train/loss", [])
    expect([s for s, _, _ in loss] == [0, 1, 2, 3, 4], f"train/loss steps: {loss}")
    for step, value, _ in loss:
        expect(math.isclose(value, 1.0 / (1 + step), rel_tol=1e-6), f"train/loss[{step}]={value}")
    reward = contents["scalars"].get("train/reward", [])
    expect([round(v, 6) for _, v, _ in reward] == [0.0, 0.25, 0.5, 0.75, 1.0],
           f"train/reward: {reward}")
    expect(loss and loss[0][2] == 1700000000.25, f"first loss wall_time: {loss[:1]}")
    histos = contents["histograms"].get("policy/logits", [])
    expect([s for s, _ in histos] == [0, 1], f"policy/logits steps: {[s for s, _ in histos]}")
    for step, h in histos:
        values = [math.sin(0.1 * i + step) for i in range(100)]
        expect(h.num == 100 and sum(h.bucket) == 100, f"histogram {step} counts")
        expect(math.isclose(h.min, min(values)) and math.isclose(h.max, max(values)),
               f"histogram {step} min/max")
        expect(math.isclose(h.sum, sum(values), abs_tol=1e-9), f"histogram {step} sum")
    text = contents["text"].get("samples/completion", [])
    expect(text == [(3, "The answer is **42**.")], f"text: {text}")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="an events.out.tfevents.* file or a log directory")
    parser.add_argument("--expect-fixture", action="store_true",
                        help="check the committed fixture's expected contents")
    args = parser.parse_args()
    contents = describe(load(args.path))
    print_contents(contents)
    if not any(contents.values()):
        print("no scalars, histograms or text found", file=sys.stderr)
        return 1
    if args.expect_fixture:
        errors = check_fixture(contents)
        for e in errors:
            print(f"MISMATCH: {e}", file=sys.stderr)
        print("fixture check: " + ("OK" if not errors else f"{len(errors)} mismatches"))
        return 1 if errors else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
