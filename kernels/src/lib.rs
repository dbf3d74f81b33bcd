//! # engram-kernels
//!
//! The distance functions behind Engram's HNSW hot loop and exact rescoring:
//! a scalar reference, SIMD fast paths per instruction set, and a dispatcher
//! that picks the fastest one this CPU can run.
//!
//! ## Layout (after Qdrant's `spaces/`)
//!
//! | module        | what                                                   | when it runs                        |
//! |---------------|--------------------------------------------------------|-------------------------------------|
//! | [`scalar`]    | plain loops, the reference every fast path is tested against | CPUs without a SIMD path      |
//! | `x86_avx512`  | AVX-512F, 4 × 16 lanes, masked tails; int8 via AVX-512 VNNI | x86-64 with `avx512f` (+`avx512bw`, `avx512vnni` for int8) |
//! | `x86_avx2`    | AVX2 + FMA, 4 × 8 lanes, masked tails; int8 via `vpmaddwd` | x86-64 with `avx2` and `fma`   |
//! | `neon`        | NEON, 4 × 4 lanes                                      | every aarch64 CPU                   |
//! | `dispatch`    | detection and the cached table of function pointers   | once per process                    |
//! | `quant`       | [`ScalarQuantizer`]: f32 → int8 codes and score correction | building / searching quantized segments |
//! | `exact`       | [`exact_topk`]: brute-force top-k on all cores, the GPU's reference | rescoring, small collections |
//! | `cuda`        | `GpuExact`: the same top-k on an NVIDIA GPU (feature `cuda`, CUDA loaded at run time) | batches of queries with a GPU |
//!
//! ## Dispatch
//!
//! The SIMD kernels are `unsafe fn`s compiled with `#[target_feature]`: the
//! compiler may emit AVX-512 instructions in them even though the crate is
//! built for baseline x86-64, so they may only run on CPUs that have those
//! features. On the first call of any function here, `dispatch` asks the CPU
//! (`is_x86_feature_detected!`), fills a table of function pointers with the
//! best kernels available (AVX-512 > AVX2+FMA > scalar), and caches it in a
//! `OnceLock`. From then on a call is one atomic load and one indirect call:
//! no per-call detection, no branches on features in the hot loop. The int8
//! kernel is chosen independently (VNNI is not implied by AVX-512F).
//!
//! [`backend`] names the f32 backend in use, for logs and benchmarks. The
//! environment variable `ENGRAM_KERNELS` (read once, at that first call) can
//! force a slower backend this CPU supports, e.g. `ENGRAM_KERNELS=scalar` to
//! rule out a SIMD bug or `ENGRAM_KERNELS=avx2+fma` to benchmark AVX2 on an
//! AVX-512 machine; unknown or unsupported names are ignored.
//!
//! ## Contracts shared by every kernel
//!
//! * **Lengths must match.** Passing slices of different lengths is a bug in
//!   the caller: it fails a `debug_assert!` in debug builds; in release, the
//!   kernels use the shorter length (they never read out of bounds, and the
//!   hot path pays no check).
//! * **Results equal the reference up to rounding.** SIMD kernels add in a
//!   different order than [`scalar`], so f32 results differ by a few ULPs of
//!   the magnitude `Σ|aᵢbᵢ|`; int8 results are bit-identical.
//! * **NaN in, NaN out**, for every f32 function, in every backend.
//!
//! ```
//! let a = [1.0, 2.0, 3.0];
//! let b = [4.0, 5.0, 6.0];
//! assert_eq!(engram_kernels::dot(&a, &b), 32.0);
//! assert_eq!(engram_kernels::l2_squared(&a, &b), 27.0);
//! println!("distance kernels: {}", engram_kernels::backend());
//! ```

#[cfg(feature = "cuda")]
pub mod cuda;
mod dispatch;
mod exact;
mod kmeans;
#[cfg(target_arch = "aarch64")]
mod neon;
mod quant;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

#[cfg(test)]
mod tests;

pub use exact::{exact_topk, Metric, TopK};
pub use kmeans::{kmeans, SplitMix};
pub use quant::ScalarQuantizer;

/// Errors of this crate. The distance functions are total (edge cases are
/// values such as NaN or `0.0`, documented on each); the quantizer and the GPU
/// path (feature `cuda`) can fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// Training saw no finite value to take a range from.
    #[error("quantizer training needs at least one finite value")]
    EmptyTraining,
    /// The quantile must keep a non-empty central share of the values.
    #[error("quantile must be in (0, 1], got {0}")]
    InvalidQuantile(f32),
    /// A range that no positive, finite step can cover.
    #[error("quantization range must be finite with min <= max, got [{min}, {max}]")]
    InvalidRange { min: f32, max: f32 },
    /// A buffer whose length is not a whole number of `dim`-long rows (or too
    /// many rows for the GPU kernels' 32-bit indices).
    #[error("expected rows of {dim} floats, got {len} floats")]
    Shape { len: usize, dim: usize },
    /// `k` outside what the GPU selection supports.
    #[error("k must be in 1..={max}, got {k}")]
    InvalidK { k: usize, max: usize },
    /// The CUDA driver library (libcuda) could not be loaded.
    #[error("no CUDA driver found (libcuda could not be loaded): use the CPU path")]
    NoCudaDriver,
    /// NVRTC (libnvrtc, CUDA's run-time compiler) could not be loaded.
    #[error(
        "no NVRTC found (libnvrtc could not be loaded): add CUDA's lib folder to LD_LIBRARY_PATH"
    )]
    NoNvrtc,
    /// NVRTC rejected the kernels' source (a bug here).
    #[error("NVRTC failed to compile the kernels: {0}")]
    Nvrtc(String),
    /// A CUDA driver call failed.
    #[error("CUDA error: {0}")]
    Cuda(String),
}

