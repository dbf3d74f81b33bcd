//! AVX-512 kernels (Skylake-SP, Ice Lake, Sapphire Rapids, AMD Zen 4 and later).
//!
//! f32 kernels run 4 independent accumulators of 16 lanes (64 floats per
//! iteration), then single 16-lane steps, then one masked load for the last
//! 1..=15 floats — AVX-512 masks make the tail a single instruction that never
//! touches memory outside the slice.
//!
//! The int8 dot product uses AVX-512 VNNI (`vpdpbusd`: 64 byte products summed
//! into 16 `i32` lanes per instruction).
//!
//! Every function is an `unsafe fn` with `#[target_feature]`: calling it on a
//! CPU without the features is undefined behaviour. Only `dispatch` calls
//! them, after `is_x86_feature_detected!` said yes. Lengths are clamped to the
//! shorter slice, so no function here reads out of bounds.

use std::arch::x86_64::*;

/// Floats per AVX-512 register.
const LANES: usize = 16;
/// Floats per unrolled iteration: 4 accumulators of [`LANES`].
const STEP: usize = 4 * LANES;

/// Mask selecting the first `r < 16` lanes.
#[inline]
fn tail_mask(r: usize) -> __mmask16 {
    debug_assert!(r < LANES);
    ((1u32 << r) - 1) as __mmask16
}

/// Sum of all lanes of 4 accumulators.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn sum4(v: [__m512; 4]) -> f32 {
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(v[0], v[1]),
        _mm512_add_ps(v[2], v[3]),
    ))
}

/// `Σ aᵢbᵢ` over the common length.
///
/// SAFETY: the caller must have checked `avx512f` at run time.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // All full loads below stay inside `0..n`, within both slices.
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + k * LANES;
            *acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(o)), _mm512_loadu_ps(pb.add(o)), *acc);
        }
        i += STEP;
    }
    while i + LANES <= n {
        acc[0] = _mm512_fmadd_ps(
            _mm512_loadu_ps(pa.add(i)),
            _mm512_loadu_ps(pb.add(i)),
            acc[0],
        );
        i += LANES;
    }
    if i < n {
        let m = tail_mask(n - i);
        let (x, y) = (
            _mm512_maskz_loadu_ps(m, pa.add(i)),
            _mm512_maskz_loadu_ps(m, pb.add(i)),
        );
        acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
    }
    sum4(acc)
}

/// `Σ (aᵢ−bᵢ)²` over the common length.
///
/// SAFETY: the caller must have checked `avx512f` at run time.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + k * LANES;
            let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(o)), _mm512_loadu_ps(pb.add(o)));
            *acc = _mm512_fmadd_ps(d, d, *acc);
        }
        i += STEP;
    }
    while i + LANES <= n {
        let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
        acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
        i += LANES;
    }
    if i < n {
        let m = tail_mask(n - i);
        let d = _mm512_sub_ps(
            _mm512_maskz_loadu_ps(m, pa.add(i)),
            _mm512_maskz_loadu_ps(m, pb.add(i)),
        );
        acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
    }
    sum4(acc)
}

/// `Σ aᵢ²`.
///
/// SAFETY: the caller must have checked `avx512f` at run time.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sum_squares(a: &[f32]) -> f32 {
    let n = a.len();
    let pa = a.as_ptr();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_loadu_ps(pa.add(i + k * LANES));
            *acc = _mm512_fmadd_ps(x, x, *acc);
        }
        i += STEP;
    }
    while i + LANES <= n {
        let x = _mm512_loadu_ps(pa.add(i));
        acc[0] = _mm512_fmadd_ps(x, x, acc[0]);
        i += LANES;
    }
    if i < n {
        let x = _mm512_maskz_loadu_ps(tail_mask(n - i), pa.add(i));
        acc[1] = _mm512_fmadd_ps(x, x, acc[1]);
    }
    sum4(acc)
}

