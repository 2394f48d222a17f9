#!/usr/bin/env bash
# PyTorch, transformers and PEFT for tests/hf_interop.rs (does transformers load what
# `curate finetune` writes?), in a virtual environment OUTSIDE the clone: torch is
# large, so it is installed once per machine and reused by every clone and CI run.
#
#   scripts/py_torch.sh install   # creates the venv unless it holds exactly these pins
#   scripts/py_torch.sh python    # prints its python (what the test runs)
#
# Where: $CURATE_TORCH_VENV, else ${XDG_CACHE_HOME:-$HOME/.cache}/curate/venv-torch (the
# test computes the same default). torch comes from PyTorch's CPU wheel index when it is
# reachable (~200 MB), else from PyPI (the CUDA build with its nvidia-* wheels: 4.9 GB,
# 78 s on the development VM). `gguf` lets transformers read a GGUF base model.
set -euo pipefail
venv="${CURATE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/curate/venv-torch}"
# The pins the test was checked with; changing them reinstalls.
pins="torch==2.11.* transformers==5.17.* peft==0.21.* safetensors==0.8.* gguf==0.19.* numpy==2.*"
cpu_index="https://download.pytorch.org/whl/cpu"
cmd="${1:-}"
case "$cmd" in
install)
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/curate-pins" 2>/dev/null)" = "$pins" ]; then
        exit 0
    fi
    # The pins are written last: an interrupted install is never taken for a finished one.
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    started=$(date +%s)
    python3 -m venv "$venv"
    pip=("$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir)
    torch_pin="${pins%% *}"
    if curl -s -f -o /dev/null --max-time 15 "$cpu_index/torch/"; then
        echo "py_torch.sh: torch (CPU build) from $cpu_index" >&2
        "${pip[@]}" --index-url "$cpu_index" "$torch_pin"
    else
        echo "py_torch.sh: $cpu_index is not reachable; torch from PyPI (CUDA build, ~4 GB)" >&2
        "${pip[@]}" "$torch_pin"
    fi
    # shellcheck disable=SC2086 # the pins are words
    "${pip[@]}" $pins
    echo "$pins" >"$venv/curate-pins"
    echo "py_torch.sh: installed $venv in $(($(date +%s) - started)) s ($(du -sh "$venv" | cut -f1))" >&2
    ;;
python)
    echo "$venv/bin/python"
    ;;
*)
    echo "usage: $0 install | python" >&2
    exit 2
    ;;
esac
