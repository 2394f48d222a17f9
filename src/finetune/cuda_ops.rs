//! Fused CUDA ops for training: causal attention, cross-entropy and RoPE, each with its
//! backward pass, as candle custom ops over the kernels of `kernels.cu`.
//!
//! Why: from basic candle ops, attention materialises `[B, H, T, S]` scores and keeps
//! five such tensors per layer for the backward pass (SmolLM2 at 16 × 512: 94 GB and
//! 0.28× PyTorch's speed on an H200), the loss makes as many copies of the `[N, vocab]`
//! logits, and RoPE is eight element-wise launches per tensor. candle's own fused
//! `softmax`, `rms_norm` and `rope` pass no gradients, and candle has no attention with a
//! backward pass, so these are written here: FlashAttention-2's recomputation (only the
//! per-query log-sum-exp is kept), grouped-query heads and prefix slots read in place (no
//! `repeat_kv` copies), and q, k, v in the `[B, T, heads, head_dim]` layout the
//! projections produce (no transposes).
//!
//! The kernels are plain CUDA C compiled at run time by NVRTC for the model's head
//! dimension. tests/cuda_kernels.rs runs the same source on the CPU against a
//! double-precision reference; on the GPU, [`Kernels::load`] compares each op and its
//! gradients with the basic-op formulation before training, and the model falls back to
//! basic ops (with a warning) when loading or that check fails. `CURATE_FUSED_OPS=0`
//! turns them off. Without the `cuda` feature, [`Kernels`] has no values.

#[cfg(feature = "cuda")]
pub use cuda::{keep_pool_memory, Kernels};

/// Without CUDA there are no fused kernels: the type has no values, so the model's fused
/// branches are never taken.
#[cfg(not(feature = "cuda"))]
pub enum Kernels {}

#[cfg(not(feature = "cuda"))]
impl Kernels {
    /// Causal attention (never called: no values).
    pub fn attention(
        &self,
        _q: &candle_core::Tensor,
        _k: &candle_core::Tensor,
        _v: &candle_core::Tensor,
        _prefix: usize,
    ) -> anyhow::Result<candle_core::Tensor> {
        match *self {}
    }
    /// Cross-entropy per position (never called: no values).
    pub fn cross_entropy(
        &self,
        _logits: &candle_core::Tensor,
        _targets: &candle_core::Tensor,
    ) -> anyhow::Result<candle_core::Tensor> {
        match *self {}
    }
    /// Rotary embedding (never called: no values).
    pub fn rope(
        &self,
        _x: &candle_core::Tensor,
        _cos: &candle_core::Tensor,
        _sin: &candle_core::Tensor,
        _interleaved: bool,
    ) -> anyhow::Result<candle_core::Tensor> {
        match *self {}
    }
}

/// Nothing to keep without CUDA.
#[cfg(not(feature = "cuda"))]
pub fn keep_pool_memory(_device: &candle_core::Device) -> anyhow::Result<()> {
    Ok(())
}

