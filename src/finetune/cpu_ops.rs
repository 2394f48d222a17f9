//! Fused CPU ops for training: cross-entropy, causal softmax, RMSNorm, SwiGLU and RoPE,
//! each one pass forward and one backward, as candle custom ops with their gradients,
//! and the AdamW update as one in-place pass per parameter ([`adamw_step`]).
//!
//! Why: from basic candle ops each of these is a chain of element-wise and broadcast
//! kernels, every one a pass over memory and a fresh zeroed buffer, forward and again
//! backward. On the default `tiny` model (16 x 128 tokens a step, vocabulary 2,048) the
//! cross-entropy alone is ~12 passes over a 16 MB `[N, vocab]` tensor, and perf showed
//! candle's broadcast kernels, `memset` and `expf` at half of the step, beside 28% in
//! the matrix products (issue 23). Here a row is read once or twice and written once.
//!
//! The arithmetic follows the basic-op formulas in `model.rs` (same max shift, same
//! order of operations per element); sums run in a different order, so results agree
//! to float rounding, not bit for bit. Rows are independent and each row is reduced
//! in one fixed order (16 lanes, `LANES`) on one thread, so the results do not depend
//! on the thread count. The tests below compare values and gradients with the basic
//! ops and with finite differences. `CURATE_FUSED_OPS=0` turns them off.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Error, InplaceOp1, Layout, Result as CResult,
    Shape, Storage, Tensor, WithDType,
};
use rayon::prelude::*;

/// Rows per rayon task: small rows are not worth a task each.
const ROWS_PER_TASK: usize = 16;

/// Whether the fused CPU ops apply to these tensors: on the CPU, all f32, and not turned
/// off with `CURATE_FUSED_OPS=0`.
pub fn applies(tensors: &[&Tensor]) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(super::cuda_ops::enabled)
        && tensors
            .iter()
            .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32)
}

fn msg(text: &str) -> Error {
    Error::Msg(text.to_string())
}

/// The elements (f32 values, u32 targets) a contiguous layout covers.
fn elems<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> CResult<&'a [T]> {
    let data = s.as_slice::<T>()?;
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| msg("fused CPU op: input is not contiguous"))?;
    Ok(&data[a..b])
}

/// [`elems`] as f32.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout) -> CResult<&'a [f32]> {
    elems(s, l)
}

/// The length of the rows (the last dimension) of a layout.
fn row_width(l: &Layout) -> CResult<usize> {
    l.shape()
        .dims()
        .last()
        .copied()
        .ok_or_else(|| msg("fused CPU op: a scalar has no rows"))
}

/// [`f32s`] of a tensor held by an op (a gradient or a saved result).
fn with_f32s<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> CResult<R>) -> CResult<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(f32s(s, layout)?),
        _ => Err(msg("fused CPU op: tensor is not on the CPU")),
    }
}

/// e^x for |x| < 87, NaN for NaN (inputs are clamped to [-87, 88]): Cephes' `expf`
/// (range reduction by ln 2, degree-5 polynomial; within ~2 ulp of libm) written so
/// that the compiler vectorises a loop of it. Plain multiplies and adds, no FMA: the
/// result is the same on every x86-64 CPU. libm's scalar `expf` was 10% of a training
/// step after the fusing.
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer, held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let y = p * r * r + r + 1.0;
    let exponent = (t.to_bits() as i32 - 0x4B40_0000 + 127) << 23;
    y * f32::from_bits(exponent as u32)
}

/// `buf[i] = e^(buf[i] · scale - shift)`, vectorised.
fn exp_in_place(buf: &mut [f32], scale: f32, shift: f32) {
    for v in buf.iter_mut() {
        *v = exp_approx(*v * scale - shift);
    }
}

/// Lanes of the row reductions below. A sequential f32 sum is one long chain of
/// dependent adds that the compiler may not reorder; 16 running sums (combined in a fixed
/// tree) let it vectorise, and the order is still fixed: the same bits on every run and
/// thread count (they differ from a sequential sum in the last bits).
const LANES: usize = 16;

/// The 16 lanes folded pairwise in a fixed order.
#[inline(always)]
fn fold_lanes(mut acc: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] = f(acc[i], acc[i + width]);
        }
        width /= 2;
    }
    acc[0]
}

