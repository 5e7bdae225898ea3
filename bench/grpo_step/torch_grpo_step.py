#!/usr/bin/env python3
"""PyTorch side of the GRPO-step benchmark (bench/grpo_step/run.sh).

Loads the model that bench_grpo_step saved (the same weights, in the HF layout) with
transformers, reads the step's inputs from grpo_step.json (the same prompt token ids, gold
answers and hyper-parameters), and times the same GRPO step in PyTorch eager, by stage:
  generate   prefill each prompt once (left-padded batch of P), repeat its KV cache G times
             (DynamicCache.batch_repeat_interleave: the prompt prefix is shared as in rlvr), then a
             batched sampling loop of max_new_tokens steps at temperature 1 with past_key_values,
             recording each sampled token's logprob. EOS is ignored (as on the rlvr side), so
             every completion is exactly max_new_tokens long.
  verify     decode with the same tokenizer.json, last \\boxed{} vs the gold answer, GRPO
             advantages (group mean / (sample std + eps)), the right-padded training batch.
  reference  a frozen copy of the initial model: token logprobs, no grad.
  update     forward, clipped GRPO loss (token_mean) + kl_coef * k3 KL + aux_loss_coef * MoE
             load-balancing loss, backward, clip_grad_norm_, torch.optim.AdamW (decay on matrices
             only, as rlvr).
Ids >= valid_vocab (vocabulary padding) are excluded from every softmax, as rlvr masks them.
Run once per mode (fp32, or bf16 autocast for every model call) in a fresh process so that each
peak RSS is its own. Prints one JSON line on stdout; progress on stderr.
"""

import argparse
import copy
import json
import os
import re
import resource
import sys
import time

import torch
import transformers
from tokenizers import Tokenizer


def last_boxed(text):
    """Content of the last \\boxed{...} (balanced braces), or None."""
    i = text.rfind("\\boxed{")
    if i < 0:
        return None
    j, depth = i + len("\\boxed{"), 1
    start = j
    while j < len(text):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[start:j]
        j += 1
    return None


def math_reward(text, gold):
    got = last_boxed(text)
    if got is None:
        return 0.0
    norm = lambda s: re.sub(r"[\s,$]", "", s)
    got, gold = norm(got), norm(gold)
    try:
        return 1.0 if abs(float(got) - float(gold)) <= 1e-6 * max(1.0, abs(float(gold))) else 0.0
    except ValueError:
        return 1.0 if got == gold else 0.0


STAGES = ["generate", "verify", "reference", "update", "total"]


