#!/usr/bin/env bash
# The GPU inference benchmark in ONE command: builds cuda_bench (only the targets it needs),
# runs it, runs the PyTorch peer (torch_peer.py) on the same GPU when a Python with a
# CUDA-enabled torch is found, and prints a table with the ratios.
#
#   bench/cuda/run.sh [--quick]        (from anywhere; the repository is this script's ../..)
#
# Environment:
#   BUILD=dir           build directory (default <repo>/build-cuda-bench)
#   CUDA_BENCH_BIN=path use this cuda_bench binary, skip the build
#   TORCH_PYTHON=path   Python with torch (default: the first of <repo>/.venv-torch/bin/python,
#                       /work/venv-torch/bin/python, python3 that imports torch with CUDA)
#   PEAK_GBS=x          HBM peak for the roofline (default: from the device attributes)
#   OUT=dir             where the JSON lines are kept (default: a temporary directory)
# Assumptions: the GPU machine has the build dependencies of tools/bootstrap.sh and nvcc in
# /usr/local/cuda, and no network: torch is never installed here; without it the table shows
# rlvr's numbers only. Budget on an H100: build ~3-4 min on 16 cores (ccache helps), cuda_bench
# ~2-4 min (decode with and without CUDA graphs), torch eager ~2-3 min, torch.compile of the dense decode ~1-2 min; --quick runs
# batches 1 and 64 with 64 new tokens and no torch.compile.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build-cuda-bench}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
BATCHES=1,64,256
NEW=128
COMPILE=--compile
if [[ "${1:-}" == "--quick" ]]; then
  BATCHES=1,64
  NEW=64
  COMPILE=
fi

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

echo "== rlvr: $CUDA_BENCH_BIN" >&2
PEAK_ARGS=()
if [[ -n "${PEAK_GBS:-}" ]]; then PEAK_ARGS=(--peak-gbs "$PEAK_GBS"); fi
"$CUDA_BENCH_BIN" --batches "$BATCHES" --prompt 128 --new "$NEW" "${PEAK_ARGS[@]}" \
  | tee "$OUT/rlvr.jsonl"

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
  "$PY" "$HERE/torch_peer.py" --device cuda --batches "$BATCHES" --prompt 128 --new "$NEW" \
    $COMPILE | tee "$OUT/torch.jsonl" || echo "torch_peer.py failed (rlvr numbers above)" >&2
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

print(f"\n{'model':<11} {'case':<14} {'B':>4} {'rlvr tok/s':>10} {'roofline':>8} "
      f"{'eager tok/s':>11} {'vs eager':>8} {'compile tok/s':>13} {'vs compile':>10}")
for r in rlvr:
    if r.get("case") not in ("decode", "prefill"):
        continue
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
print("\nratios: rlvr tokens/s over PyTorch tokens/s (> 1: rlvr faster); roofline: decode HBM "
      "bytes (weights touched + KV read) per second over the peak.")
EOF
echo "(JSON lines kept in $OUT)" >&2