/// Σ a[i] · b[i] over equal-length slices, in lanes.
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[i] += x * y;
    }
    fold_lanes(acc, |x, y| x + y)
}

/// Σ a[i] · b[i] · c[i] over equal-length slices, in lanes.
fn dot3_lanes(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((x, y), z) in ca.zip(cb).zip(cc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i] * z[i];
        }
    }
    for (i, ((x, y), z)) in ra.iter().zip(rb).zip(rc).enumerate() {
        acc[i] += x * y * z;
    }
    fold_lanes(acc, |x, y| x + y)
}

/// Σ xs, in lanes.
fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    for (i, x) in rest.iter().enumerate() {
        acc[i] += x;
    }
    fold_lanes(acc, |x, y| x + y)
}

/// max xs (−∞ for none), in lanes; the maximum does not depend on the order.
fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(c[i]);
        }
    }
    for (i, x) in rest.iter().enumerate() {
        acc[i] = acc[i].max(*x);
    }
    fold_lanes(acc, f32::max)
}

/// `ln Σ exp(row - max)` and `max`, as `nll_per_position` computes them; `scratch` holds
/// the exponentials.
fn shifted_lse(row: &[f32], scratch: &mut Vec<f32>) -> (f32, f32) {
    let max = max_lanes(row);
    scratch.clear();
    scratch.extend_from_slice(row);
    exp_in_place(scratch, 1.0, max);
    let sum = sum_lanes(scratch);
    (sum.ln(), max)
}

/// Negative log-likelihood per row of `logits` `[N, V]` for u32 `targets` `[N]`, with its
/// gradient.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> CResult<Tensor> {
    logits
        .contiguous()?
        .apply_op2(&targets.to_dtype(DType::U32)?.contiguous()?, CrossEntropy)
}

struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "curate-cpu-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (n, vocab) = xl.shape().dims2()?;
        let x = f32s(xs, xl)?;
        let t: &[u32] = elems(ts, tl)?;
        if t.len() != n || t.iter().any(|&k| k as usize >= vocab) {
            return Err(msg(
                "cross-entropy: a target is outside the vocabulary or rows differ",
            ));
        }
        let mut nll = vec![0f32; n];
        nll.par_iter_mut()
            .zip(x.par_chunks(vocab))
            .zip(t.par_iter())
            .with_min_len(ROWS_PER_TASK)
            .for_each_init(Vec::new, |scratch, ((out, row), &k)| {
                let (lse, max) = shifted_lse(row, scratch);
                *out = lse - (row[k as usize] - max);
            });
        Ok((CpuStorage::F32(nll), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        nll: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let op = CrossEntropyGrad {
            nll: nll.contiguous()?,
            grad: grad.contiguous()?,
        };
        let dx = logits
            .contiguous()?
            .apply_op2_no_bwd(&targets.contiguous()?, &op)?;
        Ok((Some(dx), None))
    }
}

/// d logits = (softmax - one-hot) · grad, row by row. The forward's `nll` gives the
/// log-sum-exp back (`lse = nll + x[target]`), so the row is exponentiated once.
struct CrossEntropyGrad {
    nll: Tensor,
    grad: Tensor,
}

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "curate-cpu-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (_, vocab) = xl.shape().dims2()?;
        let x = f32s(xs, xl)?;
        let t: &[u32] = elems(ts, tl)?;
        // Starts as a copy of the logits (one pass, no zeroed buffer), exponentiated in place.
        let mut dx = x.to_vec();
        with_f32s(&self.grad, |g| {
            with_f32s(&self.nll, |nll| {
                dx.par_chunks_mut(vocab)
                    .zip(t.par_iter().zip(g.par_iter().zip(nll.par_iter())))
                    .with_min_len(ROWS_PER_TASK)
                    .for_each(|(out, (&k, (&gr, &nl)))| {
                        let shift = nl + out[k as usize];
                        exp_in_place(out, 1.0, shift);
                        for o in out.iter_mut() {
                            *o *= gr;
                        }
                        out[k as usize] -= gr;
                    });
                Ok(())
            })
        })?;
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

/// Softmax over the last dimension of attention scores `[B, H, T, P+T]` after scaling by
/// `scale` and masking causally (prefix slots always visible, key j visible from query
/// i >= j), with its gradient: what `softmax_last_dim(scores * scale + causal_mask)` gives.
pub fn causal_softmax(scores: &Tensor, scale: f64, prefix: usize) -> CResult<Tensor> {
    scores.contiguous()?.apply_op1(CausalSoftmax {
        scale: scale as f32,
        prefix,
    })
}

