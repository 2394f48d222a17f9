// curate's fused CUDA kernels for training (NVRTC-compiled at run time, see cuda_ops.rs):
// causal attention (forward, and backward as a dQ and a dK/dV kernel, FlashAttention-2
// style: the [T, S] score matrix is never stored), cross-entropy on logits (forward and
// backward) and rotary embeddings (a rotation and its transpose).
//
// The host prepends `#define HD <head dim>`. Only plain CUDA C is used (no warp
// intrinsics, no dynamic shared memory), so tests/cuda_kernels.rs can run this very file
// on the CPU with a small emulation header (one thread per CUDA thread, a barrier for
// __syncthreads) and compare it with a double-precision reference.
//
// Layouts (all contiguous f32): q [B, T, H, HD]; k, v [B, S, KVH, HD] with S = P + T
// (P prefix slots, visible to every query, then the T tokens, causal); o, dq like q;
// dk, dv like k; lse [B, H, T] (natural-log sum of exp of the scaled scores per query).
// Query head h reads key/value head h / (H / KVH) (grouped-query attention).

#ifndef HD
#define HD 64
#endif
#define ATT_BQ 64  // queries per block (forward, dQ): one thread each
// Tiles sized so that static shared memory stays under 48 KB up to HD = 128.
#define ATT_BK (HD > 64 ? 32 : 64)  // keys per shared-memory tile (forward, dQ)
#define DKV_BK 32                   // keys per block (dK/dV): one thread each
#define DKV_BQ (HD > 64 ? 8 : 16)   // queries per shared-memory tile (dK/dV)
#define NEG_BIG (-1e30f)

// Whether key j is visible to query i.
__device__ __forceinline__ bool curate_visible(int i, int j, int P) {
    return j < P || j - P <= i;
}

// Keys and values j0 .. j0 + ATT_BK - 1 of kv head g into shared tiles (zeros past S), by
// all threads of the block together (the forward and dQ kernels).
__device__ __forceinline__ void curate_load_kv(float ks[ATT_BK][HD], float vs[ATT_BK][HD],
                                               const float* __restrict__ k, const float* __restrict__ v,
                                               int b, int S, int KVH, int g, int j0) {
    for (int idx = threadIdx.x; idx < ATT_BK * HD; idx += blockDim.x) {
        const int r = idx / HD, d = idx % HD, j = j0 + r;
        const long off = (((long)b * S + j) * KVH + g) * HD + d;
        ks[r][d] = j < S ? k[off] : 0.0f;
        vs[r][d] = j < S ? v[off] : 0.0f;
    }
}

extern "C" __global__ void curate_attn_fwd(const float* __restrict__ q, const float* __restrict__ k,
                                           const float* __restrict__ v, float* __restrict__ o,
                                           float* __restrict__ lse, int T, int S, int P, int H,
                                           int KVH, float scale) {
    __shared__ float ks[ATT_BK][HD];
    __shared__ float vs[ATT_BK][HD];
    const int b = blockIdx.z, h = blockIdx.y;
    const int g = h / (H / KVH);
    const int i = blockIdx.x * ATT_BQ + threadIdx.x;
    const bool active = i < T;
    float qr[HD], acc[HD];
    float m = NEG_BIG, l = 0.0f;
    const long qoff = (((long)b * T + (active ? i : 0)) * H + h) * HD;
#pragma unroll
    for (int d = 0; d < HD; d++) {
        qr[d] = active ? q[qoff + d] : 0.0f;
        acc[d] = 0.0f;
    }
    int last_q = blockIdx.x * ATT_BQ + ATT_BQ - 1;
    if (last_q > T - 1) last_q = T - 1;
    const int jend = P + last_q + 1;  // keys [0, jend) are visible to some query here
    for (int j0 = 0; j0 < jend; j0 += ATT_BK) {
        curate_load_kv(ks, vs, k, v, b, S, KVH, g, j0);
        __syncthreads();
        if (active) {
            for (int r = 0; r < ATT_BK; r++) {
                const int j = j0 + r;
                if (j >= S || !curate_visible(i, j, P)) continue;
                float s = 0.0f;
#pragma unroll
                for (int d = 0; d < HD; d++) s += qr[d] * ks[r][d];
                s *= scale;
                if (s > m) {
                    const float c = expf(m - s);
                    l *= c;
#pragma unroll
                    for (int d = 0; d < HD; d++) acc[d] *= c;
                    m = s;
                }
                const float p = expf(s - m);
                l += p;
#pragma unroll
                for (int d = 0; d < HD; d++) acc[d] += p * vs[r][d];
            }
        }
        __syncthreads();
    }
    if (active) {
        const float inv = 1.0f / l;
#pragma unroll
        for (int d = 0; d < HD; d++) o[qoff + d] = acc[d] * inv;
        lse[((long)b * H + h) * T + i] = m + logf(l);
    }
}