/// Whether the fused ops may be used (`CURATE_FUSED_OPS=0` turns them off).
pub fn enabled() -> bool {
    std::env::var("CURATE_FUSED_OPS").map_or(true, |v| v != "0")
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::{Arc, Mutex};

    use anyhow::{anyhow, bail, Context};
    use candle_core::cuda_backend::cudarc::driver::{
        CudaFunction, CudaSlice, CudaView, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::cudarc::nvrtc::compile_ptx;
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{
        CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Storage,
        Tensor, Var,
    };

    const SOURCE: &str = include_str!("kernels.cu");
    // Must match kernels.cu.
    const ATT_BQ: usize = 64;
    const DKV_BK: usize = 32;
    const CE_THREADS: u32 = 256;

    /// The compiled kernels for one head dimension on one device.
    pub struct Kernels {
        head_dim: usize,
        attn_fwd: CudaFunction,
        attn_dq: CudaFunction,
        attn_dkv: CudaFunction,
        ce_fwd: CudaFunction,
        ce_bwd: CudaFunction,
        rope: CudaFunction,
    }

    type CResult<T> = candle_core::Result<T>;

    fn msg(s: impl std::fmt::Display) -> candle_core::Error {
        candle_core::Error::Msg(format!("fused CUDA op: {s}"))
    }

    /// The f32 view of a contiguous CUDA storage with its layout.
    fn view<'a>(s: &'a CudaStorage, l: &Layout) -> CResult<CudaView<'a, f32>> {
        if !l.is_contiguous() {
            return Err(msg("input is not contiguous"));
        }
        let start = l.start_offset();
        Ok(s.as_cuda_slice::<f32>()?
            .slice(start..start + l.shape().elem_count()))
    }

    /// Run `f` with the f32 view of a contiguous CUDA tensor (held by an op).
    fn with_view<R>(t: &Tensor, f: impl FnOnce(&CudaView<'_, f32>) -> CResult<R>) -> CResult<R> {
        let (storage, layout) = t.storage_and_layout();
        let Storage::Cuda(cs) = &*storage else {
            return Err(msg("tensor not on a CUDA device"));
        };
        f(&view(cs, layout)?)
    }

    fn alloc(s: &CudaStorage, n: usize) -> CResult<CudaSlice<f32>> {
        // SAFETY: every element is written by the kernel that receives the slice.
        unsafe { s.device.alloc::<f32>(n) }
    }

    fn no_cpu<T>(name: &str) -> CResult<T> {
        Err(msg(format!("{name} runs on CUDA only")))
    }

    /// Shapes of q [B, T, H, D] and k [B, S, KVH, D].
    #[derive(Clone, Copy)]
    struct Dims {
        b: usize,
        t: usize,
        s: usize,
        p: usize,
        h: usize,
        kvh: usize,
    }

    impl Dims {
        fn of(q: &Shape, k: &Shape, p: usize, hd: usize) -> CResult<Dims> {
            let (b, t, h, d) = q.dims4()?;
            let (b2, s, kvh, d2) = k.dims4()?;
            if b != b2 || d != hd || d2 != hd || s != p + t || kvh == 0 || h % kvh != 0 {
                return Err(msg(format!("attention shapes q {q:?}, k {k:?}, prefix {p}")));
            }
            Ok(Dims { b, t, s, p, h, kvh })
        }
        fn scale(&self, hd: usize) -> f32 {
            (1.0 / (hd as f64).sqrt()) as f32
        }
        fn query_grid(&self) -> LaunchConfig {
            LaunchConfig {
                grid_dim: (self.t.div_ceil(ATT_BQ) as u32, self.h as u32, self.b as u32),
                block_dim: (ATT_BQ as u32, 1, 1),
                shared_mem_bytes: 0,
            }
        }
        fn key_grid(&self) -> LaunchConfig {
            LaunchConfig {
                grid_dim: (self.s.div_ceil(DKV_BK) as u32, self.kvh as u32, self.b as u32),
                block_dim: (DKV_BK as u32, 1, 1),
                shared_mem_bytes: 0,
            }
        }
    }

    /// Causal attention forward; keeps the per-query log-sum-exp for its backward pass.
    struct Attention {
        kern: Arc<Kernels>,
        prefix: usize,
        lse: Arc<Mutex<Option<Arc<CudaSlice<f32>>>>>,
    }

    impl CustomOp3 for Attention {
        fn name(&self) -> &'static str {
            "curate-attention"
        }
        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> CResult<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }
        fn cuda_fwd(
            &self,
            qs: &CudaStorage,
            ql: &Layout,
            ks: &CudaStorage,
            kl: &Layout,
            vs: &CudaStorage,
            vl: &Layout,
        ) -> CResult<(CudaStorage, Shape)> {
            let hd = self.kern.head_dim;
            let dm = Dims::of(ql.shape(), kl.shape(), self.prefix, hd)?;
            if vl.shape() != kl.shape() {
                return Err(msg("k and v shapes differ"));
            }
            let (q, k, v) = (view(qs, ql)?, view(ks, kl)?, view(vs, vl)?);
            let mut o = alloc(qs, ql.shape().elem_count())?;
            let mut lse = alloc(qs, dm.b * dm.h * dm.t)?;
            let stream = qs.device.cuda_stream();
            let mut b = stream.launch_builder(&self.kern.attn_fwd);
            let (t, s, p, h, kvh) = (dm.t as i32, dm.s as i32, dm.p as i32, dm.h as i32, dm.kvh as i32);
            let scale = dm.scale(hd);
            b.arg(&q).arg(&k).arg(&v).arg(&mut o).arg(&mut lse);
            b.arg(&t).arg(&s).arg(&p).arg(&h).arg(&kvh).arg(&scale);
            // SAFETY: shapes checked by Dims::of; the kernel writes all of o and lse.
            unsafe { b.launch(dm.query_grid()) }.w()?;
            *self.lse.lock().map_err(|_| msg("lse lock"))? = Some(Arc::new(lse));
            Ok((
                CudaStorage::wrap_cuda_slice(o, qs.device.clone()),
                ql.shape().clone(),
            ))
        }
        fn bwd(
            &self,
            q: &Tensor,
            k: &Tensor,
            v: &Tensor,
            o: &Tensor,
            grad: &Tensor,
        ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
            let lse = self
                .lse
                .lock()
                .map_err(|_| msg("lse lock"))?
                .clone()
                .ok_or_else(|| msg("backward before forward"))?;
            let op = AttentionGrad {
                kern: self.kern.clone(),
                prefix: self.prefix,
                k: k.contiguous()?,
                v: v.contiguous()?,
                o: o.contiguous()?,
                dout: grad.contiguous()?,
                lse,
            };
            let q = q.contiguous()?;
            let dq = q.apply_op1_no_bwd(&AttentionGradQ(&op))?;
            let dkv = q.apply_op1_no_bwd(&AttentionGradKv(&op))?;
            Ok((Some(dq), Some(dkv.get(0)?), Some(dkv.get(1)?)))
        }
    }

    /// What both backward kernels read.
    struct AttentionGrad {
        kern: Arc<Kernels>,
        prefix: usize,
        k: Tensor,
        v: Tensor,
        o: Tensor,
        dout: Tensor,
        lse: Arc<CudaSlice<f32>>,
    }

    /// dQ, applied to q.
    struct AttentionGradQ<'a>(&'a AttentionGrad);
    /// dK and dV stacked `[2, B, S, KVH, D]`, applied to q.
    struct AttentionGradKv<'a>(&'a AttentionGrad);

    impl AttentionGrad {
        fn launch(&self, qs: &CudaStorage, ql: &Layout, kv: bool) -> CResult<(CudaStorage, Shape)> {
            let hd = self.kern.head_dim;
            let dm = Dims::of(ql.shape(), self.k.shape(), self.prefix, hd)?;
            let q = view(qs, ql)?;
            let stream = qs.device.cuda_stream();
            let (t, s, p, h, kvh) = (dm.t as i32, dm.s as i32, dm.p as i32, dm.h as i32, dm.kvh as i32);
            let scale = dm.scale(hd);
            let kn = self.k.elem_count();
            let mut out = alloc(qs, if kv { 2 * kn } else { ql.shape().elem_count() })?;
            with_view(&self.k, |k| {
                with_view(&self.v, |v| {
                    with_view(&self.o, |o| {
                        with_view(&self.dout, |dout| {
                            if kv {
                                let (mut dk, mut dv) = out.split_at_mut(kn);
                                let mut b = stream.launch_builder(&self.kern.attn_dkv);
                                b.arg(&q).arg(k).arg(v).arg(o).arg(dout).arg(&*self.lse);
                                b.arg(&mut dk).arg(&mut dv);
                                b.arg(&t).arg(&s).arg(&p).arg(&h).arg(&kvh).arg(&scale);
                                // SAFETY: shapes checked; every key row of dk, dv is written.
                                unsafe { b.launch(dm.key_grid()) }.w()?;
                            } else {
                                let mut b = stream.launch_builder(&self.kern.attn_dq);
                                b.arg(&q).arg(k).arg(v).arg(o).arg(dout).arg(&*self.lse);
                                b.arg(&mut out);
                                b.arg(&t).arg(&s).arg(&p).arg(&h).arg(&kvh).arg(&scale);
                                // SAFETY: shapes checked; every query row of dq is written.
                                unsafe { b.launch(dm.query_grid()) }.w()?;
                            }
                            Ok(())
                        })
                    })
                })
            })?;
            let shape = if kv {
                let mut d = vec![2];
                d.extend_from_slice(self.k.dims());
                Shape::from(d)
            } else {
                ql.shape().clone()
            };
            Ok((CudaStorage::wrap_cuda_slice(out, qs.device.clone()), shape))
        }
    }

    impl CustomOp1 for AttentionGradQ<'_> {
        fn name(&self) -> &'static str {
            "curate-attention-dq"
        }
        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> CResult<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }
        fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> CResult<(CudaStorage, Shape)> {
            self.0.launch(s, l, false)
        }
    }

    impl CustomOp1 for AttentionGradKv<'_> {
        fn name(&self) -> &'static str {
            "curate-attention-dkv"
        }
        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> CResult<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }
        fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> CResult<(CudaStorage, Shape)> {
            self.0.launch(s, l, true)
        }
    }

    fn row_grid(rows: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (CE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// The u32 view of a contiguous CUDA storage.
    fn view_u32<'a>(s: &'a CudaStorage, l: &Layout) -> CResult<CudaView<'a, u32>> {
        if !l.is_contiguous() {
            return Err(msg("targets are not contiguous"));
        }
        let start = l.start_offset();
        Ok(s.as_cuda_slice::<u32>()?
            .slice(start..start + l.shape().elem_count()))
    }

    /// Negative log-likelihood per row of logits `[N, V]` for u32 targets `[N]`.
    struct CrossEntropy {
        kern: Arc<Kernels>,
    }

    impl CustomOp2 for CrossEntropy {
        fn name(&self) -> &'static str {
            "curate-cross-entropy"
        }
        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> CResult<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }
        fn cuda_fwd(
            &self,
            xs: &CudaStorage,
            xl: &Layout,
            ts: &CudaStorage,
            tl: &Layout,
        ) -> CResult<(CudaStorage, Shape)> {
            let (n, vocab) = xl.shape().dims2()?;
            if tl.shape().dims1()? != n {
                return Err(msg("targets and logits rows differ"));
            }
            let (x, t) = (view(xs, xl)?, view_u32(ts, tl)?);
            let mut nll = alloc(xs, n)?;
            let v = vocab as i32;
            let stream = xs.device.cuda_stream();
            let mut b = stream.launch_builder(&self.kern.ce_fwd);
            b.arg(&x).arg(&t).arg(&mut nll).arg(&v);
            // SAFETY: one block per row of n; each writes its nll.
            unsafe { b.launch(row_grid(n)) }.w()?;
            Ok((
                CudaStorage::wrap_cuda_slice(nll, xs.device.clone()),
                Shape::from(n),
            ))
        }
        fn bwd(
            &self,
            logits: &Tensor,
            targets: &Tensor,
            nll: &Tensor,
            grad: &Tensor,
        ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
            let op = CrossEntropyGrad {
                kern: self.kern.clone(),
                nll: nll.contiguous()?,
                grad: grad.contiguous()?,
            };
            let dx = logits
                .contiguous()?
                .apply_op2_no_bwd(&targets.contiguous()?, &op)?;
            Ok((Some(dx), None))
        }
    }

    /// d logits = (softmax - one-hot) · grad per row.
    struct CrossEntropyGrad {
        kern: Arc<Kernels>,
        nll: Tensor,
        grad: Tensor,
    }

    impl CustomOp2 for CrossEntropyGrad {
        fn name(&self) -> &'static str {
            "curate-cross-entropy-grad"
        }
        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> CResult<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }
        fn cuda_fwd(
            &self,
            xs: &CudaStorage,
            xl: &Layout,
            ts: &CudaStorage,
            tl: &Layout,
        ) -> CResult<(CudaStorage, Shape)> {
            let (n, vocab) = xl.shape().dims2()?;
            let (x, t) = (view(xs, xl)?, view_u32(ts, tl)?);
            let mut dx = alloc(xs, n * vocab)?;
            let v = vocab as i32;
            let stream = xs.device.cuda_stream();
            with_view(&self.nll, |nll| {
                with_view(&self.grad, |g| {
                    let mut b = stream.launch_builder(&self.kern.ce_bwd);
                    b.arg(&x).arg(&t).arg(nll).arg(g).arg(&mut dx).arg(&v);
                    // SAFETY: one block per row; each writes its V gradients.
                    unsafe { b.launch(row_grid(n)) }.w()?;
                    Ok(())
                })
            })?;
            Ok((
                CudaStorage::wrap_cuda_slice(dx, xs.device.clone()),
                xl.shape().clone(),
            ))
        }
    }

    /// Rotary embedding of x `[B, T, H, D]` (sign 1) or its transpose (sign -1).
    struct Rope {
        kern: Arc<Kernels>,
        cos: Tensor,
        sin: Tensor,
        sign: f32,
        interleaved: bool,
    }

    impl CustomOp1 for Rope {
        fn name(&self) -> &'static str {
            "curate-rope"
        }
        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> CResult<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }
        fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout) -> CResult<(CudaStorage, Shape)> {
            let (b, t, h, d) = xl.shape().dims4()?;
            if d != self.kern.head_dim || self.cos.dims() != [t, d / 2] {
                return Err(msg(format!(
                    "rope shapes x {:?}, cos {:?}",
                    xl.shape(),
                    self.cos.shape()
                )));
            }
            let x = view(xs, xl)?;
            let mut y = alloc(xs, xl.shape().elem_count())?;
            let rows = (b * t * h) as i64;
            let (ti, hi, il) = (t as i32, h as i32, self.interleaved as i32);
            let n = b * t * h * d / 2;
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(256).clamp(1, 65_535) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let stream = xs.device.cuda_stream();
            with_view(&self.cos, |c| {
                with_view(&self.sin, |s| {
                    let mut bld = stream.launch_builder(&self.kern.rope);
                    bld.arg(&x).arg(c).arg(s).arg(&mut y).arg(&rows).arg(&ti).arg(&hi);
                    bld.arg(&self.sign).arg(&il);
                    // SAFETY: shapes checked; the grid-stride loop writes every pair.
                    unsafe { bld.launch(cfg) }.w()?;
                    Ok(())
                })
            })?;
            Ok((
                CudaStorage::wrap_cuda_slice(y, xs.device.clone()),
                xl.shape().clone(),
            ))
        }
        fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
            let back = Rope {
                kern: self.kern.clone(),
                cos: self.cos.clone(),
                sin: self.sin.clone(),
                sign: -self.sign,
                interleaved: self.interleaved,
            };
            Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
        }
    }

    /// Keep device memory that tensors free in the stream-ordered pool (release threshold
    /// unlimited) instead of handing it back to the driver at every synchronisation: a
    /// training step frees and re-allocates its activations (gigabytes) every step.
    pub fn keep_pool_memory(device: &Device) -> anyhow::Result<()> {
        use candle_core::cuda_backend::cudarc::driver::sys;
        let Device::Cuda(dev) = device else {
            return Ok(());
        };
        let stream = dev.cuda_stream();
        let ctx = stream.context();
        ctx.bind_to_thread()?;
        let mut threshold: u64 = u64::MAX;
        // SAFETY: plain driver calls on this context's device; `threshold` outlives them.
        unsafe {
            let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
            sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()).result()?;
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            )
            .result()?;
        }
        Ok(())
    }

    impl Kernels {
        /// Compile the kernels for `head_dim` on `device` and check every op and its
        /// gradients against basic candle ops on a small random case.
        pub fn load(device: &Device, head_dim: usize) -> anyhow::Result<Arc<Kernels>> {
            let Device::Cuda(dev) = device else {
                bail!("fused ops: not a CUDA device");
            };
            if head_dim == 0 || head_dim % 2 != 0 || head_dim > 256 {
                bail!("fused ops: head dimension {head_dim} not supported");
            }
            let src = format!("#define HD {head_dim}\n{SOURCE}");
            let ptx = compile_ptx(src).map_err(|e| anyhow!("NVRTC: {e:?}"))?;
            let module = dev.cuda_stream().context().load_module(ptx)?;
            let f = |name: &str| {
                module
                    .load_function(name)
                    .with_context(|| format!("loading {name}"))
            };
            let kern = Arc::new(Kernels {
                head_dim,
                attn_fwd: f("curate_attn_fwd")?,
                attn_dq: f("curate_attn_dq")?,
                attn_dkv: f("curate_attn_dkv")?,
                ce_fwd: f("curate_ce_fwd")?,
                ce_bwd: f("curate_ce_bwd")?,
                rope: f("curate_rope")?,
            });
            self_test(&kern, device)?;
            Ok(kern)
        }

        /// Causal attention of q `[B, T, H, D]` over k, v `[B, P+T, KVH, D]` (`prefix` = P
        /// slots visible to every query): `[B, T, H, D]`, with gradients for q, k and v.
        pub fn attention(
            self: &Arc<Self>,
            q: &Tensor,
            k: &Tensor,
            v: &Tensor,
            prefix: usize,
        ) -> anyhow::Result<Tensor> {
            let op = Attention {
                kern: self.clone(),
                prefix,
                lse: Arc::new(Mutex::new(None)),
            };
            Ok(q.contiguous()?
                .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
        }

        /// Negative log-likelihood `[N]` of `targets` `[N]` under `logits` `[N, V]`.
        pub fn cross_entropy(self: &Arc<Self>, logits: &Tensor, targets: &Tensor) -> anyhow::Result<Tensor> {
            let targets = targets.to_dtype(DType::U32)?.contiguous()?;
            let op = CrossEntropy { kern: self.clone() };
            Ok(logits.contiguous()?.apply_op2(&targets, op)?)
        }

        /// Rotary embedding of x `[B, T, H, D]` with cos, sin `[T, D/2]`.
        pub fn rope(
            self: &Arc<Self>,
            x: &Tensor,
            cos: &Tensor,
            sin: &Tensor,
            interleaved: bool,
        ) -> anyhow::Result<Tensor> {
            let op = Rope {
                kern: self.clone(),
                cos: cos.contiguous()?,
                sin: sin.contiguous()?,
                sign: 1.0,
                interleaved,
            };
            Ok(x.contiguous()?.apply_op1(op)?)
        }
    }

    /// Largest |a - b| over the largest |b|.
    fn rel_err(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let mag = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        Ok(diff / mag.max(1e-12))
    }

    fn compare(what: &str, a: &Tensor, b: &Tensor) -> anyhow::Result<()> {
        let e = rel_err(a, b)?;
        if !(e < 1e-4) {
            bail!("fused ops self-test: {what} differs from basic ops by {e:.2e} (relative)");
        }
        Ok(())
    }

    /// Every fused op against its basic-op formulation on the device, values and
    /// gradients (the gradients through a random linear function of the output).
    fn self_test(kern: &Arc<Kernels>, device: &Device) -> anyhow::Result<()> {
        let hd = kern.head_dim;
        let (b, t, h, kvh, p) = (2usize, 37usize, 4usize, 2usize, 3usize);
        let s = p + t;
        let rnd = |shape: &[usize]| Tensor::randn(0f32, 1f32, shape, device);
        let q = Var::from_tensor(&rnd(&[b, t, h, hd])?)?;
        let k = Var::from_tensor(&rnd(&[b, s, kvh, hd])?)?;
        let v = Var::from_tensor(&rnd(&[b, s, kvh, hd])?)?;
        let w = rnd(&[b, t, h, hd])?;
        let fused = kern.attention(&q, &k, &v, p)?;
        // Basic ops: [B, heads, len, D], kv heads repeated, additive mask, softmax.
        let qb = q.transpose(1, 2)?.contiguous()?;
        let rep = |x: &Tensor| -> anyhow::Result<Tensor> {
            let x = x.transpose(1, 2)?.contiguous()?; // [B, KVH, S, D]
            Ok(x.unsqueeze(2)?
                .broadcast_as((b, kvh, h / kvh, s, hd))?
                .contiguous()?
                .reshape((b, h, s, hd))?)
        };
        let (kb, vb) = (rep(&k)?, rep(&v)?);
        let mut mask = vec![0f32; t * s];
        for i in 0..t {
            for j in (i + 1)..t {
                mask[i * s + p + j] = -1e9;
            }
        }
        let mask = Tensor::from_vec(mask, (t, s), device)?;
        let scores = qb
            .matmul(&kb.t()?.contiguous()?)?
            .affine(1.0 / (hd as f64).sqrt(), 0.0)?
            .broadcast_add(&mask)?;
        let probs = super::super::model::softmax_last_dim(&scores)?;
        let basic = probs.matmul(&vb)?.transpose(1, 2)?.contiguous()?;
        compare("attention output", &fused, &basic)?;
        let gf = (&fused * &w)?.sum_all()?.backward()?;
        let gb = (&basic * &w)?.sum_all()?.backward()?;
        for (name, var) in [("dq", &q), ("dk", &k), ("dv", &v)] {
            let a = gf.get(var).ok_or_else(|| anyhow!("no fused {name}"))?;
            let c = gb.get(var).ok_or_else(|| anyhow!("no basic {name}"))?;
            compare(&format!("attention {name}"), a, c)?;
        }

        let (n, vocab) = (7usize, 300usize);
        let x = Var::from_tensor(&(rnd(&[n, vocab])? * 4.0)?)?;
        let targets = Tensor::from_vec(
            (0..n as u32).map(|i| (i * 41) % vocab as u32).collect(),
            n,
            device,
        )?;
        let g = rnd(&[n])?;
        let nf = kern.cross_entropy(&x, &targets)?;
        let nb = super::super::model::nll_per_position(&x, &targets)?;
        compare("cross-entropy", &nf, &nb)?;
        let gf = (&nf * &g)?.sum_all()?.backward()?;
        let gb = (&nb * &g)?.sum_all()?.backward()?;
        compare(
            "cross-entropy gradient",
            gf.get(&x).ok_or_else(|| anyhow!("no fused dlogits"))?,
            gb.get(&x).ok_or_else(|| anyhow!("no basic dlogits"))?,
        )?;

        let half = hd / 2;
        let ang = (Tensor::rand(0f32, 6.0, (t, half), device))?;
        let (cos, sin) = (ang.cos()?, ang.sin()?);
        for interleaved in [false, true] {
            let x = Var::from_tensor(&rnd(&[b, t, h, hd])?)?;
            let rf = kern.rope(&x, &cos, &sin, interleaved)?;
            let rb = super::super::model::rope(&x.transpose(1, 2)?, &cos, &sin, interleaved)?
                .transpose(1, 2)?
                .contiguous()?;
            compare("rope", &rf, &rb)?;
            let w = rnd(&[b, t, h, hd])?;
            let gf = (&rf * &w)?.sum_all()?.backward()?;
            let gb = (&rb * &w)?.sum_all()?.backward()?;
            compare(
                "rope gradient",
                gf.get(&x).ok_or_else(|| anyhow!("no fused rope grad"))?,
                gb.get(&x).ok_or_else(|| anyhow!("no basic rope grad"))?,
            )?;
        }
        Ok(())
    }
}
