#!/usr/bin/env bash
# Training speed of curate's default fine-tune model (`model = "tiny"`) side by side with
# PyTorch on CPU: the same architecture and shapes (read from curate's finetune.json), batch,
# sequence length and AdamW, with 1 thread and with every core.
#
#   benches/finetune_torch.sh [STEPS]      (default 40 optimizer steps of 16 x 128 tokens)
#
# Installs PyTorch (CPU use; the PyPI wheel) into benches/.torch-venv (gitignored) on first
# use; set TORCH_PYTHON to use another interpreter that has torch. Prints one line per run
# and the machine's load (`uptime`), since the numbers depend on what else runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
steps="${1:-40}"
venv="$root/benches/.torch-venv"
py="${TORCH_PYTHON:-$venv/bin/python}"
if ! "$py" -c "import torch" 2>/dev/null; then
    # PyPI's wheel (a CUDA build that runs on CPU); PyPI is the only package index used.
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch
    py="$venv/bin/python"
fi
(cd "$root" && cargo build --release --quiet)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/ft.toml" <<TOML
[input]
paths = ["$root/data-samples/sft/*.jsonl"]
[finetune]
model = "tiny"
method = "full"
progress = false
val_fraction = 0.1
[finetune.train]
seq_len = 128
batch_size = 16
max_steps = $steps
eval_every = 0
TOML
echo "load before: $(uptime)"
for threads in 1 "$(nproc)"; do
    # candle's CPU kernels take their thread count from RAYON_NUM_THREADS.
    RAYON_NUM_THREADS=$threads "$root/target/release/curate" finetune "$work/ft.toml" --output "$work/out$threads" >/dev/null
    "$py" - "$work/out$threads/finetune.json" "$threads" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rep, c = r["report"], r["model"]["config"]
print(json.dumps({"engine": "curate (candle, release)", "threads": int(sys.argv[2]), "steps": rep["steps"],
                  "parameters": r["model"]["parameters"], "tokens": rep["tokens_seen"],
                  "tokens_per_second": round(rep["tokens_per_second"], 1),
                  "first_loss": round(rep["step_log"][0]["train_loss"], 4),
                  "last_loss": round(rep["step_log"][-1]["train_loss"], 4),
                  "shape": f'd={c["hidden_size"]} L={c["num_hidden_layers"]} heads={c["num_attention_heads"]}/{c["num_key_value_heads"]} ffn={c["intermediate_size"]} vocab={c["vocab_size"]}'}))
PY
    "$py" "$root/benches/finetune_torch.py" --config "$work/out$threads/finetune.json" --threads "$threads" --steps "$steps" 2>/dev/null
done
echo "load after: $(uptime)"
