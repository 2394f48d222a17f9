"""PyTorch + PEFT LoRA on the same model, rows and settings as a curate fine-tune run.

curate's run folder (`finetune.json`, and `rows.safetensors` from `save_rows = true`) gives
the settings and the exact token rows each step trained on and the validation rows; the
model is the same GGUF file, read and dequantized here with numpy (F32, F16, Q4_0, Q4_1,
Q8_0; llama.cpp's Q/K row order undone as curate's loader does) into Hugging Face's
LlamaForCausalLM (SDPA attention). LoRA: PEFT with the run's r, alpha, dropout and target
modules; AdamW (fused on CUDA) with the run's betas, eps and weight decay, the same warmup +
cosine schedule, global-norm clipping, gradient accumulation; the loss is the mean over
trained positions (labels -100 elsewhere), as curate's. Validation loss at the run's
evaluation steps, token-weighted over the validation rows.

    python finetune_peft.py --gguf model.gguf --run out/finetune --device cuda [--dtype bf16]

prints one JSON line: tokens/s (all steps, and after the first), peak memory, the first
step's loss (LoRA B starts at 0, so it is the base model's loss on batch 1: it checks the
weights, RoPE and rows against curate's `step_log[0].train_loss`) and the validation losses.
"""
import argparse
import json
import math
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

# ggml type id -> (name, block size, bytes per block)
GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 8: ("Q8_0", 32, 34)}


