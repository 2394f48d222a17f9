//! The optimizer step as three CUDA kernels instead of ~20 candle ops per variable.
//!
//! With candle ops, clipping and AdamW cost about 20 kernel launches per trainable tensor
//! (SmolLM2 LoRA on q and v: 120 tensors, ~2,500 launches a step, more than the forward
//! pass). Here, per step: one sum-of-squares launch per tensor (deterministic block
//! partials, no atomics), one launch that adds the partials in f64 in order and writes the
//! norm and the clipping factor `min(1, max_norm / norm)`, and one AdamW launch per tensor
//! that updates the weights and both moments in place. The arithmetic is candle's op by op
//! (multiplications by `1/bc`, `+ eps`, decoupled decay; compiled without FMA
//! contraction), so only the order of the sum of squares differs from the candle-ops path.
//!
//! Compiled at run time by NVRTC (in every CUDA install). `CURATE_FUSED_ADAMW=0` turns it
//! off; a failure to compile or load falls back to candle ops with a warning.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use candle_core::{DType, Device, Storage, Tensor, Var};

use super::config::TrainConfig;

const SOURCE: &str = r#"
extern "C" __global__ void curate_sumsq(const float* g, unsigned long long n, float* out) {
    __shared__ float s[256];
    float acc = 0.0f;
    for (unsigned long long i = blockIdx.x * 256ull + threadIdx.x; i < n; i += 256ull * gridDim.x) {
        float x = g[i];
        acc += x * x;
    }
    s[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned int k = 128; k > 0; k >>= 1) {
        if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

extern "C" __global__ void curate_clip(const float* partial, unsigned int n, double max_norm,
                                       double* norm, float* scale) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double sq = 0.0;
    for (unsigned int i = 0; i < n; i++) sq += (double)partial[i];
    double r = sqrt(sq);
    norm[0] = r;
    scale[0] = (max_norm > 0.0 && r > max_norm) ? (float)(max_norm / r) : 1.0f;
}

extern "C" __global__ void curate_adamw(float* theta, float* m, float* v, const float* g,
                                        const float* scale, unsigned long long n, float b1, float c1,
                                        float b2, float c2, float ibc1, float ibc2, float eps,
                                        float lr, float keep) {
    float s = scale[0];
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float gi = g[i] * s;
        float mi = m[i] * b1 + gi * c1;
        float vi = v[i] * b2 + (gi * gi) * c2;
        m[i] = mi;
        v[i] = vi;
        float update = (mi * ibc1) / (sqrtf(vi * ibc2) + eps);
        theta[i] = theta[i] * keep - update * lr;
    }
}
"#;

/// Whether the fused optimizer may be used (`CURATE_FUSED_ADAMW=0` turns it off).
pub fn enabled() -> bool {
    std::env::var("CURATE_FUSED_ADAMW").map_or(true, |v| v != "0")
}

/// AdamW with global-norm clipping, as CUDA kernels; the state lives on the GPU.
pub struct FusedAdamW {
    stream: Arc<CudaStream>,
    sumsq: CudaFunction,
    clip: CudaFunction,
    adamw: CudaFunction,
    m: Vec<CudaSlice<f32>>,
    v: Vec<CudaSlice<f32>>,
    /// Per tensor: its first slot in `partial` and its number of blocks.
    blocks: Vec<(usize, u32)>,
    partial: CudaSlice<f32>,
    scale: CudaSlice<f32>,
    t: i32,
}

/// Blocks of 256 threads for the sum of squares of `n` values (each thread ~16 values, at most 256 blocks).
fn sumsq_blocks(n: usize) -> u32 {
    n.div_ceil(256 * 16).clamp(1, 256) as u32
}