/// `Result` with this crate's [`KernelError`].
pub type Result<T> = std::result::Result<T, KernelError>;

/// Dot product `Σ aᵢ·bᵢ`: the similarity of normalized embeddings, and the
/// HNSW hot loop's most frequent call. Lengths must match (see the crate docs).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    PairKernel::dot().call(a, b)
}

/// Squared Euclidean distance `Σ (aᵢ−bᵢ)²`: the L2 metric without the square
/// root, which ranking does not need. Lengths must match.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    PairKernel::l2_squared().call(a, b)
}

/// Cosine similarity `a·b / (|a|·|b|)`, clamped to `[-1, 1]`, in one pass
/// over both vectors: for collections whose vectors are not normalized.
/// Lengths must match.
///
/// Edge cases, the same in every backend: `0.0` when either vector is zero
/// (rather than NaN, so a zero vector ranks as unrelated); NaN when either
/// holds a NaN or an infinity; exact for tiny or huge components, whose
/// squares underflow or overflow `f32` (a rare `f64` slow path).
#[inline]
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len(), "cosine_similarity: length mismatch");
    let k = dispatch::kernels();
    // SAFETY: `kernels()` only holds kernels whose CPU features were detected.
    let (ab, aa, bb) = unsafe { (k.cosine_parts)(a, b) };
    scalar::finish_cosine(ab, aa, bb, a, b)
}

/// Euclidean norm `√Σ aᵢ²`: to normalize vectors at insertion and to turn
/// dot products into cosines. Tiny or huge components take an exact `f64`
/// slow path instead of underflowing to 0 or overflowing to infinity; NaN or
/// infinity in `a` gives NaN or infinity.
#[inline]
pub fn norm(a: &[f32]) -> f32 {
    let k = dispatch::kernels();
    // SAFETY: `kernels()` only holds kernels whose CPU features were detected.
    let sum_sq = unsafe { (k.sum_squares)(a) };
    scalar::finish_norm(sum_sq, a)
}

/// Scales `a` to unit length in place, so cosine collections can be searched
/// with the cheaper [`dot`]. Returns `false`, leaving `a` unchanged, when it
/// is zero or holds a NaN or an infinity (no direction to keep).
pub fn normalize(a: &mut [f32]) -> bool {
    let n = norm(a);
    scalar::scale_to_unit(a, n)
}

/// Integer dot product of int8 codes (from [`ScalarQuantizer::quantize`]),
/// bit-identical to [`scalar::dot_i8`]: sums wrap in `i32`, which is exact
/// for lengths up to 131 072. Lengths must match.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len(), "dot_i8: length mismatch");
    let k = dispatch::kernels();
    // SAFETY: `kernels()` only holds kernels whose CPU features were detected.
    unsafe { (k.dot_i8)(a, b) }
}

/// A pairwise f32 kernel ([`dot`] or [`l2_squared`]) resolved once for this CPU.
/// A hot loop that holds one calls the SIMD code directly, one indirect call,
/// instead of going through [`dot`]'s table lookup and whatever wraps it (in A/B
/// passes of the HNSW walk on 50-d vectors, a direct call gave +2% to +18% QPS).
#[derive(Clone, Copy)]
pub struct PairKernel(dispatch::PairFn);

impl PairKernel {
    /// The kernel [`dot`] dispatches to.
    pub fn dot() -> Self {
        PairKernel(dispatch::kernels().dot)
    }

    /// The kernel [`l2_squared`] dispatches to.
    pub fn l2_squared() -> Self {
        PairKernel(dispatch::kernels().l2_squared)
    }

    /// Runs the kernel; lengths must match.
    #[inline(always)]
    pub fn call(self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len(), "pairwise kernel: length mismatch");
        // SAFETY: built from `kernels()`, which only holds kernels whose CPU
        // features were detected.
        unsafe { (self.0)(a, b) }
    }
}

/// Name of the f32 backend this process uses: `"avx512"`, `"avx2+fma"`,
/// `"neon"` or `"scalar"`. For startup logs and benchmark labels.
pub fn backend() -> &'static str {
    dispatch::kernels().name
}
