/* y = x @ w.T in float32 for a weight w [N, K] prepacked into panels of 48 of its rows, [N/48][K][48]
   (kernels.prepack): each step of k reads one contiguous row of 48 weights. A tile of up to 8 rows of x
   keeps its 8 x 48 sums in 24 vector registers (never in memory: an array initialiser cost a memset a
   tile); each weight is loaded once per tile and each x value broadcast once, so the loop is all
   multiply-adds. On SmolLM2's shapes (8-64 rows) oneDNN reaches 39-86% of this machine's 220 GFLOP/s,
   this 59-98%, and one row's weights stream at ~32 GB/s against ~22. native.py builds it; numba's
   threads call it (cpu_numba.panel_matmul, DecodeLayers), each with its own range of panels. */
#include <stdint.h>
#include <string.h>

#define PANEL 48
typedef float vf __attribute__((vector_size(64)));
#define INLINE static inline __attribute__((always_inline))

INLINE vf load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
INLINE void store(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* rows m0 ... m0+MR-1 of y, panel p's 48 columns; MR is a constant once inlined */
INLINE void tile(const int MR, const float *x, const float *w, float *y, int64_t K, int64_t N, int64_t m0, int64_t p) {
    vf acc[8][3];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = acc[i][2] = (vf){0};
    const float *panel = w + p * K * PANEL;
    for (int64_t k = 0; k < K; k++) {
        vf w0 = load(panel + k * PANEL), w1 = load(panel + k * PANEL + 16), w2 = load(panel + k * PANEL + 32);
        for (int i = 0; i < MR; i++) {
            vf xi = (vf){0} + x[(m0 + i) * K + k];
            acc[i][0] += xi * w0; acc[i][1] += xi * w1; acc[i][2] += xi * w2;
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 3; j++) store(y + (m0 + i) * N + p * PANEL + 16 * j, acc[i][j]);
}

/* x [M, K], y [M, N], both contiguous; panels p0 ... p1-1, each a weight row block reused (from L2)
   by every tile of rows */
void minfer_matmul_f32(const float *x, const float *w, float *y, int64_t M, int64_t K, int64_t N, int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
        int64_t m = 0;
        for (; m + 8 <= M; m += 8) tile(8, x, w, y, K, N, m, p);
        if (M - m >= 4) { tile(4, x, w, y, K, N, m, p); m += 4; }
        if (M - m >= 2) { tile(2, x, w, y, K, N, m, p); m += 2; }
        if (M - m >= 1) tile(1, x, w, y, K, N, m, p);
    }
}
