#!/usr/bin/env python3
"""PyTorch side of the training-step benchmark (bench/train_step/run.sh).

Loads the checkpoint that the rlvr side saved (the same model), and times the same training
step on the same batch shape in PyTorch eager: forward, log-softmax of the chosen tokens, the
mean negative logprob plus router_aux_loss_coef * aux loss, backward, clip_grad_norm_(1.0),
torch.optim.AdamW. Run once per mode (fp32 or bf16 autocast) in a fresh process so each
peak RSS is its own. Prints one JSON line.
"""

import argparse
import json
import resource
import sys
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--mode", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--experts", default="eager", help="transformers experts_implementation")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        a.model, dtype=torch.float32, attn_implementation="sdpa",
        experts_implementation=a.experts)
    model.train()
    cfg = model.config
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    try:  # the batch the rlvr side trained on
        b = json.load(open(f"{a.model}/bench_batch.json"))
        ids = torch.tensor(b["ids"], dtype=torch.int64).reshape(b["batch"], b["seq"])
    except FileNotFoundError:
        g = torch.Generator().manual_seed(42)
        ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g)
    moe = hasattr(cfg, "router_aux_loss_coef") and getattr(cfg, "num_experts", None)
    times = []
    loss_v = 0.0
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.mode == "bf16"):
            out = model(input_ids=ids, use_cache=False, output_router_logits=bool(moe))
            logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
            chosen = logp.gather(-1, ids[:, 1:, None])[..., 0]
            loss = -chosen.mean()
            if moe and out.aux_loss is not None:
                loss = loss + cfg.router_aux_loss_coef * out.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = (time.perf_counter() - t0) * 1000
        loss_v = loss.item()
        print(f"pytorch {a.mode} step {step}: {dt:.1f} ms, loss {loss_v:.4f}", file=sys.stderr)
        if step >= a.warmup:
            times.append(dt)
    mean_ms = sum(times) / len(times)
    n = a.batch * a.seq
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} eager {a.mode} experts={a.experts}",
        "tokens": n, "step_ms": mean_ms, "best_step_ms": min(times),
        "tokens_per_s": n / (mean_ms / 1000), "final_loss": loss_v,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