class GrpoStep:
    def __init__(self, model_dir, mode, experts):
        self.cfg = json.load(open(os.path.join(model_dir, "grpo_step.json")))
        self.bf16 = mode == "bf16"
        self.policy = transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32, attn_implementation="sdpa",
            experts_implementation=experts)
        self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        c = self.cfg
        decay = [p for p in self.policy.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.policy.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c["weight_decay"]},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=c["lr"], betas=(0.9, 0.999), eps=1e-8)
        self.valid = c["valid_vocab"]
        self.pad = self.policy.config.pad_token_id or 0
        self.prompts = c["prompts"]
        self.G = c["group"]
        self.N = c["max_new_tokens"]

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    @torch.inference_mode()
    def check(self, check_path):
        """Max |logprob difference| of rlvr's first sampled completion under this model (fp32)."""
        ch = json.load(open(check_path))
        prompt = self.prompts[ch["prompt_index"]]
        ids = torch.tensor([prompt + ch["tokens"]])
        logits = self.policy(input_ids=ids, use_cache=False).logits[0, :, : self.valid]
        lp = torch.log_softmax(logits.float(), -1)
        p = len(prompt)
        got = lp[p - 1: p - 1 + len(ch["tokens"])].gather(
            1, torch.tensor(ch["tokens"])[:, None])[:, 0]
        return float((got - torch.tensor(ch["logprobs"])).abs().max())

    @torch.inference_mode()
    def generate(self, gen):
        P, G, N = len(self.prompts), self.G, self.N
        L = max(len(p) for p in self.prompts)
        ids = torch.full((P, L), self.pad, dtype=torch.int64)
        mask = torch.zeros((P, L), dtype=torch.int64)
        for i, p in enumerate(self.prompts):
            ids[i, L - len(p):] = torch.tensor(p)
            mask[i, L - len(p):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        self.policy.eval()
        with self.autocast():
            out = self.policy(input_ids=ids, attention_mask=mask, position_ids=pos,
                              use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            cache.batch_repeat_interleave(G)
            logits = out.logits[:, -1].repeat_interleave(G, 0)
            mask = mask.repeat_interleave(G, 0)
            nxt = (pos[:, -1:] + 1).repeat_interleave(G, 0)
            toks = torch.empty((P * G, N), dtype=torch.int64)
            lps = torch.empty((P * G, N), dtype=torch.float32)
            ones = torch.ones((P * G, 1), dtype=torch.int64)
            for t in range(N):
                lp_all = torch.log_softmax(logits[:, : self.valid].float(), -1)
                tok = torch.multinomial(lp_all.exp(), 1, generator=gen)
                toks[:, t] = tok[:, 0]
                lps[:, t] = lp_all.gather(1, tok)[:, 0]
                if t == N - 1:
                    break  # the last token is never fed back (as in rlvr)
                mask = torch.cat([mask, ones], 1)
                out = self.policy(input_ids=tok, attention_mask=mask, position_ids=nxt,
                                  past_key_values=cache, use_cache=True)
                nxt = nxt + 1
                logits = out.logits[:, -1]
        return toks, lps

    def verify(self, toks):
        P, G, N = len(self.prompts), self.G, self.N
        texts = self.tok.decode_batch(toks.tolist(), skip_special_tokens=True)
        answers = self.cfg["answers"]
        r = torch.tensor([math_reward(t, answers[i // G]) for i, t in enumerate(texts)],
                         dtype=torch.float64).view(P, G)
        adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + self.cfg["adv_eps"]))
        # Right-padded rows prompt + completion, as rlvr's TokenBatch: position t predicts t+1.
        T = max(len(p) for p in self.prompts) + N
        ids = torch.zeros((P * G, T), dtype=torch.int64)
        tgt = torch.zeros((P * G, T), dtype=torch.int64)
        mask = torch.zeros((P * G, T), dtype=torch.float32)
        for b in range(P * G):
            p = self.prompts[b // G]
            n = len(p)
            ids[b, :n] = torch.tensor(p)
            ids[b, n: n + N] = toks[b]
            tgt[b, n - 1: n - 1 + N] = toks[b]
            mask[b, n - 1: n - 1 + N] = 1
        return ids, tgt, mask, adv.view(-1).float(), float(r.mean())

    @torch.no_grad()
    def reference(self, ids, tgt):
        with self.autocast():
            logits = self.ref(input_ids=ids, use_cache=False).logits
            lp = torch.log_softmax(logits[..., : self.valid].float(), -1)
            return lp.gather(-1, tgt[..., None])[..., 0]

    def update(self, ids, tgt, mask, adv, ref_lp):
        c = self.cfg
        self.policy.train()
        with self.autocast():
            out = self.policy(input_ids=ids, use_cache=False, output_router_logits=True)
            lp_all = torch.log_softmax(out.logits[..., : self.valid].float(), -1)
            logp = lp_all.gather(-1, tgt[..., None])[..., 0]
            with torch.no_grad():  # logged only, as rlvr's entropy
                entropy = float(-((lp_all.exp() * lp_all).sum(-1) * mask).sum() / mask.sum())
            old = logp.detach()  # one optimizer step per batch: on-policy, ratio 1
            ratio = torch.exp(logp - old)
            a = adv[:, None]
            eps = c["clip_eps"]
            pg = -torch.min(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a)
            d = ref_lp - logp
            kl = torch.exp(d) - d - 1  # k3
            ntok = mask.sum()
            policy_loss = ((pg + c["kl_coef"] * kl) * mask).sum() / ntok
            loss = policy_loss
            if out.aux_loss is not None:
                loss = loss + c["aux_loss_coef"] * out.aux_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c["grad_clip"])
        self.opt.step()
        # The policy loss without the aux term: what rlvr's GrpoUpdateStats::loss reports.
        return (policy_loss.item(), float((kl.detach() * mask).sum() / ntok), float(gnorm),
                entropy)

    def step(self, step_idx):
        gen = torch.Generator().manual_seed(self.cfg["seed"] * 1000003 + step_idx)
        # Wall and process CPU seconds (all threads) at each stage boundary.
        t = [(time.perf_counter(), time.process_time())]
        toks, _ = self.generate(gen)
        t.append((time.perf_counter(), time.process_time()))
        ids, tgt, mask, adv, reward = self.verify(toks)
        t.append((time.perf_counter(), time.process_time()))
        ref_lp = self.reference(ids, tgt)
        t.append((time.perf_counter(), time.process_time()))
        loss, kl, gnorm, entropy = self.update(ids, tgt, mask, adv, ref_lp)
        t.append((time.perf_counter(), time.process_time()))
        out = {"batch_rows": ids.shape[0], "batch_len": ids.shape[1],
               "target_tokens": int(mask.sum()), "generated_tokens": toks.numel(),
               "reward_mean": reward, "loss": loss, "kl": kl, "grad_norm": gnorm,
               "entropy": entropy}
        for i, name in enumerate(STAGES[:4]):
            out[f"{name}_s"] = t[i + 1][0] - t[i][0]
            out[f"{name}_cpu_s"] = t[i + 1][1] - t[i][1]
        out["total_s"] = t[4][0] - t[0][0]
        out["total_cpu_s"] = t[4][1] - t[0][1]
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="directory written by bench_grpo_step --save")
    ap.add_argument("--mode", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--experts", default="eager", help="transformers experts_implementation")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    s = GrpoStep(a.model, a.mode, a.experts)
    check = None
    check_path = os.path.join(a.model, "check.json")
    if os.path.exists(check_path):
        check = s.check(check_path)
        print(f"pytorch same-model check: max |logprob diff| on rlvr's completion {check:.2e}",
              file=sys.stderr)
    keys = [f"{n}_s" for n in STAGES] + [f"{n}_cpu_s" for n in STAGES]
    mean = {k: 0.0 for k in keys}
    for i in range(a.warmup + a.steps):
        r = s.step(i)
        print(f"pytorch {a.mode} experts={a.experts} step {i}"
              f"{' (warm-up)' if i < a.warmup else ''}: generate {r['generate_s']:.2f}s, "
              f"verify {r['verify_s']:.3f}s, reference {r['reference_s']:.2f}s, update "
              f"{r['update_s']:.2f}s, total {r['total_s']:.2f}s (CPU {r['total_cpu_s']:.2f}s); "
              f"batch {r['batch_rows']}x{r['batch_len']}, reward {r['reward_mean']:.3f}, loss "
              f"{r['loss']:.3g}, kl {r['kl']:.3g}, grad norm {r['grad_norm']:.3g}",
              file=sys.stderr)
        if i >= a.warmup:
            for k in keys:
                mean[k] += r[k] / a.steps
    out = dict(r)
    out.update(mean)
    out.update({
        "impl": f"pytorch {torch.__version__} eager {a.mode} experts={a.experts}",
        "prompts": len(s.prompts), "group": s.G, "max_new_tokens": s.N,
        "prompt_tokens": sum(len(p) for p in s.prompts), "steps": a.steps,
        "same_model_max_abs_logprob_diff": check,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