struct CausalSoftmax {
    scale: f32,
    prefix: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "curate-cpu-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let (_, _, t, width) = l.shape().dims4()?;
        if width != self.prefix + t {
            return Err(msg("causal softmax: keys are not prefix + queries"));
        }
        let x = f32s(s, l)?;
        // Starts as a copy of the scores (one pass, no zeroed buffer), masked keys zeroed.
        let mut y = x.to_vec();
        y.par_chunks_mut(width)
            .enumerate()
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(r, out)| {
                let visible = self.prefix + r % t + 1;
                out[visible..].fill(0.0);
                // max(v · scale) = max(v) · scale exactly: rounding is monotone, scale > 0.
                let max = max_lanes(&out[..visible]) * self.scale;
                exp_in_place(&mut out[..visible], self.scale, max);
                let sum = sum_lanes(&out[..visible]);
                for o in &mut out[..visible] {
                    *o /= sum;
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _scores: &Tensor, probs: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let op = SoftmaxGrad { scale: self.scale };
        Ok(Some(
            probs.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &op)?,
        ))
    }
}

/// d scores = scale · y ⊙ (g - Σ g ⊙ y), row by row (`y` the softmax's output).
struct SoftmaxGrad {
    scale: f32,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "curate-cpu-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let width = row_width(yl)?;
        let (y, g) = (f32s(ys, yl)?, f32s(gs, gl)?);
        if y.len() != g.len() {
            return Err(msg("softmax grad: shapes differ"));
        }
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(width)
            .zip(y.par_chunks(width).zip(g.par_chunks(width)))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(out, (yr, gr))| {
                let dot = dot_lanes(yr, gr);
                for ((o, &yv), &gv) in out.iter_mut().zip(yr).zip(gr) {
                    *o = self.scale * yv * (gv - dot);
                }
            });
        Ok((CpuStorage::F32(dx), yl.shape().clone()))
    }
}

/// RMSNorm over the last dimension, `x / sqrt(mean(x²) + eps) · w`, with gradients for
/// `x` and `w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> CResult<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

struct RmsNorm {
    eps: f32,
}

/// `sqrt(mean(x²) + eps)` of one row.
fn rms(row: &[f32], eps: f32) -> f32 {
    let ms = dot_lanes(row, row) / row.len() as f32;
    (ms + eps).sqrt()
}

/// `1 / rms`.
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    1.0 / rms(row, eps)
}

/// The width of the rows of `l` and `w`, checked to agree.
fn norm_width(l: &Layout, wl: &Layout) -> CResult<usize> {
    let d = row_width(l)?;
    if wl.shape().elem_count() != d {
        return Err(msg("rms_norm: weight and rows differ"));
    }
    Ok(d)
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "curate-cpu-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let d = norm_width(xl, wl)?;
        let (x, w) = (f32s(xs, xl)?, f32s(ws, wl)?);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(out, row)| {
                let s = rms(row, self.eps);
                for ((o, &v), &wv) in out.iter_mut().zip(row).zip(w) {
                    *o = v / s * wv;
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let (x, g) = (x.contiguous()?, grad.contiguous()?);
        let dx = x.apply_op3_no_bwd(&w.contiguous()?, &g, &RmsNormGradX { eps: self.eps })?;
        let dw = x
            .apply_op2_no_bwd(&g, &RmsNormGradW { eps: self.eps })?
            .reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// dx_j = r · w_j g_j - r³ · x_j · mean(w ⊙ g ⊙ x), with r = 1 / rms(x).
struct RmsNormGradX {
    eps: f32,
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "curate-cpu-rms-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let d = norm_width(xl, wl)?;
        let (x, w, g) = (f32s(xs, xl)?, f32s(ws, wl)?, f32s(gs, gl)?);
        if g.len() != x.len() {
            return Err(msg("rms_norm grad: shapes differ"));
        }
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(d)
            .zip(x.par_chunks(d).zip(g.par_chunks(d)))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(out, (row, gr))| {
                let r = inv_rms(row, self.eps);
                let mean_wgx = dot3_lanes(w, gr, row) / d as f32;
                let k = r * r * r * mean_wgx;
                for (((o, &xv), &gv), &wv) in out.iter_mut().zip(row).zip(gr).zip(w) {
                    *o = r * wv * gv - k * xv;
                }
            });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

/// dw = Σ over rows of g ⊙ x · r (rows in order: deterministic).
struct RmsNormGradW {
    eps: f32,
}

impl CustomOp2 for RmsNormGradW {
    fn name(&self) -> &'static str {
        "curate-cpu-rms-norm-grad-w"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let d = row_width(xl)?;
        let (x, g) = (f32s(xs, xl)?, f32s(gs, gl)?);
        if g.len() != x.len() {
            return Err(msg("rms_norm grad: shapes differ"));
        }
        let mut dw = vec![0f32; d];
        for (row, gr) in x.chunks(d).zip(g.chunks(d)) {
            let r = inv_rms(row, self.eps);
            for ((o, &xv), &gv) in dw.iter_mut().zip(row).zip(gr) {
                *o += gv * xv * r;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(d)))
    }
}

/// SwiGLU's gating, `silu(gate) ⊙ up` (silu(x) = x / (1 + e^-x)), with gradients for both.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> CResult<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

struct SwiGlu;

/// sigmoid(x) = 1 / (1 + e^-x).
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_approx(-x))
}

