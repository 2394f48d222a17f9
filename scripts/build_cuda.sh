#!/usr/bin/env bash
# Build curate with `--features cuda` on a machine with no GPU and no CUDA install: nvcc, the
# headers and the CUDA libraries come from PyPI (NVIDIA's wheels, pinned to CUDA 13.0 so the
# PTX that candle-kernels embeds is one an R580 driver, CUDA 13.0, can JIT), and the driver
# library, which only an NVIDIA driver ships, is replaced at link time by a generated stub.
#
#   scripts/build_cuda.sh [BIN_OUT]     (default: target-cuda/release/curate)
#
# Environment:
#   CUDA_VENV         the Python venv the wheels go into (default .cuda-venv, gitignored)
#   CUDA_COMPUTE_CAP  the GPU's compute capability (default 90: H100/H200); set so that
#                     candle-kernels' build does not ask nvidia-smi
#   CARGO_TARGET_DIR  default target-cuda (apart from the CPU build's target/)
#
# The binary links dynamically (candle's choice, cudarc `dynamic-linking`) against
# libcuda.so.1, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13 and
# libcudart.so.13: at run time it needs the NVIDIA driver and those libraries on
# LD_LIBRARY_PATH (PyTorch's cu13 wheels install them; scripts/gpu_check.sh finds them).
# On a machine without a driver it starts only with the stub on LD_LIBRARY_PATH
# ($CUDA_VENV/.../nvidia/cu13/lib/stubs), and then trains on `device = "cpu"` only.
#
# Versions: nvcc, crt, nvvm 13.0.88; runtime 13.0.96; cccl 13.0.85; nvrtc 13.0.88;
# cuBLAS 13.0.0.19; cuRAND 10.4.0.35 (the oldest 13.x builds: every symbol the binary
# takes exists in any 13.x library it meets at run time).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CUDA_VENV:-$root/.cuda-venv}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target-cuda}"
out="${1:-$CARGO_TARGET_DIR/release/curate}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# nvidia-nvvm is pinned too: left free, pip takes the newest cicc, whose PTX (ISA 9.5)
# neither nvcc 13.0's ptxas nor an R580 driver reads.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-cublas==13.0.0.19 nvidia-curand==10.4.0.35
cuda="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"
"$cuda/bin/nvcc" --version | grep -q "release 13.0" || { echo "expected nvcc 13.0 in $cuda" >&2; exit 1; }

# The wheels ship versioned sonames only; the linker looks for lib<name>.so.
for l in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
    ln -sf "lib$l" "$cuda/lib/lib${l%.so.*}.so"
done
# libcuda stub: every driver entry point cudarc declares, each returning
# CUDA_ERROR_NO_DEVICE (100), under the real library's soname.
cudarc="$(cd "$root" && cargo metadata --format-version 1 --features cuda 2>/dev/null |
    "$venv/bin/python" -c 'import json, sys, os
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "cudarc"))')"
mkdir -p "$cuda/lib/stubs"
grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" | awk '{print $4}' | sort -u |
    awk '{print "int " $1 "(void) { return 100; }"}' >"$cuda/lib/stubs/libcuda_stub.c"
gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$cuda/lib/stubs/libcuda_stub.c"
ln -sf libcuda.so "$cuda/lib/stubs/libcuda.so.1"

export CUDA_ROOT="$cuda" CUDA_HOME="$cuda" NVCC="$cuda/bin/nvcc"
export PATH="$cuda/bin:$PATH"
# The linker resolves libcublas.so.13's own NEEDED libcublasLt.so.13 through this.
export LD_LIBRARY_PATH="$cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
(cd "$root" && cargo build --release --features cuda --bin curate)
built="$CARGO_TARGET_DIR/release/curate"
if [ "$out" != "$built" ]; then
    mkdir -p "$(dirname "$out")"
    cp "$built" "$out"
    strip "$out"
fi
ls -l "$out"
echo "CUDA libraries for running it here (device = \"cpu\" only): LD_LIBRARY_PATH=$cuda/lib:$cuda/lib/stubs"
