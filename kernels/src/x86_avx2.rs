//! AVX2 + FMA kernels (Haswell and later, every x86-64 server CPU since 2013).
//!
//! f32 kernels run 4 independent accumulators of 8 lanes (32 floats per
//! iteration) so that consecutive FMAs do not wait on each other's latency,
//! then single 8-lane steps, then one masked load for the last 1..=7 floats.
//!
//! Every function is an `unsafe fn` with `#[target_feature]`: calling it on a
//! CPU without the features is undefined behaviour. Only `dispatch` calls
//! them, after `is_x86_feature_detected!` said yes. Lengths are clamped to the
//! shorter slice, so no function here reads out of bounds.

use std::arch::x86_64::*;

/// Floats per AVX2 register.
const LANES: usize = 8;
/// Floats per unrolled iteration: 4 accumulators of [`LANES`].
const STEP: usize = 4 * LANES;

/// Sliding window for tail masks: 8 lanes of `-1` then 8 zeros; the 8 `i32`
/// starting at `8 - r` have their first `r` lanes set.
static TAIL_MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Mask selecting the first `r` lanes, `r <= 8`.
///
/// SAFETY (of the unsafe fn): the caller has AVX2 and passes `r <= 8`, so the
/// 8 `i32` read lie inside `TAIL_MASK`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tail_mask(r: usize) -> __m256i {
    debug_assert!(r <= LANES);
    _mm256_loadu_si256(TAIL_MASK.as_ptr().add(LANES - r).cast())
}

/// Loads the first `r < 8` floats at `p`, zeros elsewhere; masked-off lanes
/// are never touched, so reading past the slice end cannot fault.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_tail(p: *const f32, r: usize) -> __m256 {
    _mm256_maskload_ps(p, tail_mask(r))
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// `Σ aᵢbᵢ` over the common length.
///
/// SAFETY: the caller must have checked `avx2` and `fma` at run time.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // All loads below stay inside `0..n`, within both slices.
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + k * LANES;
            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)), *acc);
        }
        i += STEP;
    }
    while i + LANES <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i)),
            _mm256_loadu_ps(pb.add(i)),
            acc[0],
        );
        i += LANES;
    }
    if i < n {
        let r = n - i;
        acc[1] = _mm256_fmadd_ps(load_tail(pa.add(i), r), load_tail(pb.add(i), r), acc[1]);
    }
    hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ))
}

/// `Σ (aᵢ−bᵢ)²` over the common length.
///
/// SAFETY: the caller must have checked `avx2` and `fma` at run time.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + k * LANES;
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)));
            *acc = _mm256_fmadd_ps(d, d, *acc);
        }
        i += STEP;
    }
    while i + LANES <= n {
        let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
        acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
        i += LANES;
    }
    if i < n {
        let r = n - i;
        let d = _mm256_sub_ps(load_tail(pa.add(i), r), load_tail(pb.add(i), r));
        acc[1] = _mm256_fmadd_ps(d, d, acc[1]);
    }
    hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ))
}

/// `Σ aᵢ²`.
///
/// SAFETY: the caller must have checked `avx2` and `fma` at run time.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn sum_squares(a: &[f32]) -> f32 {
    let n = a.len();
    let pa = a.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_ps(pa.add(i + k * LANES));
            *acc = _mm256_fmadd_ps(x, x, *acc);
        }
        i += STEP;
    }
    while i + LANES <= n {
        let x = _mm256_loadu_ps(pa.add(i));
        acc[0] = _mm256_fmadd_ps(x, x, acc[0]);
        i += LANES;
    }
    if i < n {
        let x = load_tail(pa.add(i), n - i);
        acc[1] = _mm256_fmadd_ps(x, x, acc[1]);
    }
    hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ))
}

/// `(Σ aᵢbᵢ, Σ aᵢ², Σ bᵢ²)` in one pass over the common length. Two
/// accumulators per sum (6 chains, plus loads, fit the 16 ymm registers).
///
/// SAFETY: the caller must have checked `avx2` and `fma` at run time.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let zero = _mm256_setzero_ps();
    let (mut ab, mut aa, mut bb) = ([zero; 2], [zero; 2], [zero; 2]);
    let mut i = 0;
    while i + 2 * LANES <= n {
        for k in 0..2 {
            let x = _mm256_loadu_ps(pa.add(i + k * LANES));
            let y = _mm256_loadu_ps(pb.add(i + k * LANES));
            ab[k] = _mm256_fmadd_ps(x, y, ab[k]);
            aa[k] = _mm256_fmadd_ps(x, x, aa[k]);
            bb[k] = _mm256_fmadd_ps(y, y, bb[k]);
        }
        i += 2 * LANES;
    }
    if i + LANES <= n {
        let (x, y) = (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
        ab[0] = _mm256_fmadd_ps(x, y, ab[0]);
        aa[0] = _mm256_fmadd_ps(x, x, aa[0]);
        bb[0] = _mm256_fmadd_ps(y, y, bb[0]);
        i += LANES;
    }
    if i < n {
        let (x, y) = (load_tail(pa.add(i), n - i), load_tail(pb.add(i), n - i));
        ab[1] = _mm256_fmadd_ps(x, y, ab[1]);
        aa[1] = _mm256_fmadd_ps(x, x, aa[1]);
        bb[1] = _mm256_fmadd_ps(y, y, bb[1]);
    }
    (
        hsum(_mm256_add_ps(ab[0], ab[1])),
        hsum(_mm256_add_ps(aa[0], aa[1])),
        hsum(_mm256_add_ps(bb[0], bb[1])),
    )
}

/// `Σ aᵢbᵢ` of int8 codes with wrapping `i32` sums, bit-identical to
/// [`crate::scalar::dot_i8`]: 16 bytes are sign-extended to `i16`, and
/// `vpmaddwd` multiplies and adds neighbouring pairs into `i32` lanes (a pair
/// sums to at most 2·128² = 32768, no overflow).
///
/// SAFETY: the caller must have checked `avx2` at run time.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    const BYTES: usize = 16;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut i = 0;
    while i + 2 * BYTES <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + k * BYTES;
            let prod = _mm256_madd_epi16(widen16(pa.add(o)), widen16(pb.add(o)));
            *acc = _mm256_add_epi32(*acc, prod);
        }
        i += 2 * BYTES;
    }
    if i + BYTES <= n {
        let prod = _mm256_madd_epi16(widen16(pa.add(i)), widen16(pb.add(i)));
        acc[0] = _mm256_add_epi32(acc[0], prod);
        i += BYTES;
    }
    let v = _mm256_add_epi32(acc[0], acc[1]);
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    let mut sum = _mm_cvtsi128_si32(s);
    for j in i..n {
        sum = sum.wrapping_add(i32::from(*a.get_unchecked(j)) * i32::from(*b.get_unchecked(j)));
    }
    sum
}

/// Loads 16 int8 at `p` and sign-extends them to 16 `i16` lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn widen16(p: *const i8) -> __m256i {
    _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast()))
}
