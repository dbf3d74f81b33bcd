//! CUDA C++ source of the GPU kernels, compiled at run time by NVRTC (so a
//! build needs no CUDA toolkit).
//!
//! Keys: both kernels work on "cost" keys, lower is better: `-q·x` for dot and
//! cosine, `|x|² − 2q·x` for L2 (`|q|²` is added on the host afterwards).

/// Names of the entry points in [`SOURCE`].
pub(super) const KERNELS: [&str; 3] = ["row_sq_norms", "gemm_keys", "select_topk"];

/// Rows (queries) and columns (data rows) per `gemm_keys` block.
pub(super) const TILE: u32 = 128;
/// Threads per `gemm_keys` block.
pub(super) const GEMM_THREADS: u32 = 256;
/// Threads per `select_topk` block (one block per query).
pub(super) const SELECT_THREADS: u32 = 1024;
/// Largest `k` `select_topk` handles (its sort buffer in shared memory).
pub const MAX_K: usize = 1024;

pub(super) const SOURCE: &str = r#"
#define BM 128
#define BN 128
#define BK 16
#define MAX_K 1024

// |x_i|^2 per row, one warp per row.
extern "C" __global__ void row_sq_norms(const float* __restrict__ x, float* __restrict__ out,
                                        long long n, int d) {
    long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= n) return;
    const float* r = x + row * d;
    float s = 0.f;
    for (int i = lane; i < d; i += 32) s = fmaf(r[i], r[i], s);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) out[row] = s;
}

// C[m][j] = key(A[m] . B[j]) for m < M queries, j < N rows; A is M x K and B is
// N x K, both row-major. 128 x 128 tile per block, 256 threads, 8 x 8 outputs per
// thread (rows ty*4+{0..3} and 64+ty*4+{0..3}, likewise columns), BK = 16.
extern "C" __global__ void __launch_bounds__(256)
gemm_keys(const float* __restrict__ A, const float* __restrict__ B,
          const float* __restrict__ bnorm, float* __restrict__ C,
          int M, int N, int K, long long ldc, int l2) {
    __shared__ __align__(16) float As[BK][BM + 4];
    __shared__ __align__(16) float Bs[BK][BN + 4];
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.y * BM;
    const long long n0 = (long long)blockIdx.x * BN;
    const int lk = tid % BK, lr = tid / BK;
    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < K; k0 += BK) {
        const int kk = k0 + lk;
#pragma unroll
        for (int s = 0; s < BM / 16; ++s) {
            const int r = lr + s * 16;
            const int gm = m0 + r;
            const long long gn = n0 + r;
            As[lk][r] = (gm < M && kk < K) ? A[(long long)gm * K + kk] : 0.f;
            Bs[lk][r] = (gn < N && kk < K) ? B[gn * K + kk] : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            const float4 a0 = *reinterpret_cast<const float4*>(&As[k][ty * 4]);
            const float4 a1 = *reinterpret_cast<const float4*>(&As[k][ty * 4 + 64]);
            const float4 b0 = *reinterpret_cast<const float4*>(&Bs[k][tx * 4]);
            const float4 b1 = *reinterpret_cast<const float4*>(&Bs[k][tx * 4 + 64]);
            const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int gm = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const long long gn = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
            if (gn >= N) continue;
            const float v = acc[i][j];
            C[(long long)gm * ldc + gn] = l2 ? fmaf(-2.f, v, bnorm[gn]) : -v;
        }
    }
}

// Float to unsigned int with the same order; NaN last.
__device__ __forceinline__ unsigned int f2u(float f) {
    if (f != f) return 0xffffffffu;
    const unsigned int b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float u2f(unsigned int u) {
    return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}

// One block per query row of n keys: the k smallest (k <= min(n, MAX_K)),
// sorted ascending by (key, id). Radix select over the key's 4 bytes finds the
// k-th smallest key T, then every key < T and the first keys == T are
// gathered and bitonic-sorted in shared memory.
extern "C" __global__ void __launch_bounds__(1024)
select_topk(const float* __restrict__ keys, long long n, int k,
            unsigned int* __restrict__ out_ids, float* __restrict__ out_keys) {
    __shared__ unsigned int hist[256];
    __shared__ unsigned long long cand[MAX_K];
    __shared__ unsigned int s_prefix, s_left, s_lt, s_eq;
    const float* row = keys + (long long)blockIdx.x * n;
    const int tid = threadIdx.x;
    const int lane = tid % 32;
    unsigned int prefix = 0, mask = 0, left = (unsigned int)k;

    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        for (long long base = 0; base < n; base += blockDim.x) {
            const long long i = base + tid;
            unsigned int bin = 256;
            if (i < n) {
                const unsigned int u = f2u(row[i]);
                if ((u & mask) == prefix) bin = (u >> shift) & 0xffu;
            }
            const unsigned int peers = __match_any_sync(0xffffffffu, bin);
            if (bin < 256 && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
        }
        __syncthreads();
        if (tid == 0) {
            unsigned int cum = 0;
            int b = 0;
            for (; b < 255; ++b) {
                if (cum + hist[b] >= left) break;
                cum += hist[b];
            }
            s_prefix = prefix | ((unsigned int)b << shift);
            s_left = left - cum;
        }
        __syncthreads();
        prefix = s_prefix;
        left = s_left;
        mask |= 0xffu << shift;
        __syncthreads();
    }

    // prefix is the k-th smallest key; `left` of the keys equal to it are kept.
    if (tid == 0) { s_lt = 0; s_eq = 0; }
    __syncthreads();
    const unsigned int n_lt = (unsigned int)k - left;
    for (long long i = tid; i < n; i += blockDim.x) {
        const unsigned int u = f2u(row[i]);
        if (u < prefix) {
            const unsigned int p = atomicAdd(&s_lt, 1u);
            cand[p] = ((unsigned long long)u << 32) | (unsigned long long)i;
        } else if (u == prefix) {
            const unsigned int p = atomicAdd(&s_eq, 1u);
            if (p < left) cand[n_lt + p] = ((unsigned long long)u << 32) | (unsigned long long)i;
        }
    }
    int p2 = 1;
    while (p2 < k) p2 <<= 1;
    for (int i = k + tid; i < p2; i += blockDim.x) cand[i] = ~0ull;
    __syncthreads();

    for (int size = 2; size <= p2; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < p2; i += blockDim.x) {
                const int j = i ^ stride;
                if (j > i) {
                    const unsigned long long a = cand[i], b = cand[j];
                    const bool up = (i & size) == 0;
                    if ((a > b) == up) { cand[i] = b; cand[j] = a; }
                }
            }
            __syncthreads();
        }
    }
    for (int i = tid; i < k; i += blockDim.x) {
        const unsigned long long c = cand[i];
        out_ids[(long long)blockIdx.x * k + i] = (unsigned int)(c & 0xffffffffull);
        out_keys[(long long)blockIdx.x * k + i] = u2f((unsigned int)(c >> 32));
    }
}
"#;