/// `(Σ aᵢbᵢ, Σ aᵢ², Σ bᵢ²)` in one pass over the common length: 4 accumulators
/// per sum (12 chains fit easily in the 32 zmm registers).
///
/// SAFETY: the caller must have checked `avx512f` at run time.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let zero = _mm512_setzero_ps();
    let (mut ab, mut aa, mut bb) = ([zero; 4], [zero; 4], [zero; 4]);
    let mut i = 0;
    while i + STEP <= n {
        for k in 0..4 {
            let x = _mm512_loadu_ps(pa.add(i + k * LANES));
            let y = _mm512_loadu_ps(pb.add(i + k * LANES));
            ab[k] = _mm512_fmadd_ps(x, y, ab[k]);
            aa[k] = _mm512_fmadd_ps(x, x, aa[k]);
            bb[k] = _mm512_fmadd_ps(y, y, bb[k]);
        }
        i += STEP;
    }
    while i + LANES <= n {
        let (x, y) = (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
        ab[0] = _mm512_fmadd_ps(x, y, ab[0]);
        aa[0] = _mm512_fmadd_ps(x, x, aa[0]);
        bb[0] = _mm512_fmadd_ps(y, y, bb[0]);
        i += LANES;
    }
    if i < n {
        let m = tail_mask(n - i);
        let (x, y) = (
            _mm512_maskz_loadu_ps(m, pa.add(i)),
            _mm512_maskz_loadu_ps(m, pb.add(i)),
        );
        ab[1] = _mm512_fmadd_ps(x, y, ab[1]);
        aa[1] = _mm512_fmadd_ps(x, x, aa[1]);
        bb[1] = _mm512_fmadd_ps(y, y, bb[1]);
    }
    (sum4(ab), sum4(aa), sum4(bb))
}

/// `Σ aᵢbᵢ` of int8 codes with wrapping `i32` sums, bit-identical to
/// [`crate::scalar::dot_i8`].
///
/// `vpdpbusd` multiplies *unsigned* bytes by signed bytes, so `a` is shifted
/// into `u8` by flipping its sign bit (`aᵢ + 128`), and the shift is taken
/// back out: `Σ aᵢbᵢ = Σ (aᵢ+128)·bᵢ − 128·Σ bᵢ`, with `Σ bᵢ` from a second
/// `vpdpbusd` against a vector of ones. Each step is exact modulo 2³², so the
/// result is the same wrapping sum as the reference. Masked-off tail bytes
/// load as 0 in `b`, so they add nothing.
///
/// SAFETY: the caller must have checked `avx512f`, `avx512bw` and
/// `avx512vnni` at run time.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn dot_i8_vnni(a: &[i8], b: &[i8]) -> i32 {
    const BYTES: usize = 64;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let flip = _mm512_set1_epi8(i8::MIN);
    let ones = _mm512_set1_epi8(1);
    let zero = _mm512_setzero_si512();
    let (mut ab, mut sb) = ([zero; 2], [zero; 2]);
    let mut i = 0;
    while i + 2 * BYTES <= n {
        for k in 0..2 {
            let x = _mm512_xor_si512(_mm512_loadu_si512(pa.add(i + k * BYTES).cast()), flip);
            let y = _mm512_loadu_si512(pb.add(i + k * BYTES).cast());
            ab[k] = _mm512_dpbusd_epi32(ab[k], x, y);
            sb[k] = _mm512_dpbusd_epi32(sb[k], ones, y);
        }
        i += 2 * BYTES;
    }
    while i < n {
        let r = (n - i).min(BYTES);
        // All 64 bits set when r == 64: `u64::MAX >> 0`.
        let m: __mmask64 = u64::MAX >> (BYTES - r);
        let x = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, pa.add(i)), flip);
        let y = _mm512_maskz_loadu_epi8(m, pb.add(i));
        ab[0] = _mm512_dpbusd_epi32(ab[0], x, y);
        sb[0] = _mm512_dpbusd_epi32(sb[0], ones, y);
        i += r;
    }
    let shifted = _mm512_reduce_add_epi32(_mm512_add_epi32(ab[0], ab[1]));
    let sum_b = _mm512_reduce_add_epi32(_mm512_add_epi32(sb[0], sb[1]));
    shifted.wrapping_sub(sum_b.wrapping_mul(128))
}
