// Runs src/finetune/kernels.cu on the CPU (emu.h) and compares every kernel with a
// double-precision reference on random inputs. Built by tests/cuda_kernels.rs with
// -DHD=<head dim>; prints one line per check and exits 1 on any mismatch.
#include "emu.h"
#include "../../src/finetune/kernels.cu"

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float uniform() {  // splitmix64 -> [-1, 1)
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static std::vector<float> randv(size_t n, float amp) {
    std::vector<float> v(n);
    for (auto& x : v) x = uniform() * amp;
    return v;
}
static int failures = 0;
// Largest |got - want| over the largest |want|: float32 arithmetic lands far under 1e-4.
static void check(const char* what, const std::vector<float>& got, const std::vector<double>& want) {
    double err = 0, mag = 0;
    for (size_t i = 0; i < got.size(); i++) {
        if (!(fabs(got[i] - want[i]) <= err)) err = fabs(got[i] - want[i]);  // NaN -> fail
        if (fabs(want[i]) > mag) mag = fabs(want[i]);
    }
    const double rel = err / (mag > 0 ? mag : 1);
    const bool ok = rel < 1e-4;
    printf("%s %-40s rel err %.2e (max |ref| %.3g)\n", ok ? "ok  " : "FAIL", what, rel, mag);
    if (!ok) failures++;
}

static void attention(int B, int T, int H, int KVH, int P) {
    const int S = P + T, rep = H / KVH;
    const float scale = 1.0f / sqrtf((float)HD);
    auto q = randv((size_t)B * T * H * HD, 2.0f), k = randv((size_t)B * S * KVH * HD, 2.0f),
         v = randv((size_t)B * S * KVH * HD, 1.0f), dout = randv((size_t)B * T * H * HD, 1.0f);
    std::vector<float> o(q.size(), NAN), lse((size_t)B * H * T, NAN), dq(q.size(), NAN),
        dk(k.size(), NAN), dv(v.size(), NAN);
    dim3 grid{(unsigned)((T + ATT_BQ - 1) / ATT_BQ), (unsigned)H, (unsigned)B};
    emu_launch(grid, dim3{ATT_BQ, 1, 1}, [&] {
        curate_attn_fwd(q.data(), k.data(), v.data(), o.data(), lse.data(), T, S, P, H, KVH, scale);
    });
    emu_launch(grid, dim3{ATT_BQ, 1, 1}, [&] {
        curate_attn_dq(q.data(), k.data(), v.data(), o.data(), dout.data(), lse.data(), dq.data(), T, S, P,
                       H, KVH, scale);
    });
    dim3 gkv{(unsigned)((S + DKV_BK - 1) / DKV_BK), (unsigned)KVH, (unsigned)B};
    emu_launch(gkv, dim3{DKV_BK, 1, 1}, [&] {
        curate_attn_dkv(q.data(), k.data(), v.data(), o.data(), dout.data(), lse.data(), dk.data(),
                        dv.data(), T, S, P, H, KVH, scale);
    });
    std::vector<double> ro(o.size()), rl(lse.size()), rdq(q.size()), rdk(k.size(), 0), rdv(v.size(), 0);
    auto Q = [&](int b, int i, int h, int d) { return (double)q[(((size_t)b * T + i) * H + h) * HD + d]; };
    auto K = [&](int b, int j, int g, int d) { return (double)k[(((size_t)b * S + j) * KVH + g) * HD + d]; };
    auto V = [&](int b, int j, int g, int d) { return (double)v[(((size_t)b * S + j) * KVH + g) * HD + d]; };
    auto DO = [&](int b, int i, int h, int d) { return (double)dout[(((size_t)b * T + i) * H + h) * HD + d]; };
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const int g = h / rep;
                std::vector<double> s(S, -INFINITY), p(S, 0), dp(S, 0);
                double mx = -INFINITY;
                for (int j = 0; j < S; j++)
                    if (j < P || j - P <= i) {
                        double a = 0;
                        for (int d = 0; d < HD; d++) a += Q(b, i, h, d) * K(b, j, g, d);
                        s[j] = a * scale;
                        if (s[j] > mx) mx = s[j];
                    }
                double sum = 0;
                for (int j = 0; j < S; j++) sum += (p[j] = s[j] == -INFINITY ? 0 : exp(s[j] - mx));
                for (int j = 0; j < S; j++) p[j] /= sum;
                rl[((size_t)b * H + h) * T + i] = mx + log(sum);
                double di = 0;
                for (int d = 0; d < HD; d++) {
                    double a = 0;
                    for (int j = 0; j < S; j++) a += p[j] * V(b, j, g, d);
                    ro[(((size_t)b * T + i) * H + h) * HD + d] = a;
                }
                for (int j = 0; j < S; j++) {
                    for (int d = 0; d < HD; d++) dp[j] += DO(b, i, h, d) * V(b, j, g, d);
                    di += p[j] * dp[j];
                }
                for (int j = 0; j < S; j++) {
                    const double ds = p[j] * (dp[j] - di) * scale;
                    for (int d = 0; d < HD; d++) {
                        rdq[(((size_t)b * T + i) * H + h) * HD + d] += ds * K(b, j, g, d);
                        rdk[(((size_t)b * S + j) * KVH + g) * HD + d] += ds * Q(b, i, h, d);
                        rdv[(((size_t)b * S + j) * KVH + g) * HD + d] += p[j] * DO(b, i, h, d);
                    }
                }
            }
    char name[128];
    snprintf(name, sizeof name, "attn B%d T%d H%d KVH%d P%d HD%d: o", B, T, H, KVH, P, HD);
    check(name, o, ro);
    snprintf(name, sizeof name, "attn B%d T%d H%d KVH%d P%d HD%d: lse", B, T, H, KVH, P, HD);
    check(name, lse, rl);
    snprintf(name, sizeof name, "attn B%d T%d H%d KVH%d P%d HD%d: dq", B, T, H, KVH, P, HD);
    check(name, dq, rdq);
    snprintf(name, sizeof name, "attn B%d T%d H%d KVH%d P%d HD%d: dk", B, T, H, KVH, P, HD);
    check(name, dk, rdk);
    snprintf(name, sizeof name, "attn B%d T%d H%d KVH%d P%d HD%d: dv", B, T, H, KVH, P, HD);
    check(name, dv, rdv);
}

