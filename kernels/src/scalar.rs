//! The reference implementation: plain loops, no `unsafe`, one accumulator.
//!
//! Every fast path is tested against these functions, and they are the
//! backend on CPUs without a SIMD path. They are written to be obviously
//! correct, not fast: a single sequential sum (so the order of additions, and
//! thus the rounding, is the textbook one). Like the dispatched functions,
//! they debug-assert equal lengths and use the shorter length in release.

/// Dot product `Σ aᵢ·bᵢ`: the similarity of normalized embeddings.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len(), "dot: length mismatch");
    let mut sum = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        sum += x * y;
    }
    sum
}

/// Squared Euclidean distance `Σ (aᵢ−bᵢ)²`: the L2 metric without the square
/// root, which ranking does not need.
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len(), "l2_squared: length mismatch");
    let mut sum = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        let d = x - y;
        sum += d * d;
    }
    sum
}

/// Cosine similarity in `[-1, 1]`; `0.0` when either vector is zero and NaN
/// when either holds a NaN or an infinity. See [`crate::cosine_similarity`].
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len(), "cosine_similarity: length mismatch");
    let (ab, aa, bb) = cosine_parts(a, b);
    finish_cosine(ab, aa, bb, a, b)
}

/// Euclidean norm `√Σ aᵢ²`, exact in range (no overflow for large or
/// underflow for tiny components). See [`crate::norm`].
pub fn norm(a: &[f32]) -> f32 {
    finish_norm(sum_squares(a), a)
}

/// Scales `a` to unit length in place; returns `false` and leaves `a`
/// unchanged when it is zero or holds a NaN or an infinity.
pub fn normalize(a: &mut [f32]) -> bool {
    let n = norm(a);
    scale_to_unit(a, n)
}

/// `Σ aᵢ²`, the kernel behind [`norm`].
pub(crate) fn sum_squares(a: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for x in a {
        sum += x * x;
    }
    sum
}

/// `(Σ aᵢbᵢ, Σ aᵢ², Σ bᵢ²)` in one pass, the kernel behind cosine.
pub(crate) fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab, aa, bb)
}

/// Integer dot product of int8 codes, `Σ aᵢ·bᵢ` with wrapping `i32`
/// accumulation (exact while `len ≤ 131_072`; wrapping addition is
/// associative, so every backend wraps to the same value beyond that).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len(), "dot_i8: length mismatch");
    let mut sum = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        sum = sum.wrapping_add(i32::from(x) * i32::from(y));
    }
    sum
}

/// Turns the three sums of any backend into the cosine, shared by all of them
/// so edge cases behave identically whatever the instruction set.
///
/// The fast formula is used when both squared norms lie in [`FAST_RANGE`].
/// Otherwise (a zero vector, components so tiny or huge that their squares
/// lose precision or overflow, a NaN or an infinity) the rare slow path
/// recomputes in `f64`, whose range holds the squares of every finite `f32`.
#[inline]
pub(crate) fn finish_cosine(ab: f32, aa: f32, bb: f32, a: &[f32], b: &[f32]) -> f32 {
    if FAST_RANGE.contains(&aa) && FAST_RANGE.contains(&bb) {
        // Two square roots, not `sqrt(aa * bb)`, so the product cannot overflow.
        return (ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0);
    }
    cosine_f64(a, b)
}

/// Sums of squares the `f32` formulas trust: far from overflow, and far enough
/// above the subnormals that rounding stays at `f32` precision. Anything else
/// (including 0, NaN and infinity) takes the `f64` slow path.
const FAST_RANGE: std::ops::RangeInclusive<f32> = 1e-30..=1e30;

#[cold]
fn cosine_f64(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if !(ab.is_finite() && aa.is_finite() && bb.is_finite()) {
        return f32::NAN;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ((ab / (aa.sqrt() * bb.sqrt())) as f32).clamp(-1.0, 1.0)
}

/// Turns `Σ aᵢ²` into the norm, with the same `f64` slow path as
/// [`finish_cosine`] when the `f32` sum overflowed or underflowed.
#[inline]
pub(crate) fn finish_norm(sum_sq: f32, a: &[f32]) -> f32 {
    if FAST_RANGE.contains(&sum_sq) {
        return sum_sq.sqrt();
    }
    norm_f64(a)
}

#[cold]
fn norm_f64(a: &[f32]) -> f32 {
    let sum: f64 = a.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    // A NaN or infinity in `a` gives NaN or inf here, as it should.
    sum.sqrt() as f32
}

/// Divides `a` by its norm `n` unless `n` is zero or not finite. Shared by
/// the reference and the dispatched `normalize` (the scaling loop is not hot:
/// it runs once per inserted vector, and the compiler vectorizes it).
pub(crate) fn scale_to_unit(a: &mut [f32], n: f32) -> bool {
    if !(n.is_finite() && n > 0.0) {
        return false;
    }
    let inv = 1.0 / n;
    if inv.is_finite() {
        a.iter_mut().for_each(|x| *x *= inv);
    } else {
        // `n` is subnormal: its reciprocal overflows, so divide instead.
        a.iter_mut().for_each(|x| *x /= n);
    }
    true
}
