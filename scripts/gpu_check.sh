#!/usr/bin/env bash
# curate's CUDA build against PyTorch + PEFT on the same GPU: LoRA on SmolLM2-135M (the
# GGUF of scripts/fetch_models.sh) and full fine-tuning of the tiny default model, fixed
# steps, tokens/s, peak GPU memory and validation losses, beside the CPU run's losses.
#
#   scripts/gpu_check.sh local        a GPU machine with network and Rust: builds curate with
#                                     --features cuda (scripts/build_cuda.sh), fetches the model,
#                                     makes a PyTorch venv (PyPI: torch transformers peft), then
#                                     runs `ref`, `tiny` and `smol`
#   scripts/gpu_check.sh ref          the CPU reference losses (same configs, device cpu) -> cpu_ref.json
#   scripts/gpu_check.sh pack         (build machine) carry folders for a GPU machine without Rust or
#                                     network: .gpu-a/ (curate binary, scripts, samples, CPU
#                                     reference, the xz'd GGUF's first 37 MiB) and .gpu-b/ (the rest)
#   scripts/gpu_check.sh call1        (GPU machine) store .gpu-a under $STATE, environment, tiny runs
#   scripts/gpu_check.sh call2 [DIR]  (GPU machine, right after call1: bash $STATE/gpu_check.sh call2)
#                                     join the GGUF ($STATE's part and DIR's, default .gpu-b), SmolLM2 runs
#   scripts/gpu_check.sh tiny|smol    the runs alone, with CURATE, GGUF, TORCH_PYTHON set
#
# Results: $OUT/gpu_check_tiny.json, $OUT/gpu_check_smol.json (each run's finetune.json
# numbers, PyTorch's, and the differences from the CPU reference), logs in $OUT/*.log; on
# the device (call1, call2) the run folders stay in $STATE/runs and their finetune.json
# files come back in $OUT/runs_*.tar.gz.
#
# Environment: OUT (default out/gpu_check), STATE (default /tmp/gpu_check), CURATE (the
# binary), GGUF, TORCH_PYTHON (default /opt/torch/.venv/bin/python3 if present, else
# python3), CPU_REF (cpu_ref.json), STEPS_SCALE (not set: the numbers below).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
mode="${1:-}"
OUT="${OUT:-$root/out/gpu_check}"
STATE="${STATE:-/tmp/gpu_check}"
# Run folders and configs; $OUT keeps the few files that come back from a device machine.
RUNS="${RUNS:-$OUT/runs}"
mkdir -p "$OUT"

# ---- the runs: one place defines them, for the CPU reference and the GPU alike ----------
# name model method steps seq_len batch lr warmup eval_every dropout dtype
SMOL_CHECK="smol_check gguf lora 10 128 4 1e-3 2 5 0.0 f32"
SMOL_SPEED=(
    "smol_b4_f32 gguf lora 30 256 4 1e-3 5 0 0.05 f32"
    "smol_b4_bf16 gguf lora 30 256 4 1e-3 5 0 0.05 bf16"
    "smol_b16_f32 gguf lora 30 512 16 1e-3 5 0 0.05 f32"
    "smol_b16_bf16 gguf lora 30 512 16 1e-3 5 0 0.05 bf16"
)
TINY_CHECK="tiny_check tiny full 200 128 16 2e-3 20 50 0.0 f32"
PROFILE_RUNS=(
    "smol_profile_b4 gguf lora 8 256 4 1e-3 5 0 0.05 f32"
    "smol_profile_b16 gguf lora 8 512 16 1e-3 5 0 0.05 f32"
    "smol_profile_b16_bf16 gguf lora 8 512 16 1e-3 5 0 0.05 bf16"
)
# A dry run of the script's plumbing (any machine): GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1
# (2 steps of 2 x 32 tokens everywhere).
DEV="${GPU_CHECK_DEVICE:-cuda}"
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
    quick() { local a=($1); a[3]=2; a[4]=32; a[5]=2; [ "${a[8]}" != 0 ] && a[8]=1; echo "${a[*]}"; }
    SMOL_CHECK="$(quick "$SMOL_CHECK")"
    TINY_CHECK="$(quick "$TINY_CHECK")"
    for i in "${!SMOL_SPEED[@]}"; do SMOL_SPEED[$i]="$(quick "${SMOL_SPEED[$i]}")"; done
    for i in "${!PROFILE_RUNS[@]}"; do PROFILE_RUNS[$i]="$(quick "${PROFILE_RUNS[$i]}")"; done
