//! The fused CUDA kernels of `src/finetune/kernels.cu` (attention forward and backward,
//! cross-entropy, RoPE), run on the CPU through a small emulation header
//! (`tests/cuda_emu/emu.h`: one thread per CUDA thread, a barrier for `__syncthreads`)
//! and compared with a double-precision reference, for the head dimensions of the tiny
//! model (32), SmolLM2 (64) and Llama-size heads (128, smaller tiles). The GPU build checks the same ops against candle's basic
//! ops on the device before training (`cuda_ops::Kernels::load`); this test checks the
//! kernel source where no GPU is.

use std::path::Path;
use std::process::Command;

#[test]
fn fused_kernels_match_a_double_precision_reference_on_the_cpu() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("tests/cuda_emu/check.cpp");
    let dir = tempfile::tempdir().unwrap();
    for hd in [32, 64, 128] {
        let exe = dir.path().join(format!("check{hd}"));
        let out = Command::new("g++")
            .args(["-std=c++20", "-O2", "-pthread", &format!("-DHD={hd}")])
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .output()
            .expect("g++ (C++20) is needed to run the CUDA kernels on the CPU");
        assert!(
            out.status.success(),
            "g++ failed for HD={hd}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = Command::new(&exe).output().unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        println!("{stdout}");
        assert!(
            run.status.success(),
            "kernel checks failed for HD={hd}:\n{stdout}"
        );
        assert!(stdout.contains("0 failures"), "{stdout}");
        let checks = if hd > 64 { 28 } else { 23 };
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with("ok")).count(),
            checks,
            "{stdout}"
        );
    }
}