/// silu(x) = x / (1 + e^-x), as candle's `silu` computes it.
fn silu(x: f32) -> f32 {
    x / (1.0 + exp_approx(-x))
}

/// Two equal-length f32 inputs.
fn pair<'a>(
    a: &'a CpuStorage,
    al: &Layout,
    b: &'a CpuStorage,
    bl: &Layout,
) -> CResult<(&'a [f32], &'a [f32])> {
    let (a, b) = (f32s(a, al)?, f32s(b, bl)?);
    if a.len() != b.len() {
        return Err(msg("fused CPU op: shapes differ"));
    }
    Ok((a, b))
}

/// Element-wise `f` over equal-length inputs in parallel chunks.
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(4096)
        .zip(a.par_chunks(4096).zip(b.par_chunks(4096)))
        .for_each(|(o, (x, y))| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = f(x, y);
            }
        });
    out
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "curate-cpu-swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (gate, up) = pair(gs, gl, us, ul)?;
        let out = zip_map(gate, up, |g, u| silu(g) * u);
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let (gate, up, grad) = (gate.contiguous()?, up.contiguous()?, grad.contiguous()?);
        // d gate = g ⊙ up ⊙ silu'(gate), silu'(x) = s (1 + x (1 - s)); d up = g ⊙ silu(gate).
        let silu_grad_times = Elementwise {
            name: "curate-cpu-silu-grad-times",
            f: |x, b| {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s)) * b
            },
        };
        let silu_times = Elementwise {
            name: "curate-cpu-silu-times",
            f: |x, b| silu(x) * b,
        };
        let d_gate = gate.apply_op2_no_bwd(&grad.mul(&up)?, &silu_grad_times)?;
        let d_up = gate.apply_op2_no_bwd(&grad, &silu_times)?;
        Ok((Some(d_gate), Some(d_up)))
    }
}

/// An element-wise op of two equal-length inputs (the SwiGLU gradients). Generic over
/// the closure, so each op's loop is compiled with `f` inlined and vectorised (a `fn`
/// pointer cost a call per element: 13% of a training step).
struct Elementwise<F> {
    name: &'static str,
    f: F,
}

impl<F: Fn(f32, f32) -> f32 + Send + Sync + Copy> CustomOp2 for Elementwise<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let (a, b) = pair(a, al, b, bl)?;
        Ok((CpuStorage::F32(zip_map(a, b, self.f)), al.shape().clone()))
    }
}

/// Rotary embedding of `x` `[B, H, T, hd]` with tables `cos`, `sin` `[T, hd/2]`:
/// rotate-half pairs (i, i + hd/2) or interleaved (2i, 2i + 1), as `model::rope`; the
/// gradient is the inverse rotation.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> CResult<Tensor> {
    x.contiguous()?.apply_op1(Rope {
        cos: cos.contiguous()?,
        sin: sin.contiguous()?,
        interleaved,
        inverse: false,
    })
}