fi

samples() { # the bundled SFT samples: $SAMPLES, the repo's, or the carry folder's copy
    if [ -n "${SAMPLES:-}" ]; then echo "$SAMPLES"
    elif [ -d "$root/data-samples/sft" ]; then echo "$root/data-samples/sft"
    else echo "$here/sft"; fi
}
benches() { # where finetune_peft.py and finetune_torch.py are: beside this script (carry folder) or benches/
    if [ -f "$here/finetune_peft.py" ]; then echo "$here"; else echo "$root/benches"; fi
}

write_cfg() { # write_cfg DIR DEVICE name model method steps seq batch lr warmup eval_every dropout dtype
    local dir="$1" device="$2" name="$3" model="$4" method="$5" steps="$6" seq="$7" batch="$8" lr="$9"
    local warmup="${10}" every="${11}" dropout="${12}" dtype="${13}"
    local m='"tiny"'
    [ "$model" = gguf ] && m="\"$GGUF\""
    mkdir -p "$dir"
    cat >"$dir/$name.toml" <<TOML
[input]
paths = ["$(samples)/*.jsonl"]
[finetune]
model = $m
method = "$method"
progress = false
val_fraction = 0.15
save_merged = false
save_rows = true
device = "$device"
dtype = "$dtype"
[finetune.lora]
r = 8
alpha = 16
dropout = $dropout
target_modules = ["q_proj", "v_proj"]
[finetune.train]
seed = 1
seq_len = $seq
batch_size = $batch
max_steps = $steps
lr = $lr
warmup_steps = $warmup
eval_every = $every
TOML
    echo "$dir/$name.toml"
}

summarize() { # summarize FINETUNE_JSON -> one JSON object of the numbers that matter
    "$PY" - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); rep = r["report"]
print(json.dumps({"device": r.get("device"), "dtype": r["model"].get("dtype"), "steps": rep["steps"],
    "tokens": rep["tokens_seen"], "tokens_per_second": round(rep["tokens_per_second"], 1),
    "steady_tokens_per_second": rep.get("steady_tokens_per_second") and round(rep["steady_tokens_per_second"], 1),
    "first_loss": round(rep["step_log"][0]["train_loss"], 6), "last_loss": round(rep["step_log"][-1]["train_loss"], 6),
    "evals": [{"step": e["step"], "val_loss": round(e["val_loss"], 6)} for e in rep["evals"]],
    "final_val_loss": rep["final_val_loss"], "trainable_parameters": r["model"]["trainable_parameters"]}))
PY
}

gpu_mem_start() { # sample the GPU's used memory every 50 ms into $1 until gpu_mem_stop
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 >"$1" 2>/dev/null &
        MEM_PID=$!
    else
        MEM_PID=""
    fi
}
gpu_mem_stop() { # gpu_mem_stop FILE BASELINE_MIB -> peak MiB above the baseline (or None)
    if [ -n "$MEM_PID" ]; then
        kill "$MEM_PID" 2>/dev/null || true
        wait "$MEM_PID" 2>/dev/null || true
        awk -v b="$2" '$1 + 0 == $1 { if (!n || $1 > m) m = $1; n = 1 } END { if (n) print m - b; else print "None" }' "$1"
    else
        echo None
    fi
}
gpu_mem_now() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1
    else
        echo 0
    fi
}

