#!/usr/bin/env python3
"""The rollout benchmark, rlvr and its PyTorch eager peer on the same models in one run.

    python3 bench/rollout/run.py [--build build] [--python /work/venv-torch/bin/python]
                                 [--presets tiny,small] [--arch qwen3_moe]

For each preset: rollout_bench writes a random model (HF layout) and measures the engine
(decode at batch 1/16/64/256, prefill of 512-token prompts, the G=8 group case); torch_peer.py
loads the same checkpoint, checks that its greedy tokens equal rlvr's, and measures the same
decode and prefill work with a preallocated KV cache. Both use every core (OpenMP / torch
intra-op threads). The last line is the headline:
    rollout_decode_b64: rlvr X tok/s, pytorch Y tok/s, ratio Z
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--python", default="/work/venv-torch/bin/python")
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--arch", default="qwen3_moe")
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"],
                    help="rlvr's matrix-product precision (bfloat16: MatmulPrecision::kBf16, "
                         "packed bf16 weights in the rollout)")
    ap.add_argument("--peer-dtypes", default="float32,bfloat16",
                    help="PyTorch runs each; its best tokens/s per case is compared")
    ap.add_argument("--threads", type=int, default=0,
                    help="OMP_NUM_THREADS for both sides (torch reads it too); 0 = all cores")
    ap.add_argument("--passive", action="store_true",
                    help="OMP_WAIT_POLICY=passive for both sides (a loaded machine: spinning "
                         "OpenMP barriers then burn the CPU the other thread needs)")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if args.passive:
        env["OMP_WAIT_POLICY"] = "passive"
    bench = os.path.join(args.build, "bin", "rollout_bench")
    have_torch = os.path.exists(args.python)
    print(f"rlvr dtype {args.dtype}, pytorch dtypes {args.peer_dtypes} (best per case)")
    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}, "
          f"threads: {args.threads or 'all'}, OMP_WAIT_POLICY: {env.get('OMP_WAIT_POLICY', '')}")
    headline = None
    for preset in args.presets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            mdir = os.path.join(tmp, "model")
            rl = run_json([bench, "--arch", args.arch, "--preset", preset, "--model-out", mdir,
                           "--batches", args.batches, "--new-tokens", str(args.new_tokens),
                           "--dtype", args.dtype], env)
            pt = []
            if have_torch:
                for dt in args.peer_dtypes.split(","):
                    pt += run_json([args.python, os.path.join(HERE, "torch_peer.py"), "--model",
                                    mdir, "--preset", preset, "--batches", args.batches,
                                    "--new-tokens", str(args.new_tokens), "--dtype", dt,
                                    "--check", os.path.join(mdir, "greedy.json")], env)
        print(f"== {args.arch} {preset} ==")
        for c in pt:
            if c["case"] == "check":
                print(f"  same model check (16 greedy tokens equal): {c['greedy_match']}")
        def best(rows, case, batch, key):
            rates = [(r["tokens"] / r[key], r.get("dtype", args.dtype)) for r in rows
                     if r["case"] == case and (batch is None or r.get("batch") == batch)]
            return max(rates) if rates else (None, None)
        def rate(rows, case, batch=None):
            return best(rows, case, batch, "seconds")[0]
        def cpu_rate(rows, batch):
            return best(rows, "decode", batch, "cpu_seconds_with_prefill")[0]
        for b in [int(x) for x in args.batches.split(",")]:
            x, y = rate(rl, "decode", b), rate(pt, "decode", b)
            ratio = f"{x / y:.2f}" if y else "n/a"
            ytxt = f"{y:.0f}" if y else "n/a"
            cx, cy = cpu_rate(rl, b), cpu_rate(pt, b)
            cpu_txt = (f"; per CPU-second (prefill included) rlvr {cx:.0f}, pytorch {cy:.0f}, "
                       f"ratio {cx / cy:.2f}") if cy else ""
            pdt = best(pt, "decode", b, "seconds")[1]
            print(f"  decode batch {b:4d}: rlvr {x:9.0f} tok/s, pytorch {ytxt:>9} tok/s ({pdt}), "
                  f"ratio {ratio}{cpu_txt}")
            if b == 64 and preset == args.presets.split(",")[-1]:
                headline = (x, y)
        x, (y, pdt) = rate(rl, "prefill"), best(pt, "prefill", None, "seconds")
        print(f"  prefill 512-token prompts: rlvr {x:.0f} tok/s, pytorch "
              f"{f'{y:.0f}' if y else 'n/a'} tok/s ({pdt}), ratio {f'{x / y:.2f}' if y else 'n/a'}")
        for r in rl:
            if r["case"] == "group":
                print(f"  group G={r['group']} of one {r['prompt_len']}-token prompt, 8 new tokens: "
                      f"{r['group_seconds']:.3f}s vs single completion {r['single_seconds']:.3f}s "
                      f"= {r['group_seconds'] / r['single_seconds']:.2f}x "
                      f"(prefilled {r['group_prefilled_tokens']} tokens once)")
    if headline:
        x, y = headline
        print(f"rollout_decode_b64: rlvr {x:.0f} tok/s, pytorch "
              f"{f'{y:.0f}' if y else 'n/a'} tok/s, ratio {f'{x / y:.2f}' if y else 'n/a'}")


if __name__ == "__main__":
    main()
