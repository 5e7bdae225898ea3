#!/usr/bin/env bash
# One GRPO step of the `small` MoE preset (qwen3_moe): rlvr vs PyTorch eager on the same CPU, in
# one run, on the same model (rlvr saves it, transformers loads it), the same prompts (token ids)
# and the same hyper-parameters; every completion is exactly NEW_TOKENS long on both sides (EOS
# ignored), so both do the same work. Time is split by stage: generate, verify (+ advantages),
# reference logprobs, policy forward/backward + AdamW.
#
#   bench/grpo_step/run.sh [BUILD_DIR] [PYTHON]
#     BUILD_DIR  an rlvr build with bench_grpo_step (default: build)
#     PYTHON     a python with torch + transformers (default: /work/venv-torch/bin/python)
#   Environment: PROMPTS (8), GROUP (8), NEW_TOKENS (128), STEPS (2 timed steps, their mean is
#                reported), WARMUP (1 full step, untimed), THREADS (2, both sides), ARCH (qwen3_moe), PRESET (small),
#                MODES ("fp32 bf16": PyTorch fp32 and bf16 autocast), EXPERTS ("eager":
#                transformers experts implementations to try), BACKEND (causal_lm: the trainer's
#                rollout backend; or recording), DATA (../shared/data/gsm8k_test.jsonl).
# Run from the source root. PyTorch runs each mode x experts implementation in its own process
# (own peak RSS); its fastest total is compared. Each stage is timed in wall and process CPU
# seconds (all threads): on a shared machine the wall clock overstates both sides, so the CPU-time
# ratio is printed as a cross-check. The last line is the headline:
#   grpo_step_small_moe: rlvr X s, pytorch Y s, ratio Z        (ratio = pytorch / rlvr time)
set -euo pipefail
# Both sides use OpenMP (libgomp); spinning barriers collapse when anything else runs on the
# cores (see bench/train_step/run.sh), so both wait passively unless the caller says otherwise.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
BUILD=${1:-build}
PY=${2:-/work/venv-torch/bin/python}
PROMPTS=${PROMPTS:-8}
GROUP=${GROUP:-8}
NEW_TOKENS=${NEW_TOKENS:-128}
STEPS=${STEPS:-2}
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-2}
ARCH=${ARCH:-qwen3_moe}
PRESET=${PRESET:-small}
MODES=${MODES:-"fp32 bf16"}
EXPERTS=${EXPERTS:-"eager"}
BACKEND=${BACKEND:-causal_lm}
DATA=${DATA:-../shared/data/gsm8k_test.jsonl}
export OMP_NUM_THREADS=$THREADS
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "OMP_WAIT_POLICY=$OMP_WAIT_POLICY, threads $THREADS, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "step: $PROMPTS prompts x $GROUP samples x $NEW_TOKENS new tokens, $ARCH $PRESET, $WARMUP warm-up + $STEPS timed step(s)"
"$BUILD/bin/bench_grpo_step" --arch "$ARCH" --preset "$PRESET" --prompts "$PROMPTS" \
  --group "$GROUP" --max-new-tokens "$NEW_TOKENS" --steps "$STEPS" --warmup "$WARMUP" \
  --backend "$BACKEND" --data "$DATA" --save "$TMP/model" > "$TMP/rlvr.json"
for mode in $MODES; do
  for ex in $EXPERTS; do
    if "$PY" "$HERE/torch_grpo_step.py" --model "$TMP/model" --mode "$mode" --experts "$ex" \
        --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" \
        > "$TMP/torch_${mode}_${ex}.json"; then
      :
    else
      echo "pytorch $mode experts=$ex failed" >&2
      rm -f "$TMP/torch_${mode}_${ex}.json"
    fi
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - "$TMP" "$PRESET" <<'EOF'
import glob, json, sys
tmp, preset = sys.argv[1], sys.argv[2]
r = json.load(open(f"{tmp}/rlvr.json"))
ts = [json.load(open(f)) for f in sorted(glob.glob(f"{tmp}/torch_*.json"))]
stages = ["generate", "verify", "reference", "update"]

def rates(x):
    fwd = x["batch_rows"] * x["batch_len"]
    return {"generate": f"{x['generated_tokens'] / x['generate_s']:8.0f} sampled tok/s",
            "verify": f"{x['batch_rows'] / x['verify_s']:8.0f} completions/s",
            "reference": f"{fwd / x['reference_s']:8.0f} tok/s (fwd)",
            "update": f"{fwd / x['update_s']:8.0f} tok/s (fwd+bwd)",
            "total": f"{x['generated_tokens'] / x['total_s']:8.0f} sampled tok/s"}

def table(x):
    print(f"== {x['impl']}: peak RSS {x['peak_rss_mb']:.0f} MB; batch {x['batch_rows']} x "
          f"{x['batch_len']}, {x['generated_tokens']} sampled tokens; reward {x['reward_mean']:.3f}, "
          f"loss {x['loss']:.5f}, grad norm {x['grad_norm']:.3g}")
    rt = rates(x)
    print(f"  {'stage':<10} {'seconds':>9} {'share':>6} {'CPU s':>8}  rate (wall)")
    for s in stages + ["total"]:
        v = x[f"{s}_s"]
        print(f"  {s:<10} {v:9.3f} {100 * v / x['total_s']:5.1f}% {x[f'{s}_cpu_s']:8.3f}  {rt[s]}")

table(r)
if not ts:
    print("no PyTorch result")
    sys.exit(1)
best = min(ts, key=lambda t: t["total_s"])
if best.get("same_model_max_abs_logprob_diff") is not None:
    print(f"same model check: max |logprob diff| of rlvr's sampled completion under transformers: "
          f"{best['same_model_max_abs_logprob_diff']:.2e}")
for t in ts:
    table(t)
print("per-stage ratio pytorch/rlvr (best PyTorch run, " + best["impl"] + "): " +
      ", ".join(f"{s} {best[f'{s}_s'] / r[f'{s}_s']:.2f}x" for s in stages + ["total"]))
print("per-stage CPU-time ratio pytorch/rlvr (same run): " +
      ", ".join(f"{s} {best[f'{s}_cpu_s'] / r[f'{s}_cpu_s']:.2f}x" for s in stages + ["total"]))
print(f"grpo_step_{preset}_moe: rlvr {r['total_s']:.2f} s, pytorch {best['total_s']:.2f} s, "
      f"ratio {best['total_s'] / r['total_s']:.2f}")
EOF