static void cross_entropy(int N, int V) {
    auto x = randv((size_t)N * V, 8.0f), g = randv(N, 1.0f);
    std::vector<unsigned int> t(N);
    for (int n = 0; n < N; n++) t[n] = (unsigned)((uniform() + 1.0f) * 0.5f * V) % V;
    std::vector<float> nll(N, NAN), dx(x.size(), NAN);
    emu_launch(dim3{(unsigned)N, 1, 1}, dim3{CE_THREADS, 1, 1}, [&] { curate_ce_fwd(x.data(), t.data(), nll.data(), V); });
    emu_launch(dim3{(unsigned)N, 1, 1}, dim3{CE_THREADS, 1, 1},
               [&] { curate_ce_bwd(x.data(), t.data(), nll.data(), g.data(), dx.data(), V); });
    std::vector<double> rn(N), rd(x.size());
    for (int n = 0; n < N; n++) {
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, (double)x[(size_t)n * V + j]);
        for (int j = 0; j < V; j++) s += exp(x[(size_t)n * V + j] - mx);
        const double lse = mx + log(s);
        rn[n] = lse - x[(size_t)n * V + t[n]];
        for (int j = 0; j < V; j++) rd[(size_t)n * V + j] = (exp(x[(size_t)n * V + j] - lse) - (j == (int)t[n])) * g[n];
    }
    char name[96];
    snprintf(name, sizeof name, "cross-entropy N%d V%d: nll", N, V);
    check(name, nll, rn);
    snprintf(name, sizeof name, "cross-entropy N%d V%d: dlogits", N, V);
    check(name, dx, rd);
}

static void rope(int B, int T, int H, int interleaved) {
    const int half = HD / 2;
    auto x = randv((size_t)B * T * H * HD, 1.0f), cs = randv((size_t)T * half, 1.0f), sn(cs);
    for (size_t i = 0; i < cs.size(); i++) {  // real angles: cos^2 + sin^2 = 1
        const double a = (uniform() + 1.0) * 3.14159;
        cs[i] = (float)cos(a);
        sn[i] = (float)sin(a);
    }
    const long rows = (long)B * T * H;
    std::vector<float> y(x.size(), NAN), back(x.size(), NAN);
    emu_launch(dim3{4, 1, 1}, dim3{64, 1, 1}, [&] { curate_rope(x.data(), cs.data(), sn.data(), y.data(), rows, T, H, 1.0f, interleaved); });
    emu_launch(dim3{4, 1, 1}, dim3{64, 1, 1}, [&] { curate_rope(y.data(), cs.data(), sn.data(), back.data(), rows, T, H, -1.0f, interleaved); });
    std::vector<double> ry(x.size()), rx(x.begin(), x.end());
    for (long r = 0; r < rows; r++) {
        const int pos = (int)((r / H) % T);
        for (int p = 0; p < half; p++) {
            const size_t a = r * HD + (interleaved ? 2 * p : p), b = r * HD + (interleaved ? 2 * p + 1 : p + half);
            const double c = cs[pos * half + p], s = sn[pos * half + p];
            ry[a] = x[a] * c - x[b] * s;
            ry[b] = x[b] * c + x[a] * s;
        }
    }
    char name[96];
    snprintf(name, sizeof name, "rope B%d T%d H%d interleaved %d: rotate", B, T, H, interleaved);
    check(name, y, ry);
    snprintf(name, sizeof name, "rope B%d T%d H%d interleaved %d: transpose", B, T, H, interleaved);
    check(name, back, rx);
}

int main() {
    attention(2, 70, 6, 2, 0);   // two query tiles, the second partial; grouped-query
    attention(1, 33, 3, 3, 5);   // prefix slots, one head per kv head
    attention(1, 130, 2, 1, 40); // keys across five dK/dV blocks, multi-query
    if (HD > 64) attention(1, 70, 2, 2, 0);
    cross_entropy(5, 1000);
    cross_entropy(3, 50);        // fewer logits than threads
    rope(2, 9, 3, 0);
    rope(1, 5, 2, 1);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
