#!/usr/bin/env bash
# Training step of the `small` MoE preset (qwen3_moe): rlvr vs PyTorch eager on the same CPU, in
# one run, on the same model (rlvr saves it, PyTorch loads it) and the same batch shape.
#
#   bench/train_step/run.sh [BUILD_DIR] [PYTHON]
#     BUILD_DIR  an rlvr build with bench_train_step (default: build)
#     PYTHON     a python with torch + transformers (default: /work/venv-torch/bin/python)
#   Environment: BATCH (8), SEQ (256), STEPS (5), ARCH (qwen3_moe), PRESET (small),
#                EXPERTS ("eager grouped_mm": transformers experts implementations to try).
#
# PyTorch runs fp32 and bf16 autocast, each with every experts implementation, each in its own
# process (own peak RSS); its best tokens/s is compared. The last line is the headline:
#   train_step_small_moe: rlvr X tok/s, pytorch Y tok/s, ratio Z
set -euo pipefail
# Both sides use OpenMP (libgomp). Its default spin-waiting at barriers collapses when anything
# else runs on the 2 cores (measured: rlvr 268 tok/s spinning vs 2,220 passive on a loaded
# machine), so both run with passive waiting unless the caller says otherwise.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
BUILD=${1:-build}
PY=${2:-/work/venv-torch/bin/python}
BATCH=${BATCH:-8}
SEQ=${SEQ:-256}
STEPS=${STEPS:-5}
ARCH=${ARCH:-qwen3_moe}
PRESET=${PRESET:-small}
EXPERTS=${EXPERTS:-"eager grouped_mm"}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "OMP_WAIT_POLICY=$OMP_WAIT_POLICY, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$BUILD/bin/bench_train_step" --arch "$ARCH" --preset "$PRESET" --batch "$BATCH" --seq "$SEQ" \
  --steps "$STEPS" --save "$TMP/model" > "$TMP/rlvr.json"
cat "$TMP/rlvr.json"
for mode in fp32 bf16; do
  for ex in $EXPERTS; do
    if "$PY" "$HERE/torch_train_step.py" --model "$TMP/model" --mode "$mode" --experts "$ex" \
        --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" > "$TMP/torch_${mode}_${ex}.json"; then
      cat "$TMP/torch_${mode}_${ex}.json"
    else
      echo "pytorch $mode experts=$ex failed" >&2
      rm -f "$TMP/torch_${mode}_${ex}.json"
    fi
  done
done
"$PY" - "$TMP" "$PRESET" <<'EOF'
import glob, json, sys
tmp, preset = sys.argv[1], sys.argv[2]
r = json.load(open(f"{tmp}/rlvr.json"))
ts = [json.load(open(f)) for f in sorted(glob.glob(f"{tmp}/torch_*.json"))]
best = max(ts, key=lambda t: t["tokens_per_s"])
print(f"rlvr: {r['params']} parameters, {r['tokens']} tokens/step, {r['step_ms']:.1f} ms/step, "
      f"peak RSS {r['peak_rss_mb']:.0f} MB")
print(f"pytorch best: {best['impl']}, {best['step_ms']:.1f} ms/step, "
      f"peak RSS {best['peak_rss_mb']:.0f} MB")
print(f"train_step_{preset}_moe: rlvr {r['tokens_per_s']:.0f} tok/s, "
      f"pytorch {best['tokens_per_s']:.0f} tok/s, ratio {r['tokens_per_s'] / best['tokens_per_s']:.2f}")
EOF
