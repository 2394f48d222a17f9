"""Load what `curate finetune` wrote with transformers and PEFT, as a user would, and
measure how far their logits are from curate's (run by tests/hf_interop.rs in the venv of
scripts/py_torch.sh).

    python hf_interop.py RUN_DIR

RUN_DIR is a fine-tune output folder written with `save_logits`: `logits.safetensors`
holds curate's input ids and logits. Each folder present is loaded the documented way:

- merged/: AutoModelForCausalLM.from_pretrained(merged) (and AutoTokenizer)
- adapter/ (LoRA, prefix or prompt tuning): PeftModel.from_pretrained(base, adapter), the base loaded from
  adapter_config.json's base_model_name_or_path (a GGUF file through `gguf_file=`); for a
  folder base also AutoPeftModelForCausalLM.from_pretrained(adapter) alone

Prints one JSON object: for each way, the largest absolute logit difference from curate's
(`max_abs_diff`), and for the adapter the same for the base alone (how much the adapter
changes the logits, so that a match means the adapter was applied once).
"""
import json
import os
import sys

import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def max_abs_diff(model, ids, want):
    with torch.no_grad():
        got = model(input_ids=ids).logits.float()
    # PEFT's prompt tuning returns logits for its virtual tokens too, before the ids'.
    if got.dim() == 3 and got.shape[1] > want.shape[1]:
        got = got[:, got.shape[1] - want.shape[1]:]
    assert got.shape == want.shape, f"logits shape {tuple(got.shape)}, curate's {tuple(want.shape)}"
    return float((got - want).abs().max())


def load_base(path):
    if path.lower().endswith(".gguf"):
        return AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=path)
    return AutoModelForCausalLM.from_pretrained(path)


def main():
    run = sys.argv[1]
    torch.set_num_threads(2)
    saved = load_file(os.path.join(run, "logits.safetensors"))
    ids, want = saved["input_ids"], saved["logits"]
    out = {
        "rows": ids.shape[0],
        "seq_len": ids.shape[1],
        "vocab": want.shape[2],
        "max_abs_logit": float(want.abs().max()),
    }

    merged = os.path.join(run, "merged")
    if os.path.isdir(merged):
        model = AutoModelForCausalLM.from_pretrained(merged)
        tok = AutoTokenizer.from_pretrained(merged)
        out["merged"] = {
            "max_abs_diff": max_abs_diff(model, ids, want),
            "dtype": str(model.dtype).removeprefix("torch."),
            "class": type(model).__name__,
            # transformers' PEFT integration would have attached an adapter found in the folder.
            "adapter_attached": bool(getattr(model, "_hf_peft_config_loaded", False)),
            "tokenizer_len": len(tok),
            "eos_token_id": tok.eos_token_id,
            "has_chat_template": bool(tok.chat_template),
        }
        del model

    adapter = os.path.join(run, "adapter")
    if os.path.isdir(adapter):
        config = json.load(open(os.path.join(adapter, "adapter_config.json")))
        base_path = config["base_model_name_or_path"]
        base = load_base(base_path)
        result = {"base": base_path, "base_only_max_abs_diff": max_abs_diff(base, ids, want)}
        peft = PeftModel.from_pretrained(base, adapter)
        result["max_abs_diff"] = max_abs_diff(peft, ids, want)
        result["lora_modules"] = sum(1 for n, _ in peft.named_modules() if n.endswith(".lora_A.default"))
        del peft, base
        if not base_path.lower().endswith(".gguf"):
            auto = AutoPeftModelForCausalLM.from_pretrained(adapter)
            result["auto_peft_max_abs_diff"] = max_abs_diff(auto, ids, want)
        out["adapter"] = result
    print(json.dumps(out))


if __name__ == "__main__":
    main()