// dQ: one thread per query. D_i = dO_i . O_i; P_ij = exp(s_ij - lse_i);
// dS_ij = P_ij (dO_i . v_j - D_i); dq_i = scale * sum_j dS_ij k_j.
extern "C" __global__ void curate_attn_dq(const float* __restrict__ q, const float* __restrict__ k,
                                          const float* __restrict__ v, const float* __restrict__ o,
                                          const float* __restrict__ dout, const float* __restrict__ lse,
                                          float* __restrict__ dq, int T, int S, int P, int H, int KVH,
                                          float scale) {
    __shared__ float ks[ATT_BK][HD];
    __shared__ float vs[ATT_BK][HD];
    const int b = blockIdx.z, h = blockIdx.y;
    const int g = h / (H / KVH);
    const int i = blockIdx.x * ATT_BQ + threadIdx.x;
    const bool active = i < T;
    float qr[HD], dor[HD], acc[HD];
    const long qoff = (((long)b * T + (active ? i : 0)) * H + h) * HD;
    float di = 0.0f;
#pragma unroll
    for (int d = 0; d < HD; d++) {
        qr[d] = active ? q[qoff + d] : 0.0f;
        dor[d] = active ? dout[qoff + d] : 0.0f;
        di += dor[d] * (active ? o[qoff + d] : 0.0f);
        acc[d] = 0.0f;
    }
    const float li = active ? lse[((long)b * H + h) * T + i] : 0.0f;
    int last_q = blockIdx.x * ATT_BQ + ATT_BQ - 1;
    if (last_q > T - 1) last_q = T - 1;
    const int jend = P + last_q + 1;
    for (int j0 = 0; j0 < jend; j0 += ATT_BK) {
        curate_load_kv(ks, vs, k, v, b, S, KVH, g, j0);
        __syncthreads();
        if (active) {
            for (int r = 0; r < ATT_BK; r++) {
                const int j = j0 + r;
                if (j >= S || !curate_visible(i, j, P)) continue;
                float s = 0.0f, dp = 0.0f;
#pragma unroll
                for (int d = 0; d < HD; d++) {
                    s += qr[d] * ks[r][d];
                    dp += dor[d] * vs[r][d];
                }
                const float p = expf(s * scale - li);
                const float ds = p * (dp - di) * scale;
#pragma unroll
                for (int d = 0; d < HD; d++) acc[d] += ds * ks[r][d];
            }
        }
        __syncthreads();
    }
    if (active) {
#pragma unroll
        for (int d = 0; d < HD; d++) dq[qoff + d] = acc[d];
    }
}

// dK, dV: one thread per key, summed over the H / KVH query heads that read it and over
// every query that sees it (in a fixed order: deterministic, no atomics).
// dv_j = sum_i P_ij dO_i; dk_j = scale * sum_i dS_ij q_i.
extern "C" __global__ void curate_attn_dkv(const float* __restrict__ q, const float* __restrict__ k,
                                           const float* __restrict__ v, const float* __restrict__ o,
                                           const float* __restrict__ dout, const float* __restrict__ lse,
                                           float* __restrict__ dk, float* __restrict__ dv, int T, int S,
                                           int P, int H, int KVH, float scale) {
    __shared__ float ks[DKV_BK][HD + 1];  // +1: each thread reads its own row, conflict-free
    __shared__ float vs[DKV_BK][HD + 1];
    __shared__ float qs[DKV_BQ][HD];
    __shared__ float dos[DKV_BQ][HD];
    __shared__ float ls[DKV_BQ];
    __shared__ float ds_[DKV_BQ];
    const int b = blockIdx.z, g = blockIdx.y;
    const int rep = H / KVH;
    const int j0 = blockIdx.x * DKV_BK;
    const int jt = threadIdx.x;
    const int j = j0 + jt;
    const bool active = j < S;
    for (int idx = threadIdx.x; idx < DKV_BK * HD; idx += blockDim.x) {
        const int r = idx / HD, d = idx % HD, jj = j0 + r;
        const long off = (((long)b * S + jj) * KVH + g) * HD + d;
        ks[r][d] = jj < S ? k[off] : 0.0f;
        vs[r][d] = jj < S ? v[off] : 0.0f;
    }
    float dka[HD], dva[HD];
#pragma unroll
    for (int d = 0; d < HD; d++) {
        dka[d] = 0.0f;
        dva[d] = 0.0f;
    }
    // The first query that sees any key of this block.
    const int ifirst = j0 < P ? 0 : j0 - P;
    for (int hh = 0; hh < rep; hh++) {
        const int h = g * rep + hh;
        for (int i0 = (ifirst / DKV_BQ) * DKV_BQ; i0 < T; i0 += DKV_BQ) {
            __syncthreads();  // the previous tile is no longer read (and ks/vs are loaded)
            for (int idx = threadIdx.x; idx < DKV_BQ * HD; idx += blockDim.x) {
                const int r = idx / HD, d = idx % HD, i = i0 + r;
                const long off = (((long)b * T + i) * H + h) * HD + d;
                qs[r][d] = i < T ? q[off] : 0.0f;
                dos[r][d] = i < T ? dout[off] : 0.0f;
            }
            for (int r = threadIdx.x; r < DKV_BQ; r += blockDim.x) {
                const int i = i0 + r;
                float di = 0.0f;
                if (i < T) {
                    const long off = (((long)b * T + i) * H + h) * HD;
                    for (int d = 0; d < HD; d++) di += dout[off + d] * o[off + d];
                }
                ds_[r] = di;
                ls[r] = i < T ? lse[((long)b * H + h) * T + i] : 0.0f;
            }
            __syncthreads();
            if (active) {
                for (int r = 0; r < DKV_BQ; r++) {
                    const int i = i0 + r;
                    if (i >= T || !curate_visible(i, j, P)) continue;
                    float s = 0.0f, dp = 0.0f;
#pragma unroll
                    for (int d = 0; d < HD; d++) {
                        s += qs[r][d] * ks[jt][d];
                        dp += dos[r][d] * vs[jt][d];
                    }
                    const float p = expf(s * scale - ls[r]);
                    const float dsc = p * (dp - ds_[r]) * scale;
#pragma unroll
                    for (int d = 0; d < HD; d++) {
                        dva[d] += p * dos[r][d];
                        dka[d] += dsc * qs[r][d];
                    }
                }
            }
        }
    }
    if (active) {
        const long off = (((long)b * S + j) * KVH + g) * HD;
#pragma unroll
        for (int d = 0; d < HD; d++) {
            dk[off + d] = dka[d];
            dv[off + d] = dva[d];
        }
    }
}