curate_run() { # curate_run DEVICE SPEC... -> prints the summary JSON with peak_gpu_mib; output in $OUT/runs/NAME
    local device="$1"; shift
    local name="$1"
    local cfg; cfg="$(write_cfg "$RUNS/cfg-$device" "$device" "$@")"
    local dir="$RUNS/$name-$device"
    local base; base="$(gpu_mem_now)"
    gpu_mem_start "$RUNS/mem.txt"
    local t0=$SECONDS
    echo "== $name on $device${CURATE_FUSED_ADAMW:+ CURATE_FUSED_ADAMW=$CURATE_FUSED_ADAMW}${CURATE_FUSED_OPS:+ CURATE_FUSED_OPS=$CURATE_FUSED_OPS}${CURATE_FINETUNE_PROFILE:+ CURATE_FINETUNE_PROFILE=$CURATE_FINETUNE_PROFILE}" >>"$OUT/curate.log"
    if ! "$CURATE" finetune "$cfg" --output "$dir" >>"$OUT/curate.log" 2>&1; then
        gpu_mem_stop "$RUNS/mem.txt" "$base" >/dev/null
        echo "curate $name on $device failed; the end of $OUT/curate.log:" >&2
        tail -20 "$OUT/curate.log" >&2
        echo '{"error": "curate failed"}'
        return 0
    fi
    local peak; peak="$(gpu_mem_stop "$RUNS/mem.txt" "$base")"
    summarize "$dir/finetune.json" | "$PY" -c "import json,sys; d=json.load(sys.stdin); d['peak_gpu_mib']=$peak; d['wall_seconds']=$((SECONDS - t0)); print(json.dumps(d))"
}

peft_run() { # peft_run NAME DTYPE -> PyTorch + PEFT on curate's run folder of NAME (cuda)
    local name="$1" dtype="$2"
    local base; base="$(gpu_mem_now)"
    gpu_mem_start "$RUNS/mem.txt"
    local line
    if ! line="$("$PY" "$(benches)/finetune_peft.py" --gguf "$GGUF" --run "$RUNS/$name-$DEV" --device "$DEV" --dtype "$dtype" 2>>"$OUT/torch.log" | tail -1)"; then
        gpu_mem_stop "$RUNS/mem.txt" "$base" >/dev/null
        echo "PyTorch $name failed; the end of $OUT/torch.log:" >&2
        tail -20 "$OUT/torch.log" >&2
        echo '{"error": "pytorch failed"}'
        return 0
    fi
    local peak; peak="$(gpu_mem_stop "$RUNS/mem.txt" "$base")"
    echo "$line" | "$PY" -c "import json,sys; d=json.load(sys.stdin); d['peak_gpu_mib']=$peak; print(json.dumps(d))"
}

unxz() { # unxz SRC|- DST: xz -d, or Python's lzma where xz is missing
    if command -v xz >/dev/null; then
        if [ "$1" = - ]; then xz -d -c >"$2"; else xz -d -c "$1" >"$2"; fi
    else
        "${PY:-python3}" -c 'import lzma, shutil, sys
src = sys.stdin.buffer if sys.argv[1] == "-" else open(sys.argv[1], "rb")
shutil.copyfileobj(lzma.open(src), open(sys.argv[2], "wb"), 1 << 20)' "$1" "$2"
    fi
}

