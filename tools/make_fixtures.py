#!/usr/bin/env python3
"""Reference fixtures for the whole-model tests, made with PyTorch and transformers.

This is the only place in rlvr where torch/transformers are used; CI only reads what it writes.
Run it from a virtual environment that has them (never in CI):

    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install torch transformers safetensors numpy
    /work/venv-torch/bin/python tools/make_fixtures.py models          # writes the fixtures
    /work/venv-torch/bin/python tools/make_fixtures.py optim           # AdamW reference
    /work/venv-torch/bin/python tools/make_fixtures.py verify DIR...   # checks rlvr-written dirs

`models` writes, for each architecture, a tiny random model in the Hugging Face layout under
tests/fixtures/models/<arch>/ (config.json, model.safetensors, generation_config.json) and a
reference.safetensors next to it with:
    input_ids        [B, T] I64  random tokens
    logits           [B, T, V] F32
    logprobs         [B, T-1] F32  log p(input_ids[:, t+1] | input_ids[:, :t+1])
    entropy          [B, T-1] F32  entropy of the same next-token distributions
    aux_loss         [1] F32  (qwen3_moe only) load_balancing_loss_func over all layers
    grad.<tensor>    F32, one per tensor of model.safetensors: d(sum of logprobs)/d(tensor)
The reference is computed in float64 from the (on-disk rounded) weights, so the tolerances of
the C++ tests measure rlvr's float32 error only.

DeepseekV3ForCausalLM uses multi-head latent attention (MLA), which rlvr does not implement; the
DeepSeek-V3 MoE (sigmoid scores + e_score_correction_bias, grouped top-k, shared experts,
routed_scaling_factor, dense first layers) is covered by `dots1` (Dots1ForCausalLM), which puts
exactly that MoE on Qwen3 attention.

`optim` writes tests/fixtures/models/optim/adamw.safetensors: torch.optim.AdamW with
clip_grad_norm_ and a warmup + cosine LambdaLR over 6 steps (initial tensors, every step's
gradients, norms and resulting parameters; the hyper-parameters in the metadata).

`verify DIR...` loads each directory (a checkpoint written by rlvr, containing
rlvr_reference.safetensors with input_ids and rlvr's logits) with
AutoModelForCausalLM.from_pretrained and checks that transformers gives the same logits.
"""

import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "models")

COMMON = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=[2, 3],
    pad_token_id=0,
)


def configs():
    c = transformers
    return {
        "qwen3_moe": c.Qwen3MoeConfig(
            **COMMON, num_experts=6, num_experts_per_tok=2, moe_intermediate_size=16,
            norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False),
        "qwen3_moe_nonorm": c.Qwen3MoeConfig(
            **COMMON, num_experts=4, num_experts_per_tok=3, moe_intermediate_size=16,
            norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[0],
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True),
        "dots1": c.Dots1Config(
            **COMMON, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
            n_shared_experts=1, norm_topk_prob=True, routed_scaling_factor=2.5, n_group=2,
            topk_group=1, first_k_dense_replace=1, sliding_window=None,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False),
        "qwen3": c.Qwen3Config(
            **COMMON, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True),
        "qwen2": c.Qwen2Config(
            **{k: v for k, v in COMMON.items() if k != "head_dim"},
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False),
        "llama": c.LlamaConfig(
            **{k: v for k, v in COMMON.items() if k != "head_dim"},
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
            tie_word_embeddings=False),
    }


# The llama fixture is stored in bfloat16 to test BF16 loading.
DISK_DTYPE = {"llama": torch.bfloat16}


def legacy_grads(model):
    """Gradients keyed by the on-disk (per-expert) tensor names."""
    out = {}
    for name, p in model.named_parameters():
        g = p.grad.detach().to(torch.float32)
        if name.endswith("mlp.experts.gate_up_proj"):
            prefix = name[: -len("gate_up_proj")]
            inter = g.shape[1] // 2
            for e in range(g.shape[0]):
                out[f"{prefix}{e}.gate_proj.weight"] = g[e, :inter].contiguous()
                out[f"{prefix}{e}.up_proj.weight"] = g[e, inter:].contiguous()
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("down_proj")]
            for e in range(g.shape[0]):
                out[f"{prefix}{e}.down_proj.weight"] = g[e].contiguous()
        else:
            out[name] = g.contiguous()
    return out


def make_model(arch, cfg, seed):
    torch.manual_seed(seed)
    cfg.initializer_range = 0.2  # large enough that every layer matters in float32
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        # Non-trivial norm weights and biases (they start at 1 / 0) and correction biases.
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn_like(b))
    return model


def reference(model, input_ids):
    model = model.to(torch.float64)
    model.zero_grad()
    moe = getattr(model.config, "model_type", "") == "qwen3_moe"
    out = model(input_ids=input_ids, use_cache=False, output_router_logits=moe)
    logits = out.logits
    aux = out.aux_loss.detach() if moe and out.aux_loss is not None else None
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    chosen = logp.gather(-1, input_ids[:, 1:, None])[..., 0]
    entropy = -(logp.exp() * logp).sum(-1)
    chosen.sum().backward()
    return logits.detach(), chosen.detach(), entropy.detach(), aux


