#!/usr/bin/env bash
# The GPU benchmark in ONE command: builds cuda_bench (only the targets it needs), runs it
# (decode/prefill, the training step, a full GRPO step), runs the PyTorch peer (torch_peer.py)
# on the same GPU when a Python with a CUDA-enabled torch is found, and prints one table with the
# ratios.
#
#   bench/cuda/run.sh [--quick] [--suite decode,train,grpo] [--build-only]
#       (from anywhere; the repository is this script's ../..)
# --suite runs only the named parts (default all three); --build-only stops after the build (a
# first device call can build, a second run: the build directory stays on a warm machine).
#
# Environment:
#   BUILD=dir           build directory (default <repo>/build-cuda-bench)
#   CUDA_BENCH_BIN=path use this cuda_bench binary, skip the build
#   TORCH_PYTHON=path   Python with torch (default: the first of <repo>/.venv-torch/bin/python,
#                       /work/venv-torch/bin/python, python3 that imports torch with CUDA)
#   PEAK_GBS=x          HBM peak for the roofline (default: from the device attributes)
#   PEAK_TFLOPS=x       dense bf16 peak for the MFU (default 989: H100 SXM)
#   OUT=dir             where the JSON lines are kept (default: a temporary directory)
# Assumptions: the GPU machine has the build dependencies of tools/bootstrap.sh and nvcc in
# /usr/local/cuda, and no network: torch is never installed here; without it the table shows
# rlvr's numbers only. Budget on an H100 (estimates, never measured): build ~3-4 min on 16 cores
# (ccache helps); decode: cuda_bench ~2-4 min (with and without CUDA graphs), torch eager ~2-3
# min, torch.compile of the dense decode ~1-2 min; train + grpo: ~1 min rlvr (model uploads
# included), ~2-4 min torch (the eager MoE GRPO step is the slow part, torch.compile of the
# dense training step ~1 min).
# --quick: decode batches 1 and 64 with 64 new tokens, 3 training steps after 1 warm-up, GRPO
# with 64 new tokens, no torch.compile. If the whole run does not fit one 10-minute device call,
# use --build-only first, then --suite decode and --suite train,grpo in separate calls.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build-cuda-bench}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
BATCHES=1,64,256
NEW=128
COMPILE=--compile
SUITE=decode,train,grpo
BUILD_ONLY=0
TRAIN_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick)
      BATCHES=1,64
      NEW=64
      COMPILE=
      TRAIN_ARGS=(--train-warmup 1 --train-steps 3 --grpo-new 64)
      ;;
    --suite) SUITE="$2"; shift ;;
    --build-only) BUILD_ONLY=1 ;;
    *) echo "usage: $0 [--quick] [--suite decode,train,grpo] [--build-only]" >&2; exit 2 ;;
  esac
  shift
done
if [[ -n "${PEAK_TFLOPS:-}" ]]; then TRAIN_ARGS+=(--peak-tflops "$PEAK_TFLOPS"); fi

if [[ -z "${CUDA_BENCH_BIN:-}" ]]; then
  LAUNCHER=()
  if command -v ccache > /dev/null; then
    LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  fi
  echo "== configure + build cuda_bench in $BUILD" >&2
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DRLVR_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DRLVR_BENCH=ON "${LAUNCHER[@]}" > "$OUT/cmake.log" 2>&1 \
    || { tail -30 "$OUT/cmake.log" >&2; exit 1; }
  cmake --build "$BUILD" -j"$(nproc)" --target cuda_bench > "$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log" >&2; exit 1; }
  CUDA_BENCH_BIN="$BUILD/bin/cuda_bench"
fi
if [[ "$BUILD_ONLY" == 1 ]]; then
  echo "== built $CUDA_BENCH_BIN" >&2
  exit 0
fi