setup_gpu_env() { # the CUDA libraries the binary links (PyTorch's cu13 wheels) and the driver's
    TORCH_PYTHON="${TORCH_PYTHON:-$( [ -x /opt/torch/.venv/bin/python3 ] && echo /opt/torch/.venv/bin/python3 || echo python3)}"
    PY="$TORCH_PYTHON"
    local nv dirs
    nv="$("$PY" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null || true)"
    dirs=""
    if [ -n "$nv" ]; then
        for lib in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
            local f; f="$(find "$nv" -name "$lib" 2>/dev/null | head -1)"
            [ -n "$f" ] && dirs="$dirs:$(dirname "$f")"
        done
    fi
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
        [ -e "$d/libcuda.so.1" ] && dirs="$dirs:$d"
    done
    dirs="$(echo "${dirs#:}" | tr ':' '\n' | awk 'NF && !seen[$0]++' | paste -sd:)"
    export LD_LIBRARY_PATH="$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

env_report() {
    echo "== $(date -u +%FT%TZ) $(uname -m), $(nproc) cores"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | head -2 || true
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "torch: $("$PY" -c 'import torch, transformers, peft; print(torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__)' 2>&1 | tail -1)"
    echo "curate: $(ldd "$CURATE" | grep -E 'cuda|cublas|curand|nvrtc|not found' | tr -s ' \t' ' ' | paste -sd';')"
}

with_ref() { # with_ref NAME JSON -> JSON plus cpu_val_loss and val_diff from $CPU_REF
    "$PY" - "$1" "$2" "${CPU_REF:-}" <<'PY'
import json, os, sys
name, d, ref = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
if ref and os.path.exists(ref) and name in json.load(open(ref)):
    r = json.load(open(ref))[name]
    d["cpu"] = {"evals": r["evals"], "final_val_loss": r["final_val_loss"], "first_loss": r["first_loss"]}
    if d.get("final_val_loss") is not None:
        d["val_diff_vs_cpu"] = d["final_val_loss"] - r["final_val_loss"]
        d["max_eval_diff_vs_cpu"] = max(abs(a["val_loss"] - b["val_loss"]) for a, b in zip(d["evals"], r["evals"]))
print(json.dumps(d))
PY
}

run_tiny() {
    local spec=($TINY_CHECK)
    local j; j="$(curate_run "$DEV" "${spec[@]}")"
    j="$(with_ref tiny_check "$j")"
    # PyTorch on the same shapes (random ids: speed only), on the GPU.
    local t
    t="$("$PY" "$(benches)/finetune_torch.py" --config "$RUNS/tiny_check-$DEV/finetune.json" --device "$DEV" --steps "$(echo $TINY_CHECK | cut -d" " -f4)" 2>>"$OUT/torch.log" | tail -1 || echo '{"error": "pytorch failed"}')"
    echo "{\"curate_cuda\": $j, \"pytorch_cuda\": $t}" | "$PY" -m json.tool >"$OUT/gpu_check_tiny.json"
    cat "$OUT/gpu_check_tiny.json"
    grep -E "warning|unavailable" "$OUT/curate.log" || true
}

run_smol() {
    local all="{" spec j t name dtype
    spec=($SMOL_CHECK)
    j="$(curate_run "$DEV" "${spec[@]}")"
    j="$(with_ref smol_check "$j")"
    t="$(peft_run smol_check f32)"
    all="$all\"smol_check\": {\"curate\": $j, \"pytorch_peft\": $t}"
    echo "smol_check: curate $j" >&2
    for s in "${SMOL_SPEED[@]}"; do
        spec=($s)
        name="${spec[0]}"
        dtype="${spec[10]}"
        j="$(curate_run "$DEV" "${spec[@]}")"
        t="$(peft_run "$name" "$dtype")"
        all="$all, \"$name\": {\"curate\": $j, \"pytorch_peft\": $t}"
        echo "$name: curate $j" >&2
        echo "$name: pytorch $t" >&2
    done
    # The check with candle-op AdamW instead of the fused kernels, the check and the largest
    # bf16 run with basic-op attention/loss/RoPE instead of the fused ones (before/after on
    # the same machine), and where a step's time goes.
    spec=($SMOL_CHECK)
    spec[0]=smol_check_ops
    j="$(CURATE_FUSED_ADAMW=0 curate_run "$DEV" "${spec[@]}")"
    all="$all, \"smol_check_ops\": {\"curate\": $j}"
    spec=($SMOL_CHECK)
    spec[0]=smol_check_basic
    j="$(CURATE_FUSED_OPS=0 curate_run "$DEV" "${spec[@]}")"
    all="$all, \"smol_check_basic\": {\"curate\": $j}"
    spec=(${SMOL_SPEED[3]})
    spec[0]=smol_b16_bf16_basic
    j="$(CURATE_FUSED_OPS=0 curate_run "$DEV" "${spec[@]}")"
    all="$all, \"smol_b16_bf16_basic\": {\"curate\": $j}"
    for s in "${PROFILE_RUNS[@]}"; do
        spec=($s)
        CURATE_FINETUNE_PROFILE=1 curate_run "$DEV" "${spec[@]}" >/dev/null
    done
    grep -E "^== smol_profile|finetune profile|unavailable" "$OUT/curate.log" || true
    echo "$all}" | "$PY" -m json.tool >"$OUT/gpu_check_smol.json"
    "$PY" - "$OUT/gpu_check_smol.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{'run':<15} {'curate tok/s':>13} {'steady':>9} {'torch tok/s':>12} {'steady':>9} {'ratio':>6} {'curate MiB':>10} {'torch MiB':>9} {'val curate':>10} {'val torch':>9}")
for k, v in d.items():
    c, t = v["curate"], v.get("pytorch_peft", {"error": "not run"})
    if k in ("smol_check_ops", "smol_check_basic"):
        what = "candle-op AdamW" if k == "smol_check_ops" else "basic-op attention/loss/RoPE"
        print(f"{k} ({what}): final val {c.get('final_val_loss')} vs fused {d['smol_check']['curate'].get('final_val_loss')}")
        continue
    if k == "smol_b16_bf16_basic":
        if "error" not in c:
            print(f"{k} (basic ops): {c['tokens_per_second']:.0f} tok/s, steady {c.get('steady_tokens_per_second')}, {c['peak_gpu_mib']} MiB")
        continue
    if "error" in c or "error" in t:
        print(k, "error", c.get("error"), t.get("error")); continue
    cs, ts = c.get("steady_tokens_per_second") or c["tokens_per_second"], t.get("steady_tokens_per_second") or t["tokens_per_second"]
    print(f"{k:<15} {c['tokens_per_second']:>13.0f} {cs:>9.0f} {t['tokens_per_second']:>12.0f} {ts:>9.0f} {cs/ts:>6.2f} {str(c['peak_gpu_mib']):>10} {str(t['peak_gpu_mib']):>9} {c['final_val_loss']:>10.4f} {t['final_val_loss']:>9.4f}")
c = d["smol_check"]["curate"]
if "val_diff_vs_cpu" in c:
    print(f"smol_check: GPU - CPU validation loss {c['val_diff_vs_cpu']:+.2e} (max over evals {c['max_eval_diff_vs_cpu']:.2e}); first step loss curate {c['first_loss']:.6f} pytorch {d['smol_check']['pytorch_peft'].get('first_loss')}")
PY
}

case "$mode" in
ref)
    # The CPU reference of the check runs (a CPU build of curate is enough).
    CURATE="${CURATE:-$root/target/release/curate}"
    GGUF="${GGUF:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
    PY="${PYTHON:-python3}"
    : >"$OUT/curate.log"
    for s in "$TINY_CHECK" "$SMOL_CHECK"; do
        spec=($s)
        d="$RUNS/${spec[0]}-cpu"
        cfg="$(write_cfg "$RUNS/cfg-cpu" cpu "${spec[@]}")"
        "$CURATE" finetune "$cfg" --output "$d" >>"$OUT/curate.log" 2>&1
        summarize "$d/finetune.json" >"$d/summary.json"
    done
    "$PY" - "$RUNS" "${CPU_REF:-$OUT/cpu_ref.json}" <<'PY'