struct Rope {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
    /// Rotate by minus the angle (the backward pass).
    inverse: bool,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "curate-cpu-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let (_, _, t, hd) = l.shape().dims4()?;
        let half = hd / 2;
        if hd % 2 != 0 || self.cos.dims() != [t, half] || self.sin.dims() != [t, half] {
            return Err(msg("rope: tables do not fit the input"));
        }
        let x = f32s(s, l)?;
        let sign = if self.inverse { -1.0f32 } else { 1.0 };
        let mut y = vec![0f32; x.len()];
        with_f32s(&self.cos, |cos| {
            with_f32s(&self.sin, |sin| {
                y.par_chunks_mut(hd)
                    .zip(x.par_chunks(hd))
                    .enumerate()
                    .with_min_len(ROWS_PER_TASK)
                    .for_each(|(r, (out, row))| {
                        let p = r % t;
                        let (c, sn) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
                        for i in 0..half {
                            let (a, b) = if self.interleaved {
                                (2 * i, 2 * i + 1)
                            } else {
                                (i, i + half)
                            };
                            let (x1, x2, si) = (row[a], row[b], sign * sn[i]);
                            out[a] = x1 * c[i] - x2 * si;
                            out[b] = x2 * c[i] + x1 * si;
                        }
                    });
                Ok(())
            })
        })?;
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let inverse = Rope {
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            interleaved: self.interleaved,
            inverse: !self.inverse,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

/// AdamW's settings for one step of one parameter (the bias corrections of this step).
#[derive(Debug, Clone, Copy)]
pub struct AdamWHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    /// `1 - beta1^t` and `1 - beta2^t`.
    pub bc1: f32,
    pub bc2: f32,
    pub eps: f32,
    /// Decoupled weight decay of this parameter (0 for norms and biases).
    pub decay: f32,
}

/// One AdamW step on a CPU f32 parameter, in place: the gradient times `clip`, then the
/// moments `m` and `v` (host vectors of the parameter's length) and the parameter,
/// element by element in one pass. What the candle ops of `train::AdamW` compute, as
/// ~12 passes with a fresh buffer each (4-5% of a training step of the `tiny` model).
pub fn adamw_step(
    theta: &Tensor,
    grad: &Tensor,
    clip: f32,
    m: &mut [f32],
    v: &mut [f32],
    hyper: AdamWHyper,
) -> CResult<()> {
    let grad = grad.contiguous()?;
    with_f32s(&grad, |g| {
        if g.len() != m.len() || g.len() != v.len() || g.len() != theta.elem_count() {
            return Err(msg("adamw: parameter, gradient and moments differ in size"));
        }
        theta.inplace_op1(&AdamWUpdate {
            g,
            clip,
            moments: std::cell::RefCell::new((m, v)),
            hyper,
        })
    })
}

struct AdamWUpdate<'a> {
    g: &'a [f32],
    clip: f32,
    moments: std::cell::RefCell<(&'a mut [f32], &'a mut [f32])>,
    hyper: AdamWHyper,
}