def read_gguf(path):
    """Metadata and tensors (f32 numpy arrays, numpy shape = reversed GGUF dims) of a GGUF v2/v3 file."""
    buf = open(path, "rb").read()
    off = 0

    def rd(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return v[0]

    def rstr():
        nonlocal off
        n = rd("Q")
        s = buf[off:off + n].decode("utf-8", "replace")
        off += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = rd("I"), rd("Q")
            return [rval(et) for _ in range(n)]
        return rd(scalar[t])

    assert buf[:4] == b"GGUF", "not a GGUF file"
    off = 4
    version, n_tensors, n_kv = rd("I"), rd("Q"), rd("Q")
    assert version in (2, 3), f"GGUF version {version}"
    meta = {}
    for _ in range(n_kv):
        k = rstr()
        meta[k] = rval(rd("I"))
    infos = []
    for _ in range(n_tensors):
        name = rstr()
        dims = [rd("Q") for _ in range(rd("I"))]
        infos.append((name, dims, rd("I"), rd("Q")))
    align = meta.get("general.alignment", 32)
    base = (off + align - 1) // align * align
    tensors = {}
    for name, dims, t, toff in infos:
        kind, block, size = GGML[t]
        n = int(np.prod(dims))
        raw = memoryview(buf)[base + toff: base + toff + n // block * size]
        if kind == "F32":
            x = np.frombuffer(raw, "<f4").copy()
        elif kind == "F16":
            x = np.frombuffer(raw, "<f2").astype(np.float32)
        elif kind == "Q8_0":
            b = np.frombuffer(raw, [("d", "<f2"), ("qs", "i1", 32)])
            x = (b["qs"].astype(np.float32) * b["d"].astype(np.float32)[:, None]).reshape(-1)
        elif kind == "Q4_0":
            b = np.frombuffer(raw, [("d", "<f2"), ("qs", "u1", 16)])
            d = b["d"].astype(np.float32)[:, None]
            lo = ((b["qs"] & 0xF).astype(np.int8) - 8).astype(np.float32)
            hi = ((b["qs"] >> 4).astype(np.int8) - 8).astype(np.float32)
            x = np.concatenate([lo * d, hi * d], axis=1).reshape(-1)
        else:  # Q4_1: x = q * d + m, low nibbles are the block's first 16 values
            b = np.frombuffer(raw, [("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)])
            d, m = b["d"].astype(np.float32)[:, None], b["m"].astype(np.float32)[:, None]
            lo, hi = (b["qs"] & 0xF).astype(np.float32), (b["qs"] >> 4).astype(np.float32)
            x = np.concatenate([lo * d + m, hi * d + m], axis=1).reshape(-1)
        tensors[name] = x.reshape(list(reversed(dims)))
    return meta, tensors


def hf_state_dict(meta, tensors):
    """HF Llama names; llama.cpp's interleaved Q/K rows put back into rotate-half order."""
    heads, kv_heads = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]

    def unpermute(w, n_head):
        return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    out = {}
    for name, w in tensors.items():
        if name == "token_embd.weight":
            out["model.embed_tokens.weight"] = w
        elif name == "output_norm.weight":
            out["model.norm.weight"] = w
        elif name == "output.weight":
            out["lm_head.weight"] = w
        else:
            _, i, kind, _ = name.split(".")
            if kind == "attn_q":
                w = unpermute(w, heads)
            elif kind == "attn_k":
                w = unpermute(w, kv_heads)
            out[f"model.layers.{i}.{names[kind]}.weight"] = w
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--run", required=True, help="curate's fine-tune output folder (finetune.json, rows.safetensors)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="the frozen base weights")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    run = json.load(open(f"{args.run}/finetune.json"))
    c, tc, ms = run["model"]["config"], run["train_config"], run["model"]["method_settings"]
    assert ms["method"] == "lora", "finetune_peft.py runs LoRA only"
    assert not c["attention_bias"], "Llama-architecture models only"
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.manual_seed(tc["seed"])
    t0 = time.perf_counter()
    meta, tensors = read_gguf(args.gguf)
    sd = hf_state_dict(meta, tensors)
    load_seconds = time.perf_counter() - t0
    config = LlamaConfig(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c["num_key_value_heads"], rms_norm_eps=c["rms_norm_eps"], rope_theta=c["rope_theta"],
        max_position_embeddings=c["max_position_embeddings"], tie_word_embeddings=c["tie_word_embeddings"],
        attention_bias=False, bos_token_id=c["bos_token_id"], eos_token_id=c["eos_token_id"],
    )
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    if c["tie_word_embeddings"]:
        model.tie_weights()
    hd = c["hidden_size"] // c["num_attention_heads"]
    want = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rope = model.model.rotary_emb
    got = rope.inv_freq.double()
    assert torch.allclose(got, want, rtol=1e-5), "RoPE frequencies differ from the run's rope_theta"
    # RoPE frequencies stay f32 in a bf16 model (as from_pretrained(dtype=bfloat16) leaves them).
    rope_buffers = {n: b.detach().clone() for n, b in rope.named_buffers(recurse=False)}
    model = model.to(device=dev, dtype=dtype)
    for n, b in rope_buffers.items():
        setattr(rope, n, b.to(dev))
    model.config.use_cache = False
    targets = sorted({t.rsplit(".", 1)[-1] for t in ms["target_modules"]}) if "all" not in ms["target_modules"] else \
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=ms["r"], lora_alpha=ms["alpha"], lora_dropout=ms["dropout"],
                                             target_modules=targets, bias="none", task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=tc["lr"], betas=(tc["beta1"], tc["beta2"]), eps=tc["adam_eps"],
                            weight_decay=tc["weight_decay"], fused=cuda)

    def lr_at(step, total):
        if step < tc["warmup_steps"]:
            return tc["lr"] * (step + 1) / tc["warmup_steps"]
        span = max(total - tc["warmup_steps"], 1)
        progress = min((step - tc["warmup_steps"]) / span, 1.0)
        low = tc["lr"] * tc["min_lr_ratio"]
        return low + (tc["lr"] - low) * 0.5 * (1 + math.cos(math.pi * progress))

    rows = load_file(f"{args.run}/rows.safetensors")

    def labelled(name):
        x = torch.from_numpy(rows[f"{name}_inputs"].astype(np.int64)).to(dev)
        y = torch.from_numpy(rows[f"{name}_targets"].astype(np.int64)).to(dev)
        m = torch.from_numpy(rows[f"{name}_mask"]).to(dev)
        return x, torch.where(m > 0, y, torch.full_like(y, -100)), m

    train_x, train_y, _ = labelled("train")
    val_x, val_y, val_m = labelled("val")
    report = run["report"]
    steps = report["steps"]
    batch, accum = tc["batch_size"], tc["grad_accum"]
    assert train_x.shape[0] == steps * batch * accum, "rows.safetensors does not match finetune.json"
    eval_steps = {e["step"] for e in report["evals"]}

    def loss_of(x, y):
        logits = model(input_ids=x).logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)

    def evaluate():
        model.eval()
        total, count = torch.zeros((), device=dev, dtype=torch.float64), 0.0
        with torch.no_grad():
            for i in range(0, val_x.shape[0], batch):
                n = float(val_m[i:i + batch].sum())
                if n == 0:  # no trained position: the mean would be 0/0
                    continue
                total += loss_of(val_x[i:i + batch], val_y[i:i + batch]).double() * n
                count += n
        model.train()
        return float(total) / count

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model.train()
    losses, evals, other, first = [], [], 0.0, None
    sync()
    start = time.perf_counter()
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s, steps)
        step_loss = torch.zeros((), device=dev)
        for a in range(accum):
            i = (s * accum + a) * batch
            loss = loss_of(train_x[i:i + batch], train_y[i:i + batch])
            (loss / accum).backward()
            step_loss += loss.detach() / accum
        torch.nn.utils.clip_grad_norm_(params, tc["max_grad_norm"]) if tc["max_grad_norm"] > 0 else None
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        if s == 0:
            sync()
            first = time.perf_counter() - start
        if s + 1 in eval_steps:
            sync()
            t = time.perf_counter()
            evals.append({"step": s + 1, "val_loss": round(evaluate(), 6)})
            other += time.perf_counter() - t
    sync()
    seconds = time.perf_counter() - start - other
    tokens = steps * batch * accum * train_x.shape[1]
    step_tokens = batch * accum * train_x.shape[1]
    out = {
        "engine": f"pytorch {torch.__version__} + peft", "device": str(dev) if not cuda else torch.cuda.get_device_name(dev),
        "dtype": args.dtype, "steps": steps, "tokens": tokens, "train_seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 1),
        "steady_tokens_per_second": round((tokens - step_tokens) / max(seconds - first, 1e-9), 1) if steps > 1 else None,
        "trainable_parameters": trainable, "gguf_read_seconds": round(load_seconds, 2),
        "first_loss": round(float(losses[0]), 6), "last_loss": round(float(losses[-1]), 6),
        "evals": evals, "final_val_loss": evals[-1]["val_loss"] if evals else None,
    }
    if cuda:
        out["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        out["peak_reserved_mib"] = round(torch.cuda.max_memory_reserved(dev) / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
