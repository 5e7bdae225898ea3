"""PyTorch eager peer of the rollout benchmark: the same model (read from the same HF
checkpoint directory), a preallocated contiguous KV cache, one token per sequence per step.

Prints one JSON object per measurement on stdout:
  {"case": "decode", "preset": ..., "batch": B, "tokens": n, "seconds": s}
  {"case": "prefill", ...}
  {"case": "check", "greedy_match": true/false}   (first greedy tokens vs rlvr's, when given)

Written for qwen3_moe / qwen3 / qwen2 / llama configs (softmax top-k routing, optional
norm_topk_prob, optional q/k norm, optional q/k/v biases, tied or untied LM head).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


class Model:
    def __init__(self, model_dir, dtype=torch.float32):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = cfg = json.load(f)
        w = load_file(os.path.join(model_dir, "model.safetensors"))
        self.dtype = dtype
        self.w = {k: v.to(dtype) for k, v in w.items()}
        self.C = cfg["hidden_size"]
        self.L = cfg["num_hidden_layers"]
        self.H = cfg["num_attention_heads"]
        self.Hkv = cfg["num_key_value_heads"]
        self.D = cfg.get("head_dim") or self.C // self.H
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        theta = cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.D, 2, dtype=torch.int64).float() / self.D))
        self.E = cfg.get("num_experts", 0) or 0
        self.K = cfg.get("num_experts_per_tok", 0) or 0
        self.norm_topk = cfg.get("norm_topk_prob", False)
        self.qk_norm = "layers.0.self_attn.q_norm.weight" in "".join(self.w.keys()) or \
            "model.layers.0.self_attn.q_norm.weight" in self.w
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        # Stack experts per layer for dispatch.
        self.experts = {}
        for l in range(self.L):
            p = f"model.layers.{l}.mlp."
            if p + "gate.weight" in self.w:
                g = torch.stack([self.w[f"{p}experts.{e}.gate_proj.weight"] for e in range(self.E)])
                u = torch.stack([self.w[f"{p}experts.{e}.up_proj.weight"] for e in range(self.E)])
                d = torch.stack([self.w[f"{p}experts.{e}.down_proj.weight"] for e in range(self.E)])
                self.experts[l] = (g, u, d)

    def rms(self, x, weight):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * weight

    def rope(self, x, pos):
        # x [B, T, h, D], pos [B, T]
        freqs = pos[..., None].float() * self.inv_freq  # [B, T, D/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos = emb.cos()[:, :, None, :].to(x.dtype)
        sin = emb.sin()[:, :, None, :].to(x.dtype)
        x1, x2 = x[..., : self.D // 2], x[..., self.D // 2:]
        rot = torch.cat([-x2, x1], dim=-1)
        return x * cos + rot * sin

    def mlp(self, l, x):
        p = f"model.layers.{l}.mlp."
        if l not in self.experts:
            return F.linear(F.silu(F.linear(x, self.w[p + "gate_proj.weight"])) *
                            F.linear(x, self.w[p + "up_proj.weight"]), self.w[p + "down_proj.weight"])
        N = x.shape[0]
        logits = F.linear(x, self.w[p + "gate.weight"])
        probs = logits.softmax(-1)
        topw, topi = probs.topk(self.K, dim=-1)
        if self.norm_topk:
            topw = topw / topw.sum(-1, keepdim=True)
        g, u, d = self.experts[l]
        out = torch.zeros_like(x)
        flat_e = topi.reshape(-1)
        flat_tok = torch.arange(N).repeat_interleave(self.K)
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
            h = F.silu(xe @ g[e].T) * (xe @ u[e].T)
            out.index_add_(0, tok, (h @ d[e].T) * flat_w[idx, None])
        return out

    @torch.inference_mode()
    def forward(self, ids, pos, kcache, vcache):
        """ids, pos [B, T]; caches per layer [B, Hkv, Tmax, D]; returns last logits [B, V]."""
        B, T = ids.shape
        x = self.w["model.embed_tokens.weight"][ids]  # [B, T, C]
        start = int(pos[0, 0])
        for l in range(self.L):
            p = f"model.layers.{l}."
            h = self.rms(x, self.w[p + "input_layernorm.weight"])
            q = F.linear(h, self.w[p + "self_attn.q_proj.weight"], self.w.get(p + "self_attn.q_proj.bias"))
            k = F.linear(h, self.w[p + "self_attn.k_proj.weight"], self.w.get(p + "self_attn.k_proj.bias"))
            v = F.linear(h, self.w[p + "self_attn.v_proj.weight"], self.w.get(p + "self_attn.v_proj.bias"))
            q = q.view(B, T, self.H, self.D)
            k = k.view(B, T, self.Hkv, self.D)
            v = v.view(B, T, self.Hkv, self.D)
            if p + "self_attn.q_norm.weight" in self.w:
                q = self.rms(q, self.w[p + "self_attn.q_norm.weight"])
                k = self.rms(k, self.w[p + "self_attn.k_norm.weight"])
            q, k = self.rope(q, pos), self.rope(k, pos)
            kcache[l][:, :, start:start + T] = k.transpose(1, 2)
            vcache[l][:, :, start:start + T] = v.transpose(1, 2)
            kk = kcache[l][:, :, : start + T]
            vv = vcache[l][:, :, : start + T]
            a = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, is_causal=(T > 1 and start == 0),
                                               enable_gqa=True)
            a = a.transpose(1, 2).reshape(B, T, self.H * self.D)
            x = x + F.linear(a, self.w[p + "self_attn.o_proj.weight"], self.w.get(p + "self_attn.o_proj.bias"))
            h = self.rms(x, self.w[p + "post_attention_layernorm.weight"])
            x = x + self.mlp(l, h.reshape(B * T, self.C)).view(B, T, self.C)
        last = self.rms(x[:, -1], self.w["model.norm.weight"])
        return F.linear(last, self.lm_head)

    def new_cache(self, B, Tmax, dtype=None):
        dtype = dtype or self.dtype
        k = [torch.zeros(B, self.Hkv, Tmax, self.D, dtype=dtype) for _ in range(self.L)]
        v = [torch.zeros(B, self.Hkv, Tmax, self.D, dtype=dtype) for _ in range(self.L)]
        return k, v


def decode(model, B, prompt_len, new_tokens, seed):
    g = torch.Generator().manual_seed(seed)
    V = model.lm_head.shape[0]
    ids = torch.randint(0, V, (B, prompt_len), generator=g)
    kc, vc = model.new_cache(B, prompt_len + new_tokens)
    pos = torch.arange(prompt_len).repeat(B, 1)
    c0 = time.process_time()
    logits = model.forward(ids, pos, kc, vc)
    t0 = time.perf_counter()
    for step in range(new_tokens):
        logits = logits.float()
        probs = logits.softmax(-1)
        tok = torch.multinomial(probs, 1, generator=g)
        logprob = torch.log_softmax(logits, -1).gather(1, tok)  # what GRPO records
        del logprob
        p = torch.full((B, 1), prompt_len + step, dtype=torch.int64)
        logits = model.forward(tok, p, kc, vc)
    return time.perf_counter() - t0, time.process_time() - c0


def prefill(model, prompt_len, prompts, seed):
    g = torch.Generator().manual_seed(seed)
    V = model.lm_head.shape[0]
    t0 = time.perf_counter()
    for _ in range(prompts):
        ids = torch.randint(0, V, (1, prompt_len), generator=g)
        kc, vc = model.new_cache(1, prompt_len + 1)
        model.forward(ids, torch.arange(prompt_len)[None], kc, vc)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument("--prefill-prompts", type=int, default=4)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights, activations and KV cache in this dtype")
    ap.add_argument("--check", help="JSON file with {prompt: [...], greedy: [...]} from rlvr")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = Model(args.model, getattr(torch, args.dtype))
    if args.check and args.dtype == "float32":
        with open(args.check) as f:
            ref = json.load(f)
        ids = torch.tensor([ref["prompt"]])
        kc, vc = model.new_cache(1, len(ref["prompt"]) + len(ref["greedy"]))
        logits = model.forward(ids, torch.arange(ids.shape[1])[None], kc, vc)
        got = []
        for step in range(len(ref["greedy"])):
            tok = int(logits.argmax(-1))
            got.append(tok)
            p = torch.tensor([[ids.shape[1] + step]])
            logits = model.forward(torch.tensor([[tok]]), p, kc, vc)
        print(json.dumps({"case": "check", "greedy_match": got == ref["greedy"], "torch": got,
                          "rlvr": ref["greedy"]}), flush=True)
    decode(model, 2, 8, 4, 1)  # warm-up
    for B in [int(b) for b in args.batches.split(",")]:
        s, cpu = decode(model, B, args.prompt_len, args.new_tokens, 1)
        print(json.dumps({"case": "decode", "preset": args.preset, "batch": B, "dtype": args.dtype,
                          "tokens": B * args.new_tokens, "seconds": s,
                          "cpu_seconds_with_prefill": cpu}), flush=True)
    s = prefill(model, args.prefill_len, args.prefill_prompts, 2)
    print(json.dumps({"case": "prefill", "preset": args.preset, "dtype": args.dtype,
                      "tokens": args.prefill_len * args.prefill_prompts, "seconds": s}), flush=True)


if __name__ == "__main__":
    main()
