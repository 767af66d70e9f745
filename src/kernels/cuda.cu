// The fused kernels on CUDA (f32): the GPU side of src/kernels/cuda.rs, compiled to PTX by
// build.rs with nvcc when the `cuda` feature is on. Each kernel mirrors a CPU kernel of
// src/kernels (same formulas, same order of operations per row where it matters); the matrix
// products themselves go to cuBLAS through candle.

#include <stdint.h>

#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// `scratch` holds 32 floats; the leading barrier lets consecutive calls reuse it.
__device__ float block_sum(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.f;
    for (int w = 0; w < warps; ++w) total += scratch[w];
    return total;
}

// Max over the block, as block_sum.
__device__ float block_max(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int w = 0; w < warps; ++w) m = fmaxf(m, scratch[w]);
    return m;
}

// ---- LayerNorm -------------------------------------------------------------------------

// y = LN(x [+ r]) · w + b, one block per row of width d; wb is [2, d] (scale; shift).
extern "C" __global__ void layer_norm_fwd(const float *x, const float *r, int has_r, const float *wb, float *y,
                                          int d, float eps) {
    __shared__ float scratch[32];
    const size_t row = blockIdx.x;
    const float *xr = x + row * d, *rr = r + row * d;
    float *yr = y + row * d;
    float s = 0.f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) s += xr[c] + (has_r ? rr[c] : 0.f);
    const float mean = block_sum(s, scratch) / d;
    float q = 0.f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        const float v = xr[c] + (has_r ? rr[c] : 0.f) - mean;
        q += v * v;
    }
    const float rstd = 1.f / sqrtf(block_sum(q, scratch) / d + eps);
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        const float v = xr[c] + (has_r ? rr[c] : 0.f);
        yr[c] = (v - mean) * rstd * wb[c] + wb[d + c];
    }
}

// Columns a thread of layer_norm_bwd keeps scale and shift gradients for: d ≤ LN_COLS · blockDim.
#define LN_COLS 16

// For the rows [blockIdx.x · rows_per_block, …) of the input s (already summed with its
// residual) and output gradients g: dx, and this block's partial scale and shift gradients
// into partial[blockIdx.x] ([2, d]).
extern "C" __global__ void layer_norm_bwd(const float *s, const float *g, const float *wb, float *dx,
                                          float *partial, int n, int d, int rows_per_block, float eps) {
    __shared__ float scratch[32];
    float dw[LN_COLS], db[LN_COLS];
    for (int k = 0; k < LN_COLS; ++k) dw[k] = db[k] = 0.f;
    const int first = blockIdx.x * rows_per_block;
    const int last = min(n, first + rows_per_block);
    for (int row = first; row < last; ++row) {
        const float *sr = s + (size_t)row * d, *gr = g + (size_t)row * d;
        float *dxr = dx + (size_t)row * d;
        float acc = 0.f;
        for (int c = threadIdx.x; c < d; c += blockDim.x) acc += sr[c];
        const float mean = block_sum(acc, scratch) / d;
        acc = 0.f;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            const float v = sr[c] - mean;
            acc += v * v;
        }
        const float rstd = 1.f / sqrtf(block_sum(acc, scratch) / d + eps);
        float sum_gh = 0.f, sum_gh_xh = 0.f;
        for (int c = threadIdx.x, k = 0; c < d; c += blockDim.x, ++k) {
            const float xh = (sr[c] - mean) * rstd, gh = gr[c] * wb[c];
            dw[k] += gr[c] * xh;
            db[k] += gr[c];
            sum_gh += gh;
            sum_gh_xh += gh * xh;
        }
        const float mean_gh = block_sum(sum_gh, scratch) / d;
        const float mean_gh_xh = block_sum(sum_gh_xh, scratch) / d;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            const float xh = (sr[c] - mean) * rstd;
            dxr[c] = rstd * (gr[c] * wb[c] - mean_gh - xh * mean_gh_xh);
        }
    }
    float *p = partial + (size_t)blockIdx.x * 2 * d;
    for (int c = threadIdx.x, k = 0; c < d; c += blockDim.x, ++k) {
        p[c] = dw[k];
        p[d + c] = db[k];
    }
}

