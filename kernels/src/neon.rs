//! NEON kernels for aarch64 (Graviton, Ampere, Apple silicon).
//!
//! NEON is part of the aarch64 baseline, so `dispatch` selects these without
//! a run-time check. f32 kernels run 4 accumulators of 4 lanes (16 floats per
//! iteration), then single 4-lane steps, then a scalar tail of at most 3.
//! Lengths are clamped to the shorter slice, so nothing reads out of bounds.

use std::arch::aarch64::*;

/// Floats per NEON register.
const LANES: usize = 4;
/// Floats per unrolled iteration: 4 accumulators of [`LANES`].
const STEP: usize = 4 * LANES;

/// Sum of all lanes of 4 accumulators.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn sum4(v: [float32x4_t; 4]) -> f32 {
    vaddvq_f32(vaddq_f32(vaddq_f32(v[0], v[1]), vaddq_f32(v[2], v[3])))
}

/// `Σ aᵢbᵢ` over the common length.
///
/// SAFETY: NEON is always present on aarch64.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + k * LANES;
            *acc = vfmaq_f32(*acc, vld1q_f32(pa.add(o)), vld1q_f32(pb.add(o)));
        }
        i += STEP;
    }
    while i + LANES <= n {
        acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
        i += LANES;
    }
    let mut sum = sum4(acc);
    for j in i..n {
        sum += a.get_unchecked(j) * b.get_unchecked(j);
    }
    sum
}

/// `Σ (aᵢ−bᵢ)²` over the common length.
///
/// SAFETY: NEON is always present on aarch64.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let o = i + k * LANES;
            let d = vsubq_f32(vld1q_f32(pa.add(o)), vld1q_f32(pb.add(o)));
            *acc = vfmaq_f32(*acc, d, d);
        }
        i += STEP;
    }
    while i + LANES <= n {
        let d = vsubq_f32(vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
        acc[0] = vfmaq_f32(acc[0], d, d);
        i += LANES;
    }
    let mut sum = sum4(acc);
    for j in i..n {
        let d = a.get_unchecked(j) - b.get_unchecked(j);
        sum += d * d;
    }
    sum
}

/// `Σ aᵢ²`.
///
/// SAFETY: NEON is always present on aarch64.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn sum_squares(a: &[f32]) -> f32 {
    let n = a.len();
    let pa = a.as_ptr();
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + STEP <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let x = vld1q_f32(pa.add(i + k * LANES));
            *acc = vfmaq_f32(*acc, x, x);
        }
        i += STEP;
    }
    while i + LANES <= n {
        let x = vld1q_f32(pa.add(i));
        acc[0] = vfmaq_f32(acc[0], x, x);
        i += LANES;
    }
    let mut sum = sum4(acc);
    for j in i..n {
        let x = a.get_unchecked(j);
        sum += x * x;
    }
    sum
}

/// `(Σ aᵢbᵢ, Σ aᵢ², Σ bᵢ²)` in one pass over the common length.
///
/// SAFETY: NEON is always present on aarch64.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let zero = vdupq_n_f32(0.0);
    let (mut ab, mut aa, mut bb) = ([zero; 4], [zero; 4], [zero; 4]);
    let mut i = 0;
    while i + STEP <= n {
        for k in 0..4 {
            let x = vld1q_f32(pa.add(i + k * LANES));
            let y = vld1q_f32(pb.add(i + k * LANES));
            ab[k] = vfmaq_f32(ab[k], x, y);
            aa[k] = vfmaq_f32(aa[k], x, x);
            bb[k] = vfmaq_f32(bb[k], y, y);
        }
        i += STEP;
    }
    while i + LANES <= n {
        let (x, y) = (vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
        ab[0] = vfmaq_f32(ab[0], x, y);
        aa[0] = vfmaq_f32(aa[0], x, x);
        bb[0] = vfmaq_f32(bb[0], y, y);
        i += LANES;
    }
    let (mut sab, mut saa, mut sbb) = (sum4(ab), sum4(aa), sum4(bb));
    for j in i..n {
        let (x, y) = (*a.get_unchecked(j), *b.get_unchecked(j));
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    (sab, saa, sbb)
}

/// `Σ aᵢbᵢ` of int8 codes with wrapping `i32` sums, bit-identical to
/// [`crate::scalar::dot_i8`]: `smull` widens 8 byte products to `i16` (each
/// at most 128² = 16384), `sadalp` adds neighbouring pairs into `i32` lanes.
///
/// SAFETY: NEON is always present on aarch64.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    const BYTES: usize = 16;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_s32(0); 2];
    let mut i = 0;
    while i + BYTES <= n {
        let (x, y) = (vld1q_s8(pa.add(i)), vld1q_s8(pb.add(i)));
        acc[0] = vpadalq_s16(acc[0], vmull_s8(vget_low_s8(x), vget_low_s8(y)));
        acc[1] = vpadalq_s16(acc[1], vmull_high_s8(x, y));
        i += BYTES;
    }
    let mut sum = vaddvq_s32(vaddq_s32(acc[0], acc[1]));
    for j in i..n {
        sum = sum.wrapping_add(i32::from(*a.get_unchecked(j)) * i32::from(*b.get_unchecked(j)));
    }
    sum
}
