//! CPU element-wise operations the BERT forward pass spends its non-matmul time in,
//! GELU as a candle custom op that runs in place on every core, and the row softmax of
//! attention.
//!
//! Why: candle 0.11's `gelu_erf` runs on one thread with a scalar `erf`, and its
//! softmax uses a scalar `exp`; together they took a third of MiniLM's forward pass on
//! two cores. These versions split the work across rayon's pool and use polynomial
//! approximations accurate to ~1e-7 (below f32 matmul noise), so vectors do not move.

use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Tensor};
use rayon::prelude::*;

/// Elements per parallel task: large enough that scheduling costs nothing.
const TASK: usize = 16 * 1024;

/// `erf(x)` by Abramowitz & Stegun 7.1.26 refined (max abs error 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_72 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * fast_exp(-a * a);
    y.copysign(x)
}

/// `e^x` for f32 by range reduction to `2^n * e^r`, `|r| <= ln2/2`, and a degree-6
/// polynomial (relative error < 2e-7); inputs below -87 flush to zero.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    // ln 2 split in two (Cody & Waite) so `x - n ln2` loses no bits for large `n`.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest by the 1.5 * 2^23 trick rather than `f32::round`, which is a
    // libm call that stops the loops around this function from vectorising.
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUNDER) - ROUNDER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n through the exponent bits; n is within [-126, 127] after the clamp.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The contiguous f32 slice of a tensor's storage, or an error naming the op.
fn contiguous_f32<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 tensors are supported");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => candle_core::bail!("{op}: the tensor must be contiguous"),
    }
}

/// Defines `$name(slice)` that runs `$portable` compiled for AVX2 + FMA when the CPU
/// has them. Why: the build targets baseline x86-64 (SSE2), where LLVM vectorises
/// `fast_exp`/`erf` four lanes wide at best; the same loops compiled for AVX2 run
/// several times faster (attention softmax 54 -> 14 ms per MiniLM layer batch).
macro_rules! with_avx2 {
    ($(#[$doc:meta])* $vis:vis fn $name:ident = $portable:ident) => {
        $(#[$doc])*
        $vis fn $name(x: &mut [f32]) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast(x: &mut [f32]) {
                    $portable(x)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `fast` is compiled for.
                    unsafe { fast(x) };
                    return;
                }
            }
            $portable(x);
        }
    };
}

with_avx2!(fn gelu_slice = gelu_slice_portable);

#[inline(always)]
fn gelu_slice_portable(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Exact (erf) GELU, in place: BERT's activation.
struct GeluErf;

impl InplaceOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-inplace"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = contiguous_f32(storage, layout, self.name())?;
        data.par_chunks_mut(TASK).for_each(gelu_slice);
        Ok(())
    }
}

with_avx2!(
    /// Softmax of one row, in place (attention scores; see `cpu_gemm::attention`).
    pub(crate) fn softmax_row_ = softmax_row_portable
);

#[inline(always)]
fn softmax_row_portable(r: &mut [f32]) {
    let max = lanes_fold(r, f32::NEG_INFINITY, f32::max);
    for v in r.iter_mut() {
        *v = fast_exp(*v - max);
    }
    let inv = 1.0 / lanes_fold(r, 0.0, |a, b| a + b);
    r.iter_mut().for_each(|v| *v *= inv);
}

/// A reduction over 8 independent accumulators, so it vectorises (a single running
/// accumulator is a dependency chain the compiler must keep in order).
#[inline(always)]
fn lanes_fold(r: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = r.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = f(acc[i], c[i]);
        }
    }
    let mut out = tail.iter().fold(init, |a, &b| f(a, b));
    for a in acc {
        out = f(out, a);
    }
    out
}

/// Applies exact GELU to `x` in place (`x` must be contiguous f32 and not shared).
pub fn gelu_erf_(x: &Tensor) -> Result<()> {
    x.inplace_op1(&GeluErf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fast_exp_and_erf_match_libm() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let (e, want) = (fast_exp(x), x.exp());
            assert!(
                ((e - want) / want).abs() < 1e-6,
                "exp({x}) = {e}, want {want}"
            );
            // erf from its series-free definition in f64 as the reference.
            let want = libm_erf(x as f64) as f32;
            assert!(
                (erf(x) - want).abs() < 3e-7,
                "erf({x}) = {}, want {want}",
                erf(x)
            );
        }
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
        assert!(fast_exp(-87.0) < 1e-37);
    }

    /// erf by its Taylor series (converges everywhere; terms shrink after |x|^2 steps).
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn inplace_ops_match_candle() -> Result<()> {
        let x = Tensor::randn(0f32, 3.0, (3, 5, 77), &Device::Cpu)?;
        let gelu = x.copy()?;
        gelu_erf_(&gelu)?;
        let diff = (gelu - x.gelu_erf()?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "gelu differs by {diff}");
        let mut soft = x.flatten_all()?.to_vec1::<f32>()?;
        soft.chunks_mut(77).for_each(softmax_row_);
        let want = candle_nn::ops::softmax_last_dim(&x)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let diff = soft
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-6, "softmax differs by {diff}");
        Ok(())
    }

    #[test]
    fn strided_input_is_an_error_not_garbage() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (4, 6), &Device::Cpu)?.t()?;
        assert!(gelu_erf_(&x).is_err());
        Ok(())
    }
}