// Columns each lane of layer_norm_bwd_warps holds (rows of at most 32 · WARP_COLS = 1024).
#define WARP_COLS 32
// Warps per block of layer_norm_bwd_warps (blockDim.x = 32 · LN_WARPS).
#define LN_WARPS 8

// layer_norm_bwd for rows of at most 1024: one warp per row (no block-wide barriers inside a
// row), `rows_per_warp` rows per warp, the row and its gradient held in registers. Each warp
// keeps its scale and shift gradients per column; the block adds its warps' in warp order
// into partial[blockIdx.x] ([2, d]).
extern "C" __global__ void layer_norm_bwd_warps(const float *s, const float *g, const float *wb, float *dx,
                                                float *partial, int n, int d, int rows_per_warp, float eps) {
    __shared__ float acc[LN_WARPS][2][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float dw[WARP_COLS], db[WARP_COLS];
#pragma unroll
    for (int k = 0; k < WARP_COLS; ++k) dw[k] = db[k] = 0.f;
    const int first = (blockIdx.x * LN_WARPS + warp) * rows_per_warp;
    const int last = min(n, first + rows_per_warp);
    for (int row = first; row < last; ++row) {
        const float *sr = s + (size_t)row * d, *gr = g + (size_t)row * d;
        float *dxr = dx + (size_t)row * d;
        float sv[WARP_COLS], gv[WARP_COLS];
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < WARP_COLS; ++k) {
            const int c = lane + 32 * k;
            sv[k] = c < d ? sr[c] : 0.f;
            gv[k] = c < d ? gr[c] : 0.f;
            sum += sv[k];
        }
        const float mean = warp_sum(sum) / d;
        float q = 0.f;
#pragma unroll
        for (int k = 0; k < WARP_COLS; ++k) {
            const float v = lane + 32 * k < d ? sv[k] - mean : 0.f;
            q += v * v;
        }
        const float rstd = 1.f / sqrtf(warp_sum(q) / d + eps);
        float sum_gh = 0.f, sum_gh_xh = 0.f;
#pragma unroll
        for (int k = 0; k < WARP_COLS; ++k) {
            const int c = lane + 32 * k;
            if (c < d) {
                const float xh = (sv[k] - mean) * rstd, gh = gv[k] * wb[c];
                dw[k] += gv[k] * xh;
                db[k] += gv[k];
                sum_gh += gh;
                sum_gh_xh += gh * xh;
            }
        }
        const float mean_gh = warp_sum(sum_gh) / d, mean_gh_xh = warp_sum(sum_gh_xh) / d;
#pragma unroll
        for (int k = 0; k < WARP_COLS; ++k) {
            const int c = lane + 32 * k;
            if (c < d) {
                const float xh = (sv[k] - mean) * rstd;
                dxr[c] = rstd * (gv[k] * wb[c] - mean_gh - xh * mean_gh_xh);
            }
        }
    }
    float *p = partial + (size_t)blockIdx.x * 2 * d;
#pragma unroll
    for (int k = 0; k < WARP_COLS; ++k) {
        if (32 * k >= d) break;
        acc[warp][0][lane] = dw[k];
        acc[warp][1][lane] = db[k];
        __syncthreads();
        const int c = lane + 32 * k;
        if (warp == 0 && c < d) {
            float x = 0.f, y = 0.f;
            for (int w = 0; w < LN_WARPS; ++w) {
                x += acc[w][0][lane];
                y += acc[w][1][lane];
            }
            p[c] = x;
            p[d + c] = y;
        }
        __syncthreads();
    }
}

// out[c] = Σ_i a[i · cols + c] over `rows` rows, summed in row order.
extern "C" __global__ void column_sum(const float *a, float *out, int rows, int cols) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.f;
    for (int i = 0; i < rows; ++i) s += a[(size_t)i * cols + c];
    out[c] = s;
}

// ---- GELU (exact, erf) -------------------------------------------------------------------

