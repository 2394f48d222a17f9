"""PyTorch (CPU, eager) training speed of the model curate's `finetune` trains by default.

The same architecture as src/finetune/model.rs (Llama-style: RMSNorm, rotate-half RoPE,
grouped-query attention, SwiGLU, tied embeddings), the same shapes, batch, sequence
length and optimizer (AdamW, betas 0.9/0.95, weight decay 0.01 on matrices, global-norm
clipping at 1.0). Idiomatic fast PyTorch: fused scaled_dot_product_attention, F.rms_norm,
fused cross-entropy. Token ids are random: only the speed is measured.

    python finetune_torch.py --threads 2 --steps 30 --config finetune.json
    python finetune_torch.py --device cuda --steps 200 --config finetune.json
prints one JSON line with tokens/s (on CUDA: fused AdamW, and the peak memory).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d, heads, kv_heads, ffn, eps):
        super().__init__()
        self.heads, self.kv_heads, self.hd, self.eps = heads, kv_heads, d // heads, eps
        self.input_layernorm = nn.Parameter(torch.ones(d))
        self.post_attention_layernorm = nn.Parameter(torch.ones(d))
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.gate_proj = nn.Linear(d, ffn, bias=False)
        self.up_proj = nn.Linear(d, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        h = F.rms_norm(x, (d,), self.input_layernorm, self.eps)
        q = self.q_proj(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, t, d))
        h = F.rms_norm(x, (d,), self.post_attention_layernorm, self.eps)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.embed = nn.Embedding(c["vocab_size"], d)
        self.layers = nn.ModuleList(
            Block(d, c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"], c["rms_norm_eps"])
            for _ in range(c["num_hidden_layers"])
        )
        self.norm = nn.Parameter(torch.ones(d))
        self.eps, self.theta, self.hd = c["rms_norm_eps"], c["rope_theta"], d // c["num_attention_heads"]
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids):
        t = ids.shape[1]
        inv = self.theta ** (-torch.arange(0, self.hd, 2, dtype=torch.float32, device=ids.device) / self.hd)
        ang = torch.arange(t, dtype=torch.float32, device=ids.device)[:, None] * inv[None, :]
        cos, sin = ang.cos(), ang.sin()
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        x = F.rms_norm(x, (x.shape[-1],), self.norm, self.eps)
        return x @ self.embed.weight.t()  # tied head


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="curate's finetune.json (model config and train settings)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.manual_seed(1)
    run = json.load(open(args.config))
    c, tc = run["model"]["config"], run["train_config"]
    batch, seq = tc["batch_size"] * tc["grad_accum"], tc["seq_len"]
    model = Model(c).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc["lr"], betas=(tc["beta1"], tc["beta2"]), eps=tc["adam_eps"], fused=cuda,
    )
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, c["vocab_size"], (args.steps, batch, seq + 1), generator=gen).to(dev)
    losses = []
    first = None
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for s in range(args.steps):
        x, y = ids[s, :, :-1], ids[s, :, 1:]
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc["max_grad_norm"])
        opt.step()
        losses.append(loss.detach())
        if s == 0:
            if cuda:
                torch.cuda.synchronize()
            first = time.perf_counter() - start
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    losses = [float(x) for x in losses]
    params = sum(p.numel() for p in model.parameters())
    tokens = args.steps * batch * seq
    print(json.dumps({
        "engine": f"pytorch {torch.__version__}", "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "threads": args.threads or torch.get_num_threads(), "steps": args.steps,
        "steady_tokens_per_second": round((tokens - batch * seq) / max(seconds - first, 1e-9), 1) if args.steps > 1 else None,
        "peak_allocated_mib": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if cuda else None,
        "parameters": params, "tokens": args.steps * batch * seq, "seconds": round(seconds, 3),
        "tokens_per_second": round(args.steps * batch * seq / seconds, 1),
        "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
    }))


if __name__ == "__main__":
    main()