// Cross-entropy, one block of CE_THREADS per row of logits [N, V]: nll_n = lse_n - x[n, t_n].
#define CE_THREADS 256
extern "C" __global__ void curate_ce_fwd(const float* __restrict__ x, const unsigned int* __restrict__ t,
                                         float* __restrict__ nll, int V) {
    __shared__ float sm[CE_THREADS];
    __shared__ float ss[CE_THREADS];
    const long row = blockIdx.x;
    const float* xr = x + row * V;
    float m = NEG_BIG, s = 0.0f;
    for (int j = threadIdx.x; j < V; j += CE_THREADS) {
        const float xv = xr[j];
        if (xv > m) {
            s = s * expf(m - xv) + 1.0f;
            m = xv;
        } else {
            s += expf(xv - m);
        }
    }
    sm[threadIdx.x] = m;
    ss[threadIdx.x] = s;
    __syncthreads();
    for (int w = CE_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) {
            const float m1 = sm[threadIdx.x], m2 = sm[threadIdx.x + w];
            const float mm = m1 > m2 ? m1 : m2;
            ss[threadIdx.x] = ss[threadIdx.x] * expf(m1 - mm) + ss[threadIdx.x + w] * expf(m2 - mm);
            sm[threadIdx.x] = mm;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        unsigned int ti = t[row];
        if (ti >= (unsigned int)V) ti = V - 1;
        nll[row] = sm[0] + logf(ss[0]) - xr[ti];
    }
}

// dx[n, j] = (softmax(x_n)_j - [j == t_n]) * g_n, with lse_n = nll_n + x[n, t_n].
extern "C" __global__ void curate_ce_bwd(const float* __restrict__ x, const unsigned int* __restrict__ t,
                                         const float* __restrict__ nll, const float* __restrict__ gn,
                                         float* __restrict__ dx, int V) {
    const long row = blockIdx.x;
    const float* xr = x + row * V;
    float* dr = dx + row * V;
    unsigned int ti = t[row];
    if (ti >= (unsigned int)V) ti = V - 1;
    const float lse = nll[row] + xr[ti];
    const float g = gn[row];
    for (int j = threadIdx.x; j < V; j += CE_THREADS) {
        const float p = expf(xr[j] - lse);
        dr[j] = ((j == (int)ti) ? p - 1.0f : p) * g;
    }
}

// Rotary embedding of x [rows = B*T*H, HD] (position (row / H) % T) with cos, sin [T, HD/2];
// sgn = 1 rotates (forward), sgn = -1 applies the transpose (backward). Pairs (p, p + HD/2),
// or (2p, 2p + 1) when interleaved.
extern "C" __global__ void curate_rope(const float* __restrict__ x, const float* __restrict__ cs,
                                       const float* __restrict__ sn, float* __restrict__ y, long rows,
                                       int T, int H, float sgn, int interleaved) {
    const int half = HD / 2;
    const long n = rows * half;
    for (long e = (long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long)gridDim.x * blockDim.x) {
        const long row = e / half;
        const int p = (int)(e % half);
        const int pos = (int)((row / H) % T);
        const float c = cs[pos * half + p], s = sn[pos * half + p] * sgn;
        const long a = row * HD + (interleaved ? 2 * p : p);
        const long bb = row * HD + (interleaved ? 2 * p + 1 : p + half);
        const float x1 = x[a], x2 = x[bb];
        y[a] = x1 * c - x2 * s;
        y[bb] = x2 * c + x1 * s;
    }
}
