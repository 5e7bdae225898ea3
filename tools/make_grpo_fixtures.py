#!/usr/bin/env python3
"""Makes tests/fixtures/grpo/*.json: reference GRPO losses, gradients and advantages.

The formulas are a direct PyTorch transcription of TRL's GRPOTrainer._compute_loss (token and
sequence importance sampling, clip-higher via epsilon_low/epsilon_high, per-token KL added as
beta * kl, loss_type bnpo/grpo/dr_grpo == rlvr's token_mean/seq_mean_token_mean/
seq_mean_token_sum_norm) and of veRL's advantage estimators (core_algos.py: GRPO, RLOO,
REINFORCE++, REINFORCE++-baseline) and dual-clip policy loss. The k1 and k2 KL estimators are
veRL's kl_penalty "kl" and "mse" (TRL has only k3). Gradients w.r.t. the new log-probs come from
autograd in float64.

Run: /work/venv-torch/bin/python tools/make_grpo_fixtures.py   (deterministic; CI only reads
the JSON files).
"""
import json
import os

import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "grpo")


def trl_grpo_loss(logp, old, ref, adv, mask, eps_low, eps_high, beta, kl_est, level, loss_type,
                  max_completion_length):
    """TRL GRPOTrainer._compute_loss, transcribed (delta=None, no entropy mask)."""
    completion_mask = mask
    per_token_logps = logp
    if beta != 0.0:
        ref_per_token_logps = ref
        if kl_est == "k3":
            per_token_kl = (torch.exp(ref_per_token_logps - per_token_logps) -
                            (ref_per_token_logps - per_token_logps) - 1)
        elif kl_est == "k1":  # veRL kl_penalty "kl"
            per_token_kl = per_token_logps - ref_per_token_logps
        elif kl_est == "k2":  # veRL kl_penalty "mse"
            per_token_kl = 0.5 * (per_token_logps - ref_per_token_logps).square()
    advantages = adv
    old_per_token_logps = old
    log_ratio = per_token_logps - old_per_token_logps
    if level == "token":
        log_importance_weights = log_ratio
    else:
        log_importance_weights = ((log_ratio * completion_mask).sum(-1) /
                                  completion_mask.sum(-1).clamp(min=1.0))
        log_importance_weights = log_importance_weights.unsqueeze(-1)
    coef_1 = torch.exp(log_importance_weights)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    per_token_loss1 = coef_1 * advantages.unsqueeze(1)
    per_token_loss2 = coef_2 * advantages.unsqueeze(1)
    per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl
    if loss_type == "grpo":
        loss = ((per_token_loss * completion_mask).sum(-1) /
                completion_mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token_loss * completion_mask).sum() / completion_mask.sum().clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = (per_token_loss * completion_mask).sum() / (per_token_loss.size(0) *
                                                           max_completion_length)
    # TRL's metrics.
    m = completion_mask.bool()
    coef_full = coef_1.expand_as(logp)
    adv_full = advantages.unsqueeze(1).expand_as(logp)
    is_low = (coef_full < 1 - eps_low) & (adv_full < 0)
    is_high = (coef_full > 1 + eps_high) & (adv_full > 0)
    stats = {
        "clip_frac_low": is_low[m].double().mean().item(),
        "clip_frac_high": is_high[m].double().mean().item(),
        "ratio_mean": coef_full[m].mean().item(),
        "ratio_min": coef_full[m].min().item(),
        "ratio_max": coef_full[m].max().item(),
        "approx_kl": (old - logp)[m].mean().item(),
    }
    return loss, stats


def verl_dual_clip_loss(logp, old, adv, mask, eps_low, eps_high, clip_ratio_c):
    """veRL compute_policy_loss (vanilla) with dual clip, loss_agg_mode token-mean."""
    negative_approx_kl = logp - old
    ratio = torch.exp(negative_approx_kl)
    advantages = adv.unsqueeze(1).expand_as(logp)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -advantages * clip_ratio_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    return (pg_losses * mask).sum() / mask.sum().clamp(min=1.0)


def make_batch(gen, B, T, spread):
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    lengths[1] = 1
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).double()
    logp = -torch.rand(B, T, generator=gen) * 3.0 - 0.05
    old = logp + torch.randn(B, T, generator=gen) * spread
    ref = logp + torch.randn(B, T, generator=gen) * 0.5
    G = 4
    rewards = torch.randint(0, 3, (B,), generator=gen).double()
    r = rewards.view(-1, G)
    adv = ((r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, keepdim=True) + 1e-4)).view(-1)
    # One exact-zero advantage group keeps the A == 0 tie path covered.
    return {"logp": logp, "old": old, "ref": ref, "mask": mask, "adv": adv}