echo "== rlvr: $CUDA_BENCH_BIN" >&2
PEAK_ARGS=()
if [[ -n "${PEAK_GBS:-}" ]]; then PEAK_ARGS=(--peak-gbs "$PEAK_GBS"); fi
"$CUDA_BENCH_BIN" --suite "$SUITE" --batches "$BATCHES" --prompt 128 --new "$NEW" \
  "${PEAK_ARGS[@]}" "${TRAIN_ARGS[@]}" | tee "$OUT/rlvr.jsonl" \
  || echo "cuda_bench failed (numbers so far kept)" >&2

PY=""
for cand in "${TORCH_PYTHON:-}" "$ROOT/.venv-torch/bin/python" /work/venv-torch/bin/python python3; do
  [[ -z "$cand" ]] && continue
  if command -v "$cand" > /dev/null 2>&1 &&
     "$cand" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
    PY="$cand"
    break
  fi
done
: > "$OUT/torch.jsonl"
if [[ -n "$PY" ]]; then
  echo "== torch: $PY" >&2
  "$PY" "$HERE/torch_peer.py" --device cuda --mode "$SUITE" --batches "$BATCHES" --prompt 128 \
    --new "$NEW" $COMPILE "${TRAIN_ARGS[@]}" | tee "$OUT/torch.jsonl" \
    || echo "torch_peer.py failed (rlvr numbers above)" >&2
else
  echo "== no Python with a CUDA-enabled torch found: rlvr numbers only" >&2
fi

python3 - "$OUT/rlvr.jsonl" "$OUT/torch.jsonl" <<'EOF'
import json, sys

def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows

rlvr, torch = load(sys.argv[1]), load(sys.argv[2])
dev = next((r for r in rlvr if r.get("case") == "device"), {})
print(f"\ndevice: {dev.get('name', '?')}, HBM peak {dev.get('peak_gbs', 0):.0f} GB/s "
      f"({dev.get('peak_source', '?')})")
tv = {}
for r in torch:
    if r.get("case") in ("decode", "prefill") and r.get("impl") in ("torch_eager", "torch_compile"):
        tv[(r["case"], r["impl"], r["model"], r["batch"])] = r["tokens_per_s"]
for r in torch:
    if r.get("case") == "compile_failed":
        print(f"torch.compile failed for {r['model']}: {r['error'][:200]}")

def ratio(a, b):
    return f"{a / b:6.2f}x" if a and b else "     -"

def num(x):
    return f"{x:10.0f}" if x else "         -"

rdec = [r for r in rlvr if r.get("case") in ("decode", "prefill")]
if rdec:
    print(f"\n{'model':<11} {'case':<14} {'B':>4} {'rlvr tok/s':>10} {'roofline':>8} "
          f"{'eager tok/s':>11} {'vs eager':>8} {'compile tok/s':>13} {'vs compile':>10}")
for r in rdec:
    # Prefill never uses CUDA graphs: its row from the run without them is a repeat.
    if r["case"] == "prefill" and r.get("graphs") is False:
        continue
    label = r["case"] + ("/nograph" if r.get("graphs") is False else "")
    eager = tv.get((r["case"], "torch_eager", r["model"], r["batch"]))
    comp = tv.get((r["case"], "torch_compile", r["model"], r["batch"]))
    roof = f"{100 * r['roofline_frac']:7.1f}%" if "roofline_frac" in r else "       -"
    print(f"{r['model']:<11} {label:<14} {r['batch']:>4} {r['tokens_per_s']:10.0f} {roof} "
          f"{num(eager):>11} {ratio(r['tokens_per_s'], eager):>8} {num(comp):>13} "
          f"{ratio(r['tokens_per_s'], comp):>10}")
if rdec:
    print("\nratios: rlvr tokens/s over PyTorch tokens/s (> 1: rlvr faster); roofline: decode "
          "HBM bytes (weights touched + KV read) per second over the peak.")

# Training step.
tt = {}
for r in torch:
    if r.get("case") == "train":
        tt[(r["impl"], r["model"])] = r
    if r.get("case") == "train_compile_failed":
        print(f"torch.compile (training) failed for {r['model']}: {r['error'][:200]}")
