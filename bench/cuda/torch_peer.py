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
                         [--prompt 128] [--new 128] [--compile]
--device cpu with --model tiny-dense,tiny-moe checks the code path on a machine without a GPU.
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
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"case": "error", "error": "torch sees no CUDA device"}), flush=True)
        return 2
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(json.dumps({"case": "device", "impl": "torch", "name": name,
                      "torch": torch.__version__}), flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    for mname in args.model.split(","):
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
        del model
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