def flat(t):
    return [float(x) for x in t.reshape(-1).tolist()]


def loss_cases():
    gen = torch.Generator().manual_seed(1234)
    B, T = 8, 9
    max_len = 12
    batches = {"near": make_batch(gen, B, T, 0.05), "far": make_batch(gen, B, T, 0.4)}
    cases = []
    for bname, bt in batches.items():
        for level in ("token", "sequence"):
            for loss_type in ("bnpo", "grpo", "dr_grpo"):
                for (el, eh) in ((0.2, 0.2), (0.2, 0.28)):
                    for (beta, kl) in ((0.0, "k3"), (0.04, "k1"), (0.04, "k2"), (0.04, "k3")):
                        logp = bt["logp"].clone().requires_grad_(True)
                        loss, stats = trl_grpo_loss(logp, bt["old"], bt["ref"], bt["adv"],
                                                    bt["mask"], el, eh, beta, kl, level,
                                                    loss_type, max_len)
                        loss.backward()
                        cases.append({
                            "batch": bname, "ratio_level": level,
                            "loss_agg_mode": {"bnpo": "token_mean", "grpo": "seq_mean_token_mean",
                                              "dr_grpo": "seq_mean_token_sum_norm"}[loss_type],
                            "clip_eps_low": el, "clip_eps_high": eh, "kl_coef": beta,
                            "kl_estimator": kl, "norm_length": max_len, "dual_clip_c": 0.0,
                            "loss": loss.item(), "grad": flat(logp.grad), "stats": stats,
                        })
        logp = bt["logp"].clone().requires_grad_(True)
        loss = verl_dual_clip_loss(logp, bt["old"], bt["adv"], bt["mask"], 0.2, 0.28, 1.05)
        loss.backward()
        cases.append({
            "batch": bname, "ratio_level": "token", "loss_agg_mode": "token_mean",
            "clip_eps_low": 0.2, "clip_eps_high": 0.28, "kl_coef": 0.0, "kl_estimator": "k3",
            "norm_length": max_len, "dual_clip_c": 1.05, "loss": loss.item(),
            "grad": flat(logp.grad), "stats": {},
        })
    out = {"B": B, "T": T, "batches": {}, "cases": cases}
    for name, bt in batches.items():
        out["batches"][name] = {k: flat(v) for k, v in bt.items()}
    return out


def masked_whiten(values, mask):
    """veRL verl_F.masked_whiten(values, mask, shift_mean=True)."""
    mean = (values * mask).sum() / mask.sum()
    centered = values - mean
    variance = (centered.square() * mask).sum() / mask.sum()
    mask_sum = mask.sum()
    variance = variance * (mask_sum / (mask_sum - 1))
    return (values - mean) * torch.rsqrt(variance + 1e-8)


def advantage_cases():
    gen = torch.Generator().manual_seed(99)
    G, N, T = 4, 12, 7
    rewards = torch.randint(0, 2, (N,), generator=gen).double() + \
        torch.rand(N, generator=gen).round(decimals=1)
    rewards[0:4] = 1.0  # one degenerate group
    lengths = torch.randint(1, T + 1, (N,), generator=gen)
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).double()
    eps = 1e-6
    r = rewards.view(-1, G)
    grpo = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).view(-1)
    dr = (r - r.mean(1, keepdim=True)).view(-1)
    rloo = (r * G / (G - 1) - r.mean(1, keepdim=True) * G / (G - 1)).view(-1)
    # REINFORCE++ (veRL): reward on the last response token, discounted returns, whitening.
    out = {"G": G, "N": N, "T": T, "eps": eps, "rewards": flat(rewards), "mask": flat(mask),
           "grpo": flat(grpo), "dr_grpo": flat(dr), "rloo": flat(rloo)}
    for gamma in (1.0, 0.9):
        token_level_rewards = torch.zeros(N, T)
        token_level_rewards[torch.arange(N), lengths - 1] = rewards
        returns = torch.zeros_like(token_level_rewards)
        running_return = torch.zeros(N)
        for t in reversed(range(T)):
            running_return = token_level_rewards[:, t] + gamma * running_return
            returns[:, t] = running_return
            running_return = running_return * mask[:, t]
        adv = masked_whiten(returns, mask) * mask
        out["reinforce_pp_gamma%g" % gamma] = flat(adv)
    base = (r - r.mean(1, keepdim=True)).view(-1)
    scores = base.unsqueeze(-1).tile([1, T]) * mask
    out["reinforce_pp_baseline"] = flat(masked_whiten(scores, mask) * mask)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in (("policy_loss.json", loss_cases()), ("advantages.json", advantage_cases())):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        print("wrote", os.path.join(OUT, name))


if __name__ == "__main__":
    main()