import json, sys
runs, out = sys.argv[1], sys.argv[2]
ref = {n: json.load(open(f"{runs}/{n}-cpu/summary.json")) for n in ["tiny_check", "smol_check"]}
json.dump(ref, open(out, "w"), indent=1)
print(json.dumps(ref, indent=1))
PY
    ;;
pack)
    # Carry folders for a GPU machine without Rust or network (each under the device tool's
    # 64 MiB with the work tree, ~11 MiB): .gpu-a = the binary (xz), scripts, samples, CPU
    # reference, the first part of the xz'd GGUF; .gpu-b = the rest of it.
    bin="${CURATE:-$root/target-cuda/release/curate}"
    gguf="${GGUF:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
    ref="${CPU_REF:-$OUT/cpu_ref.json}"
    rm -rf "$root/.gpu-a" "$root/.gpu-b"
    mkdir -p "$root/.gpu-a" "$root/.gpu-b"
    cp "$bin" "$root/.gpu-a/curate"
    strip "$root/.gpu-a/curate"
    xz -T2 -6 -f "$root/.gpu-a/curate"
    cp "$here/gpu_check.sh" "$root/benches/finetune_peft.py" "$root/benches/finetune_torch.py" "$root/.gpu-a/"
    cp -r "$root/data-samples/sft" "$root/.gpu-a/sft"
    cp "$ref" "$root/.gpu-a/cpu_ref.json"
    # xz saves 8% of the Q4_1 file; 37 MiB of it go with the binary, the rest (~49 MiB) in .gpu-b.
    xz -T2 -6 -c "$gguf" | split -b 37M -d - "$root/.gpu-a/gguf.xz.part"
    mv "$root/.gpu-a/gguf.xz.part0"[1-9] "$root/.gpu-b/"
    sha256sum "$gguf" | cut -d' ' -f1 >"$root/.gpu-a/gguf.sha256"
    du -sh "$root/.gpu-a" "$root/.gpu-b"
    ;;
