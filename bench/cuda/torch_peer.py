"""PyTorch peer of bench/cuda/cuda_bench: the same model shapes (random bf16 weights), the same
work (one-sequence prefills of `prompt` tokens, then greedy decode of the whole batch with a
preallocated KV cache), on the same GPU. Prints one JSON object per line:
  {"case": "device", "impl": "torch", "name": ..., "torch": version}
  {"case": "prefill", "impl": "torch_eager", "model": ..., "batch": B, "tokens_per_s": ...}
  {"case": "decode", "impl": "torch_eager" | "torch_compile", "model": ..., "batch": B,
   "tokens_per_s": ..., "step_ms": ...}
  {"case": "compile_failed", "model": ..., "error": ...}

The model is written the Hugging Face way (Qwen3 / Qwen3-MoE: q/k RMSNorm, rotate_half RoPE,
SwiGLU, softmax top-k routing with norm_topk_prob, experts run one at a time over their tokens
as transformers' eager MoE does), attention through F.scaled_dot_product_attention over the
cache prefix. torch.compile (--compile) is tried for the dense model's decode step only, with
static shapes (attention over the whole cache with a position mask) and mode="reduce-overhead"
(CUDA graphs); the MoE's data-dependent expert loop is not compiled.

    python torch_peer.py [--device cuda|cpu] [--model dense-0.5b,moe-1b] [--batches 1,64,256]
                         [--prompt 128] [--new 128] [--compile] [--mode decode,train,grpo]
                         [training / GRPO flags: see --help]
--device cpu with --model tiny-dense,tiny-moe checks the code path on a machine without a GPU.

--mode train / grpo (the peers of cuda_bench's train_bench.cc; same shapes, same formulas):
  {"case": "train", "impl": "torch_eager" | "torch_compile", "model", "batch", "seq",
   "tokens_per_s", "step_ms", "mfu", "flops_per_step", "active_nonembed_params", ...}
  {"case": "grpo", "impl": "torch_eager", "model", "seconds", "generate_s", "train_s",
   "sync_s", ...}
  {"case": "train_compile_failed", "model", "error"}
Training is mixed precision the usual PyTorch way: fp32 parameters (the master weights),
torch.optim.AdamW on them (fused on CUDA), forward under autocast(bfloat16), the loss from fp32
log-softmax of the logits, clip_grad_norm_(1.0); the model math is the decode model's (HF-style
Qwen3 / Qwen3-MoE; attention by SDPA with is_causal over k/v repeated to H heads, as HF's
repeat_kv). A step = forward + per-token logprobs + backward of the mean NLL + clip + AdamW
(lr 1e-5) + zero_grad, on fresh random ids; median of --train-steps after --train-warmup.
MFU = model FLOPs / step time / --peak-tflops, model FLOPs = 6 N B T + 6 L B T^2 H D + 6 C V B T
(N: active non-embedding parameters). torch.compile(model) (--compile) is tried for the
training forward of dense models (the MoE expert loop is data dependent); a failure is printed.
A GRPO step: --grpo-prompts prompts x --grpo-group samples, batched prefill of the prompts then
--grpo-new - 1 KV-cache decode steps with sampling at temperature 1 on the device (bf16 copy of
the weights, the decode model above); then micro-batches of --grpo-micro sequences: forward,
logprobs of the completion tokens, backward of -advantage * logprob / completion tokens (random
0/1 rewards, group-normalized, untimed), one clip + AdamW step; then the bf16 decode weights are
refreshed from the fp32 parameters (sync_s).
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

CONFIGS = {
    # Mirrors DenseConfig() / MoeConfig() of cuda_bench.cc.
    "dense-0.5b": dict(C=1024, L=28, H=16, Hkv=8, D=128, I=3072, V=32768, E=0, K=0, Ie=0,
                       theta=1e6, eps=1e-6),
    "moe-1b": dict(C=1024, L=18, H=16, Hkv=4, D=64, I=3072, V=32768, E=64, K=8, Ie=256,
                   theta=1e6, eps=1e-6),
    # For the CPU check.
    "tiny-dense": dict(C=64, L=2, H=4, Hkv=2, D=16, I=128, V=1024, E=0, K=0, Ie=0, theta=1e6,
                       eps=1e-6),
    "tiny-moe": dict(C=64, L=2, H=4, Hkv=2, D=16, I=128, V=1024, E=8, K=2, Ie=32, theta=1e6,
                     eps=1e-6),
}


class Model:
    def __init__(self, cfg, device, dtype, seed=0):
        self.__dict__.update(cfg)
        self.device, self.dtype = device, dtype
        g = torch.Generator(device="cpu").manual_seed(seed)

        def rnd(*shape):
            return ((torch.rand(*shape, generator=g) - 0.5) * 0.06).to(device=device, dtype=dtype)

        def ones(n):
            return torch.ones(n, device=device, dtype=dtype)

        C, H, Hkv, D = self.C, self.H, self.Hkv, self.D
        self.embed = rnd(self.V, C)  # tied LM head
        self.final_norm = ones(C)
        self.layers = []
        for _ in range(self.L):
            w = dict(in_norm=ones(C), post_norm=ones(C), wq=rnd(H * D, C), wk=rnd(Hkv * D, C),
                     wv=rnd(Hkv * D, C), wo=rnd(C, H * D), q_norm=ones(D), k_norm=ones(D))
            if self.E:
                w.update(router=rnd(self.E, C), gate=rnd(self.E, self.Ie, C),
                         up=rnd(self.E, self.Ie, C), down=rnd(self.E, C, self.Ie))
            else:
                w.update(gate=rnd(self.I, C), up=rnd(self.I, C), down=rnd(C, self.I))
            self.layers.append(w)
        self.inv_freq = 1.0 / (self.theta ** (torch.arange(0, D, 2, dtype=torch.float32,
                                                             device=device) / D))

    def rms(self, x, w):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * xf.to(x.dtype)

    def rope(self, x, pos):
        # x [B, T, h, D], pos [B, T]
        freqs = pos[..., None].float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        cos = emb.cos()[:, :, None, :].to(x.dtype)
        sin = emb.sin()[:, :, None, :].to(x.dtype)
        x1, x2 = x[..., : self.D // 2], x[..., self.D // 2:]
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def mlp(self, w, x):
        if not self.E:
            return F.linear(F.silu(F.linear(x, w["gate"])) * F.linear(x, w["up"]), w["down"])
        N = x.shape[0]
        probs = F.linear(x, w["router"]).float().softmax(-1)
        topw, topi = probs.topk(self.K, dim=-1)
        topw = (topw / topw.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(x)
        flat_e = topi.reshape(-1)
        flat_tok = torch.arange(N, device=x.device).repeat_interleave(self.K)
        flat_w = topw.reshape(-1)
        order = flat_e.argsort()
        counts = torch.bincount(flat_e, minlength=self.E).tolist()
        start = 0
        for e, c in enumerate(counts):
            if c == 0:
                continue
            idx = order[start:start + c]
            start += c
            tok = flat_tok[idx]
            xe = x[tok]
            h = F.silu(xe @ w["gate"][e].T) * (xe @ w["up"][e].T)
            out.index_add_(0, tok, (h @ w["down"][e].T) * flat_w[idx, None])
        return out

    def qkv(self, w, x, pos):
        B, T, _ = x.shape
        h = self.rms(x, w["in_norm"])
        q = F.linear(h, w["wq"]).view(B, T, self.H, self.D)
        k = F.linear(h, w["wk"]).view(B, T, self.Hkv, self.D)
        v = F.linear(h, w["wv"]).view(B, T, self.Hkv, self.D)
        q = self.rope(self.rms(q, w["q_norm"]), pos)
        k = self.rope(self.rms(k, w["k_norm"]), pos)
        return q, k, v

    @torch.inference_mode()
    def forward(self, ids, start, kc, vc):
        """ids [B, T] at positions start..start+T-1; caches [L] x [B, Hkv, Tmax, D].
        Returns the last position's logits [B, V] (fp32)."""
        B, T = ids.shape
        pos = torch.arange(start, start + T, device=ids.device)[None].expand(B, T)
        x = self.embed[ids]
        for l, w in enumerate(self.layers):
            q, k, v = self.qkv(w, x, pos)
            kc[l][:, :, start:start + T] = k.transpose(1, 2)
            vc[l][:, :, start:start + T] = v.transpose(1, 2)
            a = F.scaled_dot_product_attention(
                q.transpose(1, 2), kc[l][:, :, : start + T], vc[l][:, :, : start + T],
                is_causal=(T > 1 and start == 0), enable_gqa=True)
            x = x + F.linear(a.transpose(1, 2).reshape(B, T, self.H * self.D), w["wo"])
            h = self.rms(x, w["post_norm"])
            x = x + self.mlp(w, h.reshape(B * T, self.C)).view(B, T, self.C)
        return F.linear(self.rms(x[:, -1], self.final_norm), self.embed).float()

    def decode_static(self, tok, pos, kc, vc):
        """One decode step with static shapes (for torch.compile): tok [B, 1], pos [B] int64
        (all sequences share the position); attention over the whole cache with a mask."""
        B = tok.shape[0]
        Tmax = kc[0].shape[2]
        x = self.embed[tok]
        mask = (torch.arange(Tmax, device=tok.device)[None, :] <= pos[:, None])[:, None, None, :]
        for l, w in enumerate(self.layers):
            q, k, v = self.qkv(w, x, pos[:, None])
            kc[l].index_copy_(2, pos[:1], k.transpose(1, 2))
            vc[l].index_copy_(2, pos[:1], v.transpose(1, 2))
            a = F.scaled_dot_product_attention(q.transpose(1, 2), kc[l], vc[l], attn_mask=mask,
                                               enable_gqa=True)
            x = x + F.linear(a.transpose(1, 2).reshape(B, 1, self.H * self.D), w["wo"])
            h = self.rms(x, w["post_norm"])
            x = x + self.mlp(w, h.reshape(B, self.C)).view(B, 1, self.C)
        return F.linear(self.rms(x[:, -1], self.final_norm), self.embed).float()

    def new_cache(self, B, Tmax):
        shape = (B, self.Hkv, Tmax, self.D)
        kc = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in range(self.L)]
        vc = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in range(self.L)]
        return kc, vc


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def run_batch(model, name, B, prompt, new, device, step_fn=None, impl="torch_eager",
              cache_len=None):
    g = torch.Generator(device="cpu").manual_seed(B)
    ids = torch.randint(0, model.V, (B, prompt), generator=g).to(device)
    # cache_len: the compiled step's warm-up uses the timed run's cache shape (no recompile).
    kc, vc = model.new_cache(B, cache_len or (prompt + new + 1))
    # Prefill, one sequence at a time (as cuda_bench does), into rows of the batch cache.
    sync(device)
    t0 = time.perf_counter()
    last = []
    for b in range(B):
        kb = [c[b:b + 1] for c in kc]
        vb = [c[b:b + 1] for c in vc]
        last.append(model.forward(ids[b:b + 1], 0, kb, vb))
    sync(device)
    prefill_s = time.perf_counter() - t0
    if impl == "torch_eager":
        print(json.dumps({"case": "prefill", "impl": impl, "model": name, "batch": B,
                          "prompt": prompt, "tokens_per_s": B * prompt / prefill_s,
                          "seconds": prefill_s}), flush=True)
    tok = torch.cat(last).argmax(-1, keepdim=True)
    # One untimed step, then `new` timed greedy steps.
    if step_fn is None:
        logits = model.forward(tok, prompt, kc, vc)
    else:
        logits = step_fn(tok, torch.full((B,), prompt, device=device, dtype=torch.int64), kc, vc)
    tok = logits.argmax(-1, keepdim=True)
    sync(device)
    t0 = time.perf_counter()
    for step in range(new):
        p = prompt + 1 + step
        if step_fn is None:
            logits = model.forward(tok, p, kc, vc)
        else:
            logits = step_fn(tok, torch.full((B,), p, device=device, dtype=torch.int64), kc, vc)
        tok = logits.argmax(-1, keepdim=True)
    sync(device)
    s = time.perf_counter() - t0
    print(json.dumps({"case": "decode", "impl": impl, "model": name, "batch": B, "prompt": prompt,
                      "new": new, "tokens_per_s": B * new / s, "step_ms": 1e3 * s / new}),
          flush=True)
    return tok