impl InplaceOp1 for AdamWUpdate<'_> {
    fn name(&self) -> &'static str {
        "curate-cpu-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> CResult<()> {
        let (a, b) = layout
            .contiguous_offsets()
            .ok_or_else(|| msg("adamw: the parameter is not contiguous"))?;
        let theta = match storage {
            CpuStorage::F32(data) => &mut data[a..b],
            _ => return Err(msg("adamw: the parameter is not f32")),
        };
        let h = self.hyper;
        let (keep, inv_bc1, inv_bc2) = (1.0 - h.lr * h.decay, 1.0 / h.bc1, 1.0 / h.bc2);
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        for (((p, &g), m), v) in theta.iter_mut().zip(self.g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * self.clip;
            *m = *m * h.beta1 + g * (1.0 - h.beta1);
            *v = *v * h.beta2 + g * g * (1.0 - h.beta2);
            let update = (*m * inv_bc1) / ((*v * inv_bc2).sqrt() + h.eps);
            *p = *p * keep - update * h.lr;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::model::{nll_per_position, rms_norm_basic, softmax_last_dim};
    use crate::finetune::rng::Rng;
    use candle_core::Var;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(Rng::new(seed, 1).normal_vec(n, 1.0), shape, &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: fused {x} vs basic {y}"
            );
        }
    }

    /// Gradients of `sum(f(inputs) ⊙ probe)` for every input.
    fn grads(
        inputs: &[Tensor],
        probe: &Tensor,
        f: &dyn Fn(&[Tensor]) -> Tensor,
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&ts);
        let loss = (&out * probe).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        (
            values(&out),
            ts.iter().map(|t| values(g.get(t).unwrap())).collect(),
        )
    }

    /// The gradient of `sum(f(x) ⊙ probe)` at coordinate `i` of input `k` by central
    /// differences.
    fn numeric(
        inputs: &[Tensor],
        k: usize,
        i: usize,
        probe: &Tensor,
        f: &dyn Fn(&[Tensor]) -> Tensor,
    ) -> f32 {
        let h = 1e-2f32;
        let at = |delta: f32| -> f32 {
            let mut v = values(&inputs[k]);
            v[i] += delta;
            let mut ts = inputs.to_vec();
            ts[k] = Tensor::from_vec(v, inputs[k].shape(), &Device::Cpu).unwrap();
            let out = f(&ts);
            (&out * probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        (at(h) - at(-h)) / (2.0 * h)
    }

    fn check(
        inputs: &[Tensor],
        fused: &dyn Fn(&[Tensor]) -> Tensor,
        basic: &dyn Fn(&[Tensor]) -> Tensor,
        what: &str,
    ) {
        let probe = randn(fused(inputs).dims(), 99);
        let (fv, fg) = grads(inputs, &probe, fused);
        let (bv, bg) = grads(inputs, &probe, basic);
        assert_close(&fv, &bv, 1e-5, &format!("{what} values"));
        for (k, (a, b)) in fg.iter().zip(&bg).enumerate() {
            assert_close(a, b, 1e-4, &format!("{what} grad {k}"));
            for i in [0, a.len() / 3, a.len() - 1] {
                let n = numeric(inputs, k, i, &probe, fused);
                assert!(
                    (n - a[i]).abs() <= 2e-2 * (1.0 + a[i].abs()),
                    "{what} grad {k}[{i}]: analytic {} vs finite differences {n}",
                    a[i]
                );
            }
        }
    }

    #[test]
    fn adamw_step_matches_the_candle_ops_formula_over_steps() {
        let n = 37; // not a multiple of any vector width
        let theta = Var::from_tensor(&randn(&[n], 1)).unwrap();
        let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
        let mut reference = randn(&[n], 1);
        let (mut rm, mut rv) = (reference.zeros_like().unwrap(), reference.zeros_like().unwrap());
        let (lr, b1, b2, eps, decay, clip) = (1e-2, 0.9, 0.95, 1e-8, 0.01, 0.7);
        for t in 1..=5 {
            let g = randn(&[n], 10 + t as u64);
            let (bc1, bc2) = (1.0 - f64::powi(b1, t), 1.0 - f64::powi(b2, t));
            let hyper = AdamWHyper {
                lr: lr as f32,
                beta1: b1 as f32,
                beta2: b2 as f32,
                bc1: bc1 as f32,
                bc2: bc2 as f32,
                eps: eps as f32,
                decay: decay as f32,
            };
            adamw_step(theta.as_tensor(), &g, clip as f32, &mut m, &mut v, hyper).unwrap();
            // `train::AdamW`'s candle ops.
            let g = (g * clip).unwrap();
            rm = ((&rm * b1).unwrap() + (&g * (1.0 - b1)).unwrap()).unwrap();
            rv = ((&rv * b2).unwrap() + (g.sqr().unwrap() * (1.0 - b2)).unwrap()).unwrap();
            let update = (&rm / bc1)
                .unwrap()
                .div(&((&rv / bc2).unwrap().sqrt().unwrap() + eps).unwrap())
                .unwrap();
            reference = ((&reference * (1.0 - lr * decay)).unwrap() - (update * lr).unwrap()).unwrap();
            assert_close(&values(theta.as_tensor()), &values(&reference), 1e-6, "theta");
            assert_close(&m, &values(&rm), 1e-6, "m");
            assert_close(&v, &values(&rv), 1e-6, "v");
        }
        let wrong = randn(&[n + 1], 3);
        assert!(adamw_step(
            theta.as_tensor(),
            &wrong,
            1.0,
            &mut m,
            &mut v,
            AdamWHyper {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.9,
                bc1: 0.1,
                bc2: 0.1,
                eps: 1e-8,
                decay: 0.0,
            }
        )
        .is_err());
    }

    #[test]
    fn cross_entropy_matches_basic_ops_and_finite_differences() {
        let logits = randn(&[6, 11], 1);
        let targets = Tensor::new(&[0u32, 10, 3, 3, 7, 1], &Device::Cpu).unwrap();
        check(
            &[logits],
            &|t| cross_entropy(&t[0], &targets).unwrap(),
            &|t| nll_per_position(&t[0], &targets).unwrap(),
            "cross_entropy",
        );
        let bad = Tensor::new(&[0u32, 11, 3, 3, 7, 1], &Device::Cpu).unwrap();
        assert!(cross_entropy(&randn(&[6, 11], 1), &bad).is_err());
    }

    #[test]
    fn causal_softmax_matches_masked_basic_softmax() {
        let (t, scale) = (5, 0.35);
        for prefix in [0, 2] {
            let scores = randn(&[2, 3, t, prefix + t], 2 + prefix as u64);
            let mut mask = vec![0f32; t * (prefix + t)];
            for i in 0..t {
                for j in (i + 1)..t {
                    mask[i * (prefix + t) + prefix + j] = -1e9;
                }
            }
            let mask = Tensor::from_vec(mask, (t, prefix + t), &Device::Cpu).unwrap();
            check(
                &[scores],
                &|x| causal_softmax(&x[0], scale, prefix).unwrap(),
                &|x| {
                    softmax_last_dim(&x[0].affine(scale, 0.0).unwrap().broadcast_add(&mask).unwrap()).unwrap()
                },
                &format!("causal_softmax prefix {prefix}"),
            );
        }
    }

    #[test]
    fn rms_norm_matches_basic_ops_for_x_and_w() {
        let x = randn(&[7, 16], 3);
        let w = randn(&[16], 4).affine(0.3, 1.0).unwrap();
        check(
            &[x, w],
            &|t| rms_norm(&t[0], &t[1], 1e-5).unwrap(),
            &|t| rms_norm_basic(&t[0], &t[1], 1e-5).unwrap(),
            "rms_norm",
        );
        // Leading dimensions are rows.
        let x3 = randn(&[2, 3, 16], 5);
        let w = randn(&[16], 6);
        let a = values(&rms_norm(&x3, &w, 1e-6).unwrap());
        let b = values(&rms_norm_basic(&x3, &w, 1e-6).unwrap());
        assert_close(&a, &b, 1e-5, "rms_norm 3-d");
    }

    #[test]
    fn swiglu_matches_basic_ops() {
        let gate = randn(&[5, 24], 9).affine(3.0, 0.0).unwrap();
        let up = randn(&[5, 24], 10);
        check(
            &[gate, up],
            &|t| swiglu(&t[0], &t[1]).unwrap(),
            &|t| (t[0].silu().unwrap() * &t[1]).unwrap(),
            "swiglu",
        );
    }

    #[test]
    fn rope_matches_basic_ops_both_layouts() {
        let (t, hd) = (6, 8);
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        for p in 0..t {
            for i in 0..hd / 2 {
                let a = p as f64 * 10000f64.powf(-(2.0 * i as f64) / hd as f64);
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        let cos = Tensor::from_vec(cos, (t, hd / 2), &Device::Cpu).unwrap();
        let sin = Tensor::from_vec(sin, (t, hd / 2), &Device::Cpu).unwrap();
        for interleaved in [false, true] {
            check(
                &[randn(&[2, 3, t, hd], 11)],
                &|x| rope(&x[0], &cos, &sin, interleaved).unwrap(),
                &|x| crate::finetune::model::rope_basic(&x[0], &cos, &sin, interleaved).unwrap(),
                &format!("rope interleaved {interleaved}"),
            );
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let logits = randn(&[300, 64], 7);
        let targets =
            Tensor::from_vec((0..300u32).map(|i| i % 64).collect::<Vec<_>>(), 300, &Device::Cpu).unwrap();
        let run = || {
            let probe = randn(&[300], 8);
            grads(std::slice::from_ref(&logits), &probe, &|t| {
                cross_entropy(&t[0], &targets).unwrap()
            })
        };
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(run);
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(run);
        assert_eq!(one, two);
    }
}