call1)
    # On the GPU machine: keep .gpu-a under $STATE for call2, report the environment, run the tiny model.
    src="$(cd "$here" && pwd)"
    mkdir -p "$STATE"
    cp -r "$src/." "$STATE/"
    setup_gpu_env
    unxz "$STATE/curate.xz" "$STATE/curate"
    chmod +x "$STATE/curate"
    here="$STATE"
    CURATE="$STATE/curate" CPU_REF="$STATE/cpu_ref.json"
    env_report 2>&1 | tee "$OUT/env.log"
    : >"$OUT/curate.log"
    : >"$OUT/torch.log"
    RUNS="$STATE/runs"
    mkdir -p "$RUNS"
    run_tiny
    tar -czf "$OUT/runs_tiny.tar.gz" -C "$RUNS" --exclude='*.safetensors' --exclude='tokenizer.json' "tiny_check-$DEV"
    ;;
call2)
    # The GGUF's other parts: the folder named, else .gpu-b in the working directory.
    src="$(cd "${2:-.gpu-b}" && pwd)"
    [ -x "$STATE/curate" ] || { echo "no $STATE/curate: call1 did not run on this machine (it went cold?)" >&2; exit 3; }
    here="$STATE"
    CURATE="$STATE/curate" CPU_REF="$STATE/cpu_ref.json" GGUF="$STATE/model.gguf"
    setup_gpu_env
    cat "$STATE"/gguf.xz.part* "$src"/gguf.xz.part* | unxz - "$GGUF"
    [ "$(sha256sum "$GGUF" | cut -d' ' -f1)" = "$(cat "$STATE/gguf.sha256")" ] || { echo "GGUF checksum mismatch" >&2; exit 3; }
    RUNS="$STATE/runs"
    mkdir -p "$RUNS"
    : >"$OUT/curate.log"
    : >"$OUT/torch.log"
    run_smol
    (cd "$RUNS" && tar -czf "$OUT/runs_smol.tar.gz" --exclude='*.safetensors' --exclude='tokenizer.json' smol_*-"$DEV")
    ;;
tiny|smol)
    CURATE="${CURATE:-$root/target-cuda/release/curate}"
    GGUF="${GGUF:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
    CPU_REF="${CPU_REF:-$OUT/cpu_ref.json}"
    setup_gpu_env
    : >"$OUT/curate.log"
    : >"$OUT/torch.log"
    if [ "$mode" = tiny ]; then run_tiny; else run_smol; fi
    ;;
local)
    "$root/scripts/build_cuda.sh"
    "$root/scripts/fetch_models.sh"
    if [ -z "${TORCH_PYTHON:-}" ] && ! python3 -c 'import torch, transformers, peft' 2>/dev/null; then
        python3 -m venv "$root/benches/.torch-venv"
        "$root/benches/.torch-venv/bin/pip" install --quiet torch transformers peft safetensors numpy
        export TORCH_PYTHON="$root/benches/.torch-venv/bin/python"
    fi
    (cd "$root" && cargo build --release)
    "$0" ref
    "$0" tiny
    "$0" smol
    ;;
*)
    sed -n '2,25p' "$0"
    exit 2
    ;;
esac