# ---------------------------------------------------------------------------------------------
# Training step and GRPO step (--mode train / grpo): the peers of cuda_bench's train_bench.cc.


def active_nonembed_params(c):
    """N of the MFU formula: ModelConfig::NumActiveParameters() less the (tied) embedding."""
    C, H, Hkv, D = c["C"], c["H"], c["Hkv"], c["D"]
    per_layer = C * H * D + 2 * C * Hkv * D + H * D * C + 2 * D + 2 * C  # attn, q/k norm, norms
    if c["E"]:
        per_layer += c["E"] * C + c["K"] * 3 * C * c["Ie"]  # router + K experts
    else:
        per_layer += 3 * C * c["I"]
    return c["L"] * per_layer + C  # + final norm


def train_step_flops(c, B, T):
    """6 N B T + 6 L B T^2 H D (causal attention, fwd+bwd) + 6 C V B T (LM head)."""
    return (6.0 * active_nonembed_params(c) * B * T + 6.0 * c["L"] * B * T * T * c["H"] * c["D"]
            + 6.0 * c["C"] * c["V"] * B * T)


class TrainModel(torch.nn.Module):
    """The decode Model's math with fp32 parameters (same names and init), for training under
    autocast(bfloat16). forward(ids [B, T]) -> logits [B, T, V] (bf16 under autocast)."""

    def __init__(self, cfg, device, seed=0):
        super().__init__()
        self.cfg = dict(cfg)
        for k, v in cfg.items():
            setattr(self, k, v)
        g = torch.Generator(device="cpu").manual_seed(seed)

        def rnd(*shape):
            return torch.nn.Parameter(((torch.rand(*shape, generator=g) - 0.5) * 0.06).to(device))

        def ones(n):
            return torch.nn.Parameter(torch.ones(n, device=device))

        C, H, Hkv, D = self.C, self.H, self.Hkv, self.D
        self.embed = rnd(self.V, C)  # tied LM head
        self.final_norm = ones(C)
        self.layers = torch.nn.ModuleList()
        for _ in range(self.L):
            m = torch.nn.Module()
            # Same creation order as Model.__init__, so the random weights are the same.
            m.in_norm, m.post_norm = ones(C), ones(C)
            m.wq, m.wk, m.wv, m.wo = rnd(H * D, C), rnd(Hkv * D, C), rnd(Hkv * D, C), rnd(C, H * D)
            m.q_norm, m.k_norm = ones(D), ones(D)
            if self.E:
                m.router = rnd(self.E, C)
                m.gate, m.up = rnd(self.E, self.Ie, C), rnd(self.E, self.Ie, C)
                m.down = rnd(self.E, C, self.Ie)
            else:
                m.gate, m.up, m.down = rnd(self.I, C), rnd(self.I, C), rnd(C, self.I)
            self.layers.append(m)
        self.register_buffer("inv_freq", 1.0 / (self.theta ** (
            torch.arange(0, D, 2, dtype=torch.float32, device=device) / D)), persistent=False)

    def rms(self, x, w):
        xf = x.float()
        return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps))

    def rope(self, x, cos, sin):
        x1, x2 = x[..., : self.D // 2], x[..., self.D // 2:]
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def mlp(self, m, h):
        if not self.E:
            return F.linear(F.silu(F.linear(h, m.gate)) * F.linear(h, m.up), m.down)
        # HF eager MoE: softmax top-k routing, experts one at a time over their tokens.
        N = h.shape[0]
        probs = F.linear(h, m.router).float().softmax(-1)
        topw, topi = probs.topk(self.K, dim=-1)
        topw = topw / topw.sum(-1, keepdim=True)
        out = torch.zeros(N, self.C, device=h.device, dtype=torch.float32)
        flat_e = topi.reshape(-1)
        flat_tok = torch.arange(N, device=h.device).repeat_interleave(self.K)
        flat_w = topw.reshape(-1)
        order = flat_e.argsort()
        counts = torch.bincount(flat_e, minlength=self.E).tolist()
        start = 0
        for e, c in enumerate(counts):
            if c == 0:
                continue
            idx = order[start:start + c]
            start += c
            tok = flat_tok[idx]
            xe = h[tok]
            a = F.silu(F.linear(xe, m.gate[e])) * F.linear(xe, m.up[e])
            y = F.linear(a, m.down[e]) * flat_w[idx, None]
            out.index_add_(0, tok, y.float())
        return out

    def forward(self, ids):
        B, T = ids.shape
        freqs = torch.arange(T, device=ids.device, dtype=torch.float32)[:, None] * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
        x = self.embed[ids]  # fp32 residual stream
        rep = self.H // self.Hkv
        for m in self.layers:
            h = self.rms(x, m.in_norm)
            q = F.linear(h, m.wq).view(B, T, self.H, self.D)
            k = F.linear(h, m.wk).view(B, T, self.Hkv, self.D)
            v = F.linear(h, m.wv).view(B, T, self.Hkv, self.D)
            q = self.rope(self.rms(q, m.q_norm), cos, sin)
            k = self.rope(self.rms(k, m.k_norm), cos, sin)
            cd = v.dtype  # bf16 under autocast
            q, k, v = q.to(cd).transpose(1, 2), k.to(cd).transpose(1, 2), v.transpose(1, 2)
            if rep > 1:  # HF repeat_kv
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.linear(a.transpose(1, 2).reshape(B, T, self.H * self.D), m.wo)
            h = self.rms(x, m.post_norm)
            x = x + self.mlp(m, h.reshape(B * T, self.C)).view(B, T, self.C)
        return F.linear(self.rms(x, self.final_norm), self.embed)


def make_optimizer(model, device):
    kw = dict(lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    if device == "cuda":
        kw["fused"] = True
    return torch.optim.AdamW(model.parameters(), **kw)


def loss_backward(fwd, ids, targets, coef, device, amp):
    """sum(coef * nll(targets)) backward; targets -100 are skipped. Returns the loss tensor."""
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
        logits = fwd(ids)
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                          ignore_index=-100, reduction="none")
    loss = (nll * coef.reshape(-1)).sum()
    loss.backward()
    return loss


def optimizer_step(model, opt):
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def train_bench(model, opt, fwd, mname, args, impl, amp):
    B, T, V = args.train_batch, args.train_seq, model.V
    g = torch.Generator(device="cpu").manual_seed(11)
    times, losses = [], []
    for i in range(args.train_warmup + args.train_steps):
        ids = torch.randint(0, V, (B, T), generator=g).to(args.device)
        targets = torch.full((B, T), -100, dtype=torch.int64, device=args.device)
        targets[:, :-1] = ids[:, 1:]
        coef = torch.zeros(B, T, device=args.device)
        coef[:, :-1] = 1.0 / (B * (T - 1))
        sync(args.device)
        t0 = time.perf_counter()
        loss = loss_backward(fwd, ids, targets, coef, args.device, amp)
        optimizer_step(model, opt)
        sync(args.device)
        if i >= args.train_warmup:
            times.append(time.perf_counter() - t0)
            losses.append(loss.item())
    step_s = sorted(times)[len(times) // 2] if len(times) % 2 else \
        0.5 * sum(sorted(times)[len(times) // 2 - 1: len(times) // 2 + 1])
    flops = train_step_flops(model.cfg, B, T)
    print(json.dumps({"case": "train", "impl": impl, "model": mname, "batch": B, "seq": T,
                      "tokens_per_s": B * T / step_s, "step_ms": 1e3 * step_s,
                      "mfu": flops / step_s / (args.peak_tflops * 1e12),
                      "flops_per_step": flops, "active_nonembed_params":
                          active_nonembed_params(model.cfg), "peak_tflops": args.peak_tflops,
                      "loss_first": losses[0], "loss_last": losses[-1]}), flush=True)


@torch.no_grad()
def sync_weights(tm, dec):
    """Refreshes the bf16 decode weights from the fp32 parameters."""
    dec.embed.copy_(tm.embed)
    dec.final_norm.copy_(tm.final_norm)
    for m, w in zip(tm.layers, dec.layers):
        for k, t in w.items():
            t.copy_(getattr(m, k))


def grpo_step(tm, dec, opt, args, g, amp):
    P, G, Tp, new, dev = args.grpo_prompts, args.grpo_group, args.grpo_prompt, args.grpo_new, \
        args.device
    S, T = P * G, Tp + new
    prompts = torch.randint(0, tm.V, (P, Tp), generator=g).repeat_interleave(G, 0).to(dev)
    out = {}
    sync(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        kc, vc = dec.new_cache(S, T)
        logits = dec.forward(prompts, 0, kc, vc)  # batched prefill
        sync(dev)
        out["prefill_s"] = time.perf_counter() - t0
        toks, lps = [], []
        for step in range(new):
            if step > 0:
                logits = dec.forward(toks[-1], Tp + step - 1, kc, vc)
            logp = logits.log_softmax(-1)  # temperature 1
            tok = torch.multinomial(logp.exp(), 1)
            toks.append(tok)
            lps.append(logp.gather(-1, tok))
        completion = torch.cat(toks, 1)
        del kc, vc
    sync(dev)
    out["generate_s"] = time.perf_counter() - t0
    seqs = torch.cat([prompts, completion], 1).clone()  # a normal tensor (not inference mode)
    # Rewards (untimed): random 0/1, advantages normalized within each group.
    r = torch.randint(0, 2, (P, G), generator=g).float()
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + 1e-4))
    adv = adv.reshape(S).to(dev)
    sync(dev)
    t0 = time.perf_counter()
    targets = torch.full((S, T), -100, dtype=torch.int64, device=dev)
    targets[:, Tp - 1: T - 1] = seqs[:, Tp:]
    coef = torch.zeros(S, T, device=dev)
    coef[:, Tp - 1: T - 1] = adv[:, None] / (S * new)  # d loss / d nll = -dlogprob
    for first in range(0, S, args.grpo_micro):
        sl = slice(first, min(S, first + args.grpo_micro))
        loss_backward(tm, seqs[sl], targets[sl], coef[sl], dev, amp)
    optimizer_step(tm, opt)
    sync(dev)
    out["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sync_weights(tm, dec)
    sync(dev)
    out["sync_s"] = time.perf_counter() - t0
    out["seconds"] = out["generate_s"] + out["train_s"] + out["sync_s"]
    out["decode_s"] = out["generate_s"] - out["prefill_s"]
    out["tokens"] = S * T
    return out


def grpo_bench(tm, dec, opt, mname, args, amp):
    g = torch.Generator(device="cpu").manual_seed(23)
    for _ in range(args.grpo_warmup):
        grpo_step(tm, dec, opt, args, g, amp)
    runs = sorted((grpo_step(tm, dec, opt, args, g, amp) for _ in range(args.grpo_steps)),
                  key=lambda o: o["seconds"])
    o = runs[len(runs) // 2]  # the median step (upper median for an even count)
    rec = {"case": "grpo", "impl": "torch_eager", "model": mname, "prompts": args.grpo_prompts,
           "group": args.grpo_group, "prompt": args.grpo_prompt, "new": args.grpo_new,
           "micro": args.grpo_micro}
    rec.update(o)
    print(json.dumps(rec), flush=True)


def run_train_modes(cfg, mname, args, dtype, dec_model):
    """--mode train and/or grpo for one model. dec_model: the bf16 decode Model or None."""
    amp = dtype == torch.bfloat16
    tm = TrainModel(cfg, args.device)
    opt = make_optimizer(tm, args.device)
    if "train" in args.mode:
        train_bench(tm, opt, tm, mname, args, "torch_eager", amp)
        if args.compile and not tm.E:
            try:
                train_bench(tm, opt, torch.compile(tm), mname, args, "torch_compile", amp)
            except Exception as e:  # noqa: BLE001 - report any compile failure and go on
                print(json.dumps({"case": "train_compile_failed", "model": mname,
                                  "error": f"{type(e).__name__}: {e}"[:500]}), flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    if "grpo" in args.mode:
        dec = dec_model if dec_model is not None else Model(cfg, args.device, dtype)
        sync_weights(tm, dec)
        grpo_bench(tm, dec, opt, mname, args, amp)
    del tm, opt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--model", default="dense-0.5b,moe-1b")
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--compile", action="store_true",
                    help="also time a torch.compile'd decode step (dense models only)")
    ap.add_argument("--dtype", default=None, choices=["bfloat16", "float32"],
                    help="default: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--mode", default="decode,train,grpo",
                    help="comma-separated parts: decode, train, grpo")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-seq", type=int, default=1024)
    ap.add_argument("--train-warmup", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="peak dense bf16 TFLOP/s for MFU (default: H100 SXM)")
    ap.add_argument("--grpo-prompts", type=int, default=8)
    ap.add_argument("--grpo-group", type=int, default=8)
    ap.add_argument("--grpo-prompt", type=int, default=128)
    ap.add_argument("--grpo-new", type=int, default=256)
    ap.add_argument("--grpo-micro", type=int, default=16)
    ap.add_argument("--grpo-warmup", type=int, default=1)
    ap.add_argument("--grpo-steps", type=int, default=1)
    args = ap.parse_args()
    args.mode = args.mode.split(",")
    for m in args.mode:
        if m not in ("decode", "train", "grpo"):
            ap.error(f"--mode: {m!r} is not one of decode, train, grpo")
    for k in ("train_batch", "train_seq", "train_steps", "grpo_prompts", "grpo_group",
              "grpo_prompt", "grpo_new", "grpo_micro", "grpo_steps"):
        if getattr(args, k) <= 0:
            ap.error(f"--{k.replace('_', '-')} must be positive")
    if args.train_seq < 2:
        ap.error("--train-seq must be at least 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"case": "error", "error": "torch sees no CUDA device"}), flush=True)
        return 2
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(json.dumps({"case": "device", "impl": "torch", "name": name,
                      "torch": torch.__version__}), flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    for mname in args.model.split(","):
        if "decode" not in args.mode:
            run_train_modes(CONFIGS[mname], mname, args, dtype, None)
            if args.device == "cuda":
                torch.cuda.empty_cache()
            continue
        model = Model(CONFIGS[mname], args.device, dtype)
        run_batch(model, mname, 1, 8, 2, args.device, impl="warmup")  # warm-up (prints decode)
        for B in batches:
            run_batch(model, mname, B, args.prompt, args.new, args.device)
            if args.device == "cuda":
                torch.cuda.empty_cache()
        if args.compile and not model.E:
            try:
                mode = "reduce-overhead" if args.device == "cuda" else "default"
                step = torch.compile(model.decode_static, mode=mode, dynamic=False)
                for B in batches:
                    # The first calls compile (and capture graphs); untimed.
                    run_batch(model, mname, B, args.prompt, 3, args.device, step_fn=step,
                              impl="warmup", cache_len=args.prompt + args.new + 1)
                    run_batch(model, mname, B, args.prompt, args.new, args.device, step_fn=step,
                              impl="torch_compile")
            except Exception as e:  # noqa: BLE001 - report any compile failure and go on
                print(json.dumps({"case": "compile_failed", "model": mname,
                                  "error": f"{type(e).__name__}: {e}"[:500]}), flush=True)
        if "train" in args.mode or "grpo" in args.mode:
            run_train_modes(CONFIGS[mname], mname, args, dtype, model)
        del model
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