extern "C" __global__ void gelu_fwd(const float *x, float *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    }
}

extern "C" __global__ void gelu_bwd(const float *x, const float *g, float *o, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = x[i];
        const float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        o[i] = g[i] * (cdf + v * pdf);
    }
}

// ---- Attention softmax -----------------------------------------------------------------

// p = softmax(scale · scores + key_bias) over rows of s keys, one warp per row; rows are
// [batch, heads, s] and key_bias is [batch, s] (0, or a large negative number at padding).
extern "C" __global__ void softmax_fwd(const float *scores, const float *key_bias, float *p, int rows, int s,
                                       int rows_per_batch, float scale) {
    const int warps = blockDim.x >> 5;
    const int row = blockIdx.x * warps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *x = scores + (size_t)row * s, *bias = key_bias + (size_t)(row / rows_per_batch) * s;
    float *out = p + (size_t)row * s;
    float m = -INFINITY;
    for (int c = lane; c < s; c += 32) m = fmaxf(m, x[c] * scale + bias[c]);
    m = warp_max(m);
    float sum = 0.f;
    for (int c = lane; c < s; c += 32) {
        const float e = expf(x[c] * scale + bias[c] - m);
        out[c] = e;
        sum += e;
    }
    const float inv = 1.f / warp_sum(sum);
    for (int c = lane; c < s; c += 32) out[c] *= inv;
}

// ds = scale · p ⊙ (g − Σ p·g) per row, one warp per row.
extern "C" __global__ void softmax_bwd(const float *p, const float *g, float *ds, int rows, int s, float scale) {
    const int warps = blockDim.x >> 5;
    const int row = blockIdx.x * warps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *pr = p + (size_t)row * s, *gr = g + (size_t)row * s;
    float *o = ds + (size_t)row * s;
    float dot = 0.f;
    for (int c = lane; c < s; c += 32) dot += pr[c] * gr[c];
    dot = warp_sum(dot);
    for (int c = lane; c < s; c += 32) o[c] = scale * pr[c] * (gr[c] - dot);
}

// ---- Cross-entropy -----------------------------------------------------------------------

// For each row of logits [n, v] (one block per row): grads[row] = scale · (softmax − onehot)
// and losses[row] = logsumexp − logits[target] (NaN for a target outside the v classes).
extern "C" __global__ void cross_entropy_fwd_bwd(const float *logits, const uint32_t *targets, float *grads,
                                                 float *losses, int v, float scale) {
    __shared__ float scratch[32];
    const size_t row = blockIdx.x;
    const float *x = logits + row * v;
    float *o = grads + row * v;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < v; c += blockDim.x) m = fmaxf(m, x[c]);
    m = block_max(m, scratch);
    float sum = 0.f;
    for (int c = threadIdx.x; c < v; c += blockDim.x) {
        const float e = expf(x[c] - m);
        o[c] = e;
        sum += e;
    }
    sum = block_sum(sum, scratch);
    const float k = scale / sum;
    const uint32_t t = targets[row];
    for (int c = threadIdx.x; c < v; c += blockDim.x) o[c] = o[c] * k - ((uint32_t)c == t ? scale : 0.f);
    if (threadIdx.x == 0) losses[row] = t < (uint32_t)v ? m + logf(sum) - x[t] : __int_as_float(0x7fc00000);
}

// ---- AdamW -------------------------------------------------------------------------------

// One AdamW update of many tensors in one launch, blockIdx.y picking the tensor. A job is 9
// words: θ, g and mv = [m; v] (device addresses), n, then pairs of f32 (step, decay),
// (bc2, grad_scale), (β1, β2), (1−β1, 1−β2) (rounded from f64, as on the CPU), (ε, unused):
//   m ← β1·m + (1−β1)·s·g,  v ← β2·v + (1−β2)·(s·g)²,  θ ← decay·θ − step·m / (√(v / bc2) + ε).
__device__ __forceinline__ float low(unsigned long long w) { return __uint_as_float((unsigned int)w); }
__device__ __forceinline__ float high(unsigned long long w) { return __uint_as_float((unsigned int)(w >> 32)); }