rtrain = [r for r in rlvr if r.get("case") == "train"]
if rtrain or tt:
    peak = (rtrain or list(tt.values()))[0].get("peak_tflops", 0)
    print(f"\ntraining step (SFT: forward + logprobs + backward + clip + AdamW), peak "
          f"{peak:.0f} TFLOP/s bf16")
    print(f"{'model':<11} {'B x T':>9} {'rlvr tok/s':>10} {'MFU':>6} {'eager tok/s':>11} "
          f"{'MFU':>6} {'vs eager':>8} {'compile tok/s':>13} {'MFU':>6} {'vs compile':>10}")
    models = [r["model"] for r in rtrain] + [m for (_, m) in tt if m not in
                                               [r["model"] for r in rtrain]]
    for m in models:
        r = next((x for x in rtrain if x["model"] == m), {})
        e, c = tt.get(("torch_eager", m), {}), tt.get(("torch_compile", m), {})
        ref = r or e or c
        bt = f"{ref.get('batch', 0)}x{ref.get('seq', 0)}"

        def mfu(x):
            return f"{100 * x['mfu']:5.1f}%" if x else "     -"

        print(f"{m:<11} {bt:>9} {num(r.get('tokens_per_s')):>10} {mfu(r)} "
              f"{num(e.get('tokens_per_s')):>11} {mfu(e)} "
              f"{ratio(r.get('tokens_per_s'), e.get('tokens_per_s')):>8} "
              f"{num(c.get('tokens_per_s')):>13} {mfu(c)} "
              f"{ratio(r.get('tokens_per_s'), c.get('tokens_per_s')):>10}")
        for x, who in ((r, "rlvr"), (e, "eager")):
            if x and x.get("active_nonembed_params") != ref.get("active_nonembed_params"):
                print(f"  WARNING: {who} counts {x.get('active_nonembed_params')} active "
                      f"non-embedding parameters, {ref.get('active_nonembed_params')} elsewhere")
    print("MFU = (6 N B T + 6 L B T^2 H D + 6 C V B T) / step time / peak; N = active "
          "non-embedding parameters; the attention term is 12 L B T^2 H D halved (causal).")

# GRPO step.
tg = {r["model"]: r for r in torch if r.get("case") == "grpo"}
rg = [r for r in rlvr if r.get("case") == "grpo"]
if rg or tg:
    ref = (rg or list(tg.values()))[0]
    print(f"\nGRPO step: {ref['prompts']} prompts x {ref['group']} samples, {ref['prompt']} + "
          f"{ref['new']} tokens, micro-batches of {ref['micro']} sequences; seconds")
    print(f"{'model':<11} {'rlvr s':>7} {'gen':>6} {'train':>6} {'sync':>6} {'eager s':>7} "
          f"{'gen':>6} {'train':>6} {'sync':>6} {'speedup':>7} {'w/o sync':>8}")

    def sec(x, k):
        return f"{x[k]:6.2f}" if x and k in x else "     -"

    for m in [r["model"] for r in rg] + [m for m in tg if m not in [r["model"] for r in rg]]:
        r = next((x for x in rg if x["model"] == m), {})
        e = tg.get(m, {})
        sp = ratio(e.get("seconds"), r.get("seconds"))
        nosync = ratio(e.get("seconds", 0) - e.get("sync_s", 0) if e else None,
                       r.get("seconds", 0) - r.get("sync_s", 0) if r else None)
        print(f"{m:<11} {sec(r, 'seconds'):>7} {sec(r, 'generate_s')} {sec(r, 'train_s')} "
              f"{sec(r, 'sync_s')} {sec(e, 'seconds'):>7} {sec(e, 'generate_s')} "
              f"{sec(e, 'train_s')} {sec(e, 'sync_s')} {sp:>7} {nosync:>8}")
    print("speedup: PyTorch eager seconds over rlvr seconds (> 1: rlvr faster; goal 1.5x); "
          "w/o sync: the same without the weight refresh (rlvr: DownloadParams + a new "
          "CudaGenerator through the host; torch: copy_ into the bf16 decode weights).")
EOF
echo "(JSON lines kept in $OUT)" >&2