/// Launch shape for an element-wise pass over `n` values.
fn elementwise(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256).clamp(1, 65_535) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Run `f` with the f32 CUDA slice of a contiguous tensor, from its first element.
fn with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&candle_core::cuda_backend::cudarc::driver::CudaView<'_, f32>) -> Result<R>,
) -> Result<R> {
    if t.dtype() != DType::F32 || !t.is_contiguous() {
        bail!("fused optimizer: expected a contiguous f32 tensor");
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else {
        bail!("fused optimizer: tensor not on a CUDA device");
    };
    let slice = cs.as_cuda_slice::<f32>()?;
    let start = layout.start_offset();
    let view = slice.slice(start..start + t.elem_count());
    f(&view)
}

impl FusedAdamW {
    /// Compile the kernels, check them on a small case ([`self_test`]) and allocate
    /// zeroed moments for `vars`.
    pub fn new(device: &Device, vars: &[(String, Var)]) -> Result<FusedAdamW> {
        self_test(device)?;
        FusedAdamW::unchecked(device, vars)
    }

    fn unchecked(device: &Device, vars: &[(String, Var)]) -> Result<FusedAdamW> {
        let Device::Cuda(dev) = device else {
            bail!("fused optimizer: not a CUDA device");
        };
        let stream = dev.cuda_stream();
        let opts = CompileOptions {
            fmad: Some(false),
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(SOURCE, opts).map_err(|e| anyhow!("NVRTC: {e:?}"))?;
        let module = stream.context().load_module(ptx)?;
        let sumsq = module.load_function("curate_sumsq")?;
        let clip = module.load_function("curate_clip")?;
        let adamw = module.load_function("curate_adamw")?;
        let (mut m, mut v, mut blocks) = (Vec::new(), Vec::new(), Vec::new());
        let mut slots = 0;
        for (_, var) in vars {
            let n = var.elem_count();
            m.push(stream.alloc_zeros::<f32>(n)?);
            v.push(stream.alloc_zeros::<f32>(n)?);
            let b = sumsq_blocks(n);
            blocks.push((slots, b));
            slots += b as usize;
        }
        let partial = stream.alloc_zeros::<f32>(slots.max(1))?;
        let scale = stream.alloc_zeros::<f32>(1)?;
        Ok(FusedAdamW {
            stream,
            sumsq,
            clip,
            adamw,
            m,
            v,
            blocks,
            partial,
            scale,
            t: 0,
        })
    }

    /// Clip `grads` to `max_grad_norm` and apply one AdamW step at `lr` to `vars` (in
    /// place; the variables it was made for). Returns the global gradient norm before
    /// clipping (an f64 scalar on the device, read later).
    pub fn step(
        &mut self,
        vars: &[(String, Var)],
        grads: &[Tensor],
        lr: f64,
        cfg: &TrainConfig,
    ) -> Result<Tensor> {
        if grads.len() != self.m.len() {
            bail!(
                "fused optimizer: {} gradients for {} variables",
                grads.len(),
                self.m.len()
            );
        }
        self.t += 1;
        let bc1 = 1.0 - cfg.beta1.powi(self.t);
        let bc2 = 1.0 - cfg.beta2.powi(self.t);
        let grads: Vec<Tensor> = grads
            .iter()
            .map(|g| g.contiguous())
            .collect::<candle_core::Result<_>>()?;
        for (g, &(slot, nb)) in grads.iter().zip(&self.blocks) {
            let n = g.elem_count() as u64;
            let mut out = self.partial.slice_mut(slot..slot + nb as usize);
            with_f32(g, |gv| {
                let mut b = self.stream.launch_builder(&self.sumsq);
                b.arg(gv).arg(&n).arg(&mut out);
                let cfg = LaunchConfig {
                    grid_dim: (nb, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: the kernel reads n floats of g and writes nb floats of `out`.
                unsafe { b.launch(cfg) }?;
                Ok(())
            })?;
        }
        let device = match vars.first() {
            Some((_, v)) => v.device().clone(),
            None => bail!("fused optimizer: no variables"),
        };
        let norm = Tensor::zeros((), DType::F64, &device)?;
        {
            let (storage, _) = norm.storage_and_layout();
            let Storage::Cuda(cs) = &*storage else {
                bail!("fused optimizer: norm not on the GPU");
            };
            let norm_slice = cs.as_cuda_slice::<f64>()?;
            let slots = self.partial.len() as u32;
            let max_norm = cfg.max_grad_norm;
            let mut b = self.stream.launch_builder(&self.clip);
            b.arg(&self.partial)
                .arg(&slots)
                .arg(&max_norm)
                .arg(norm_slice)
                .arg(&mut self.scale);
            // SAFETY: one thread reads `slots` partials and writes one f64 and one f32.
            unsafe { b.launch(LaunchConfig::for_num_elems(1)) }?;
        }
        let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
        let (c1, c2) = ((1.0 - cfg.beta1) as f32, (1.0 - cfg.beta2) as f32);
        let (ibc1, ibc2) = ((1.0 / bc1) as f32, (1.0 / bc2) as f32);
        let eps = cfg.adam_eps as f32;
        let lr32 = lr as f32;
        for (i, ((name, var), g)) in vars.iter().zip(&grads).enumerate() {
            let decay = if var.rank() >= 2 && name != "prompt_embeddings" {
                cfg.weight_decay
            } else {
                0.0
            };
            let keep = (1.0 - lr * decay) as f32;
            let n = var.elem_count() as u64;
            let theta = var.as_tensor();
            if g.dims() != theta.dims() {
                bail!("fused optimizer: gradient of {name} has shape {:?}", g.dims());
            }
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            with_f32(theta, |tv| {
                with_f32(g, |gv| {
                    let mut b = self.stream.launch_builder(&self.adamw);
                    b.arg(tv)
                        .arg(&mut *m)
                        .arg(&mut *v)
                        .arg(gv)
                        .arg(&self.scale)
                        .arg(&n)
                        .arg(&b1)
                        .arg(&c1)
                        .arg(&b2)
                        .arg(&c2)
                        .arg(&ibc1)
                        .arg(&ibc2)
                        .arg(&eps)
                        .arg(&lr32)
                        .arg(&keep);
                    // SAFETY: n elements of theta, m, v, g (same length, checked above);
                    // theta is the variable's own storage, updated in place on this stream.
                    unsafe { b.launch(elementwise(n as usize)) }?;
                    Ok(())
                })
            })?;
        }
        Ok(norm)
    }
}

/// Run the kernels on a small case (two variables, clipping active, two steps) and compare
/// with the same arithmetic on the host: a kernel that fails to load or launch, or computes
/// something else, is found before training (the caller then uses candle ops).
pub fn self_test(device: &Device) -> Result<()> {
    let cfg = TrainConfig {
        max_grad_norm: 0.5,
        ..TrainConfig::default()
    };
    let shapes: [&[usize]; 2] = [&[3, 5], &[7]];
    let mut theta: Vec<Vec<f32>> = Vec::new();
    let mut vars = Vec::new();
    for (k, shape) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f32 - 4.0) * 0.1 + k as f32).collect();
        vars.push((format!("v{k}"), Var::from_vec(v.clone(), *shape, device)?));
        theta.push(v);
    }
    let mut opt = FusedAdamW::unchecked(device, &vars)?;
    let (mut m, mut v): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (
        theta.iter().map(|t| vec![0.0; t.len()]).collect(),
        theta.iter().map(|t| vec![0.0; t.len()]).collect(),
    );
    for step in 1..=2 {
        let lr = 1e-2 * step as f64;
        let grads: Vec<Vec<f32>> = theta
            .iter()
            .enumerate()
            .map(|(k, t)| {
                (0..t.len())
                    .map(|i| ((i * 7 + k) % 5) as f32 * 0.3 - 0.6)
                    .collect()
            })
            .collect();
        let tensors: Vec<Tensor> = grads
            .iter()
            .zip(&shapes)
            .map(|(g, s)| Tensor::from_vec(g.clone(), *s, device))
            .collect::<candle_core::Result<_>>()?;
        let norm = opt.step(&vars, &tensors, lr, &cfg)?.to_scalar::<f64>()?;
        let sq: f64 = grads.iter().flatten().map(|&x| (x * x) as f64).sum();
        let want = sq.sqrt();
        if (norm - want).abs() > 1e-5 * want {
            bail!("fused optimizer self-test: gradient norm {norm}, expected {want}");
        }
        let scale = if want > cfg.max_grad_norm {
            (cfg.max_grad_norm / want) as f32
        } else {
            1.0
        };
        let bc1 = (1.0 / (1.0 - cfg.beta1.powi(step))) as f32;
        let bc2 = (1.0 / (1.0 - cfg.beta2.powi(step))) as f32;
        for (k, (_, var)) in vars.iter().enumerate() {
            let keep = if var.rank() >= 2 {
                (1.0 - lr * cfg.weight_decay) as f32
            } else {
                1.0
            };
            let got: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
            for i in 0..theta[k].len() {
                let g = grads[k][i] * scale;
                m[k][i] = m[k][i] * cfg.beta1 as f32 + g * (1.0 - cfg.beta1) as f32;
                v[k][i] = v[k][i] * cfg.beta2 as f32 + (g * g) * (1.0 - cfg.beta2) as f32;
                let update = (m[k][i] * bc1) / ((v[k][i] * bc2).sqrt() + cfg.adam_eps as f32);
                theta[k][i] = theta[k][i] * keep - update * lr as f32;
                if (got[i] - theta[k][i]).abs() > 1e-6 {
                    bail!(
                        "fused optimizer self-test: step {step}, v{k}[{i}] = {}, expected {}",
                        got[i],
                        theta[k][i]
                    );
                }
            }
        }
    }
    Ok(())
}