extern "C" __global__ void adamw_all(const unsigned long long *jobs) {
    const unsigned long long *j = jobs + 9 * (size_t)blockIdx.y;
    float *theta = (float *)j[0];
    const float *g = (const float *)j[1];
    float *mv = (float *)j[2];
    const size_t n = j[3];
    const float step = low(j[4]), decay = high(j[4]), bc2 = low(j[5]), grad_scale = high(j[5]);
    const float beta1 = low(j[6]), beta2 = high(j[6]), one_beta1 = low(j[7]), one_beta2 = high(j[7]), eps = low(j[8]);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float gi = g[i] * grad_scale;
        const float m = mv[i] * beta1 + gi * one_beta1;
        const float v = mv[n + i] * beta2 + gi * gi * one_beta2;
        mv[i] = m;
        mv[n + i] = v;
        theta[i] = theta[i] * decay - m * step / (sqrtf(v / bc2) + eps);
    }
}

// ---- Rows summed by index (embedding gradients) ------------------------------------------

// dst[ids[g]] = Σ src[rows[k]] for k in offsets[g]..offsets[g+1], one block per group g, the
// sources summed in order; dst is zeroed before. pack = [rows (n) | offsets (groups + 1) | ids].
extern "C" __global__ void scatter_add_rows(const float *src, const uint32_t *pack, float *dst, int n, int groups,
                                            int d) {
    const uint32_t *rows = pack, *offsets = pack + n, *ids = pack + n + groups + 1;
    const int g = blockIdx.x;
    const uint32_t begin = offsets[g], end = offsets[g + 1];
    float *out = dst + (size_t)ids[g] * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float s = 0.f;
        for (uint32_t k = begin; k < end; ++k) s += src[(size_t)rows[k] * d + c];
        out[c] = s;
    }
}

// ---- Sums of squares (gradient clipping) --------------------------------------------------

// partial[blockIdx.x] = Σ x[i]² over this block's grid-stride share, accumulated in f64.
extern "C" __global__ void sum_squares(const float *x, size_t n, double *partial) {
    __shared__ double scratch[32];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const double v = x[i];
        s += v * v;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(FULL_MASK, s, o);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) total += scratch[w];
        partial[blockIdx.x] = total;
    }
}

// ---- Bias and dropout --------------------------------------------------------------------

// y[i] += b[i mod out] over the rows of y ([n / out, out]).
extern "C" __global__ void bias_add(float *y, const float *b, size_t n, int out) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        y[i] += b[i % out];
    }
}

// The SplitMix64 finaliser: a well-mixed 64-bit hash of (seed, i) (src/kernels/dropout.rs).
__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// mask[i] = 0 with probability p, else scale; the draw of element i is a hash of (seed, i).
extern "C" __global__ void keep_mask(float *mask, size_t n, unsigned long long seed, unsigned int threshold,
                                     float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const unsigned int word = (unsigned int)(mix64(seed + 0x9E3779B97F4A7C15ull * (i + 1)) >> 32);
        mask[i] = word < threshold ? 0.f : scale;
    }
}

// ---- Attention layouts -------------------------------------------------------------------

// Between [batch, seq, heads, dh] (rows: the heads side by side) and [batch, heads, seq, dh]
// (heads major), one thread per element of dst; `to_heads` picks the direction.
extern "C" __global__ void permute_heads(const float *src, float *dst, size_t n, int seq, int heads, int dh,
                                         int to_heads) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t c = i % dh, r = i / dh;
        size_t b, s, h;
        if (to_heads) {  // dst [b, h, s, dh]
            s = r % seq; h = (r / seq) % heads; b = r / ((size_t)seq * heads);
            dst[i] = src[((b * seq + s) * heads + h) * dh + c];
        } else {  // dst [b, s, h, dh]
            h = r % heads; s = (r / heads) % seq; b = r / ((size_t)seq * heads);
            dst[i] = src[((b * heads + h) * seq + s) * dh + c];
        }
    }
}