def make_models():
    os.makedirs(OUT, exist_ok=True)
    for seed, (arch, cfg) in enumerate(sorted(configs().items())):
        d = os.path.join(OUT, arch)
        os.makedirs(d, exist_ok=True)
        model = make_model(arch, cfg, seed + 1)
        disk = DISK_DTYPE.get(arch, torch.float32)
        model = model.to(disk)
        model.save_pretrained(d, safe_serialization=True)
        # Reload what is on disk so the reference uses exactly the stored (rounded) weights.
        model = transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float64, attn_implementation="eager", experts_implementation="eager")
        g = torch.Generator().manual_seed(100 + seed)
        input_ids = torch.randint(0, cfg.vocab_size, (2, 9), generator=g)
        logits, chosen, entropy, aux = reference(model, input_ids)
        tensors = {
            "input_ids": input_ids.to(torch.int64).contiguous(),
            "logits": logits.to(torch.float32).contiguous(),
            "logprobs": chosen.to(torch.float32).contiguous(),
            "entropy": entropy.to(torch.float32).contiguous(),
        }
        if aux is not None:
            tensors["aux_loss"] = aux.to(torch.float32).reshape(1).contiguous()
        for k, v in legacy_grads(model).items():
            tensors["grad." + k] = v
        on_disk = load_file(os.path.join(d, "model.safetensors"))
        missing = set(on_disk) - {k[5:] for k in tensors if k.startswith("grad.")}
        missing = {m for m in missing if not m.endswith("e_score_correction_bias")}
        assert not missing, f"{arch}: no gradient for {sorted(missing)}"
        save_file(tensors, os.path.join(d, "reference.safetensors"),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__})
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{arch}: {sum(p.numel() for p in model.parameters())} parameters, "
              f"{size} bytes, logits max |x| {logits.abs().max():.3f}")


OPTIM = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, max_grad_norm=1.0,
             warmup_steps=2, total_steps=6, min_lr_ratio=0.1)


def make_optim():
    """torch.optim.AdamW + clip_grad_norm_ + warmup/cosine, 6 steps on two tensors."""
    import math
    c = OPTIM
    torch.manual_seed(7)
    params = {"a": torch.randn(5, 3), "b": torch.randn(4)}  # "b" gets no weight decay
    tensors = {"init." + k: v.clone() for k, v in params.items()}
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    opt = torch.optim.AdamW(
        [{"params": [ps["a"]], "weight_decay": c["weight_decay"]},
         {"params": [ps["b"]], "weight_decay": 0.0}],
        lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"])

    def lam(step):
        if step < c["warmup_steps"]:
            return (step + 1) / c["warmup_steps"]
        prog = min(1.0, (step - c["warmup_steps"]) / max(1, c["total_steps"] - c["warmup_steps"]))
        m = c["min_lr_ratio"]
        return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * prog))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    for step in range(c["total_steps"]):
        scale = 3.0 if step % 2 == 0 else 0.05  # clipping on even steps only
        for k, p in ps.items():
            p.grad = scale * torch.randn_like(p)
            tensors[f"grad.{step}.{k}"] = p.grad.clone()
        norm = torch.nn.utils.clip_grad_norm_(list(ps.values()), c["max_grad_norm"])
        tensors[f"norm.{step}"] = norm.reshape(1).clone()
        opt.step()
        sched.step()
        for k, p in ps.items():
            tensors[f"param.{step}.{k}"] = p.detach().clone()
    d = os.path.join(OUT, "optim")
    os.makedirs(d, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "adamw.safetensors"),
              metadata={k: repr(v) for k, v in c.items()})
    print("optim: wrote", os.path.join(d, "adamw.safetensors"))


def verify(dirs):
    ok = True
    for d in dirs:
        ref = load_file(os.path.join(d, "rlvr_reference.safetensors"))
        model = transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
        with torch.no_grad():
            logits = model(input_ids=ref["input_ids"].to(torch.int64), use_cache=False).logits
        diff = (logits - ref["logits"]).abs().max().item()
        scale = ref["logits"].abs().max().item()
        good = diff <= 1e-4 and scale > 0
        ok &= good
        print(f"{d}: {type(model).__name__} max |transformers - rlvr| = {diff:.3g} "
              f"(max |logit| {scale:.3g}) {'OK' if good else 'MISMATCH'}")
    return ok


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "models":
        make_models()
    elif len(sys.argv) >= 2 and sys.argv[1] == "optim":
        make_optim()
    elif len(sys.argv) >= 3 and sys.argv[1] == "verify":
        sys.exit(0 if verify(sys.argv[2:]) else 1)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
