//! int8 scalar quantization, as in Qdrant: one affine map shared by every
//! component of every vector turns 4-byte floats into 1-byte codes, so the
//! index can keep 4x more vectors in cache and score them with integer SIMD.
//!
//! A value `x` is clipped to `[min, max]` and stored as the code
//! `c = round((x − min) / scale) − 128 ∈ [−128, 127]`, so it decodes as
//! `x ≈ offset + scale·c` with `offset = min + 128·scale`. For two vectors of
//! length `n`:
//!
//! ```text
//! Σ xᵢyᵢ ≈ scale²·Σ aᵢbᵢ + (offset·scale·Σ aᵢ + n·offset²/2) + (offset·scale·Σ bᵢ + n·offset²/2)
//!          └ dot_i8(a, b) ┘  └──────── correction(a) ──────┘   └──────── correction(b) ──────┘
//! ```
//!
//! The corrections depend on one vector only: compute them once when a vector
//! is quantized and store them next to its codes; a score is then one integer
//! dot product, one multiply and two adds.

use crate::{dot_i8, KernelError, Result};

/// Smallest code; `min` maps here.
const CODE_MIN: f32 = -128.0;
/// Codes span 256 levels, `scale` is the step between them.
const LEVELS: f32 = 255.0;

/// Shared affine map between f32 components and int8 codes (see the module
/// docs for the formulas). Small and `Copy`: the index keeps one per segment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalarQuantizer {
    /// Value of the lowest code, `-128`.
    min: f32,
    /// Step between neighbouring codes; always finite and positive.
    scale: f32,
}

/// Every finite component of the samples; an error when there is none.
fn finite_values<'a, I>(samples: I) -> Result<Vec<f32>>
where
    I: IntoIterator<Item = &'a [f32]>,
{
    let values: Vec<f32> = samples
        .into_iter()
        .flat_map(|v| v.iter().copied())
        .filter(|x| x.is_finite())
        .collect();
    if values.is_empty() {
        return Err(KernelError::EmptyTraining);
    }
    Ok(values)
}

/// Ranks (in ascending order of `n` values) of the bounds of the central
/// `quantile` of them.
fn central_range(n: usize, quantile: f32) -> (usize, usize) {
    let last = (n - 1) as f64;
    let tail = (1.0 - f64::from(quantile)) / 2.0;
    (
        (tail * last).floor() as usize,
        ((1.0 - tail) * last).ceil() as usize,
    )
}

impl ScalarQuantizer {
    /// A quantizer covering `[min, max]`, for callers that know the range
    /// (e.g. `[-1, 1]` for normalized embeddings). A single point (`min ==
    /// max`) is widened to `[min, min + 1]` so the scale stays positive.
    /// Non-finite, reversed or overflowing ranges are an error rather than a
    /// quantizer that turns every code into NaN.
    ///
    /// # Errors
    /// [`KernelError::InvalidRange`] when a bound is not finite, `min > max`,
    /// or the width overflows `f32`.
    pub fn new(min: f32, max: f32) -> Result<Self> {
        let width = max - min;
        if !(min.is_finite() && max.is_finite() && width.is_finite() && width >= 0.0) {
            return Err(KernelError::InvalidRange { min, max });
        }
        let scale = width / LEVELS;
        // A point (or a width so small its step is subnormal): any positive
        // step decodes `min` exactly, so pick the one of `[min, min + 1]`.
        let scale = if scale.is_normal() {
            scale
        } else {
            1.0 / LEVELS
        };
        Ok(Self { min, scale })
    }

    /// The quantizer with exactly this lowest value and step, as [`ScalarQuantizer::min`]
    /// and [`ScalarQuantizer::scale`] report them: how a stored index gets back, bit for
    /// bit, the quantizer its codes were made with (`new(min, max)` may round the step).
    ///
    /// # Errors
    /// [`KernelError::InvalidRange`] unless `min` is finite, `scale` positive and
    /// normal, and the highest code's value finite.
    pub fn from_parts(min: f32, scale: f32) -> Result<Self> {
        let max = min + LEVELS * scale;
        if !(min.is_finite() && scale.is_normal() && scale > 0.0 && max.is_finite()) {
            return Err(KernelError::InvalidRange { min, max });
        }
        Ok(Self { min, scale })
    }

    /// Learns the range from sample vectors, keeping the central `quantile`
    /// of all their components (Qdrant uses 0.99: the 0.5 % lowest and highest
    /// values are clipped, so a few outliers do not waste the 256 levels).
    /// NaNs and infinities in the samples are ignored.
    ///
    /// # Errors
    /// [`KernelError::InvalidQuantile`] unless `0 < quantile <= 1`;
    /// [`KernelError::EmptyTraining`] when the samples hold no finite value.
    pub fn train<'a, I>(samples: I, quantile: f32) -> Result<Self>
    where
        I: IntoIterator<Item = &'a [f32]>,
    {
        if !(quantile > 0.0 && quantile <= 1.0) {
            return Err(KernelError::InvalidQuantile(quantile));
        }
        let mut values = finite_values(samples)?;
        let (lo, hi) = central_range(values.len(), quantile);
        let min = *values.select_nth_unstable_by(lo, f32::total_cmp).1;
        let max = *values.select_nth_unstable_by(hi, f32::total_cmp).1;
        Self::new(min, max)
    }

    /// Learns the range with the least squared quantization error on the
    /// samples, trying the central 99% up to all of their components. Clipping
    /// the tails wastes fewer levels on outliers, but where the tails are heavy
    /// (GloVe's few large components) a clipped value costs far more than a
    /// coarser step: measuring picks the right trade for each collection.
    ///
    /// # Errors
    /// [`KernelError::EmptyTraining`] when the samples hold no finite value.
    pub fn fit<'a, I>(samples: I) -> Result<Self>
    where
        I: IntoIterator<Item = &'a [f32]>,
    {
        const QUANTILES: [f32; 6] = [0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0];
        let mut values = finite_values(samples)?;
        values.sort_unstable_by(f32::total_cmp);
        let mut best: Option<(f64, Self)> = None;
        for quantile in QUANTILES {
            let (lo, hi) = central_range(values.len(), quantile);
            let q = Self::new(values[lo], values[hi])?;
            let error = q.squared_error(&values);
            if best.is_none_or(|(e, _)| error < e) {
                best = Some((error, q));
            }
        }
        Ok(best.expect("at least one quantile").1)
    }

    /// Sum of squared differences between `values` and their decoded codes.
    fn squared_error(&self, values: &[f32]) -> f64 {
        let decoded = self.dequantize(&self.quantize(values));
        values
            .iter()
            .zip(decoded)
            .map(|(&x, y)| f64::from(x - y).powi(2))
            .sum()
    }

    /// Value of the lowest code.
    pub fn min(&self) -> f32 {
        self.min
    }

    /// Value of the highest code; values above are clipped to it.
    pub fn max(&self) -> f32 {
        self.min + LEVELS * self.scale
    }

    /// Step between neighbouring codes: the worst-case rounding error of an
    /// in-range value is half of it.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The value code `0` stands for: `x ≈ offset + scale·c`.
    fn offset(&self) -> f32 {
        self.min - CODE_MIN * self.scale
    }

    /// Codes of `v`: each component clipped to `[min, max]` and rounded to
    /// the nearest level. A NaN component maps to the lowest code.
    pub fn quantize(&self, v: &[f32]) -> Vec<i8> {
        let inv = 1.0 / self.scale;
        v.iter()
            .map(|&x| {
                let level = ((x - self.min) * inv).round();
                // `clamp` keeps NaN (which `as` would turn into code 0).
                let level = if level.is_nan() {
                    0.0
                } else {
                    level.clamp(0.0, LEVELS)
                };
                (level + CODE_MIN) as i8
            })
            .collect()
    }

    /// Approximate components back from codes (for checks and rescoring
    /// fallbacks; the search path never needs it).
    pub fn dequantize(&self, codes: &[i8]) -> Vec<f32> {
        // From `min`, not `offset`: the lowest code decodes to `min` exactly.
        codes
            .iter()
            .map(|&c| self.min + self.scale * (f32::from(c) - CODE_MIN))
            .collect()
    }

    /// The per-vector term of the approximate dot product (see the module
    /// docs). Store it with the codes; [`ScalarQuantizer::dot`] takes it back.
    pub fn correction(&self, codes: &[i8]) -> f32 {
        let sum: i64 = codes.iter().map(|&c| i64::from(c)).sum();
        let (offset, scale) = (f64::from(self.offset()), f64::from(self.scale));
        let n = codes.len() as f64;
        (offset * scale * sum as f64 + n * offset * offset / 2.0) as f32
    }

    /// Approximates the f32 dot product of the two vectors behind `a` and
    /// `b` from their codes and [corrections](ScalarQuantizer::correction):
    /// `scale² · dot_i8(a, b) + a_correction + b_correction`.
    #[inline]
    pub fn dot(&self, a: &[i8], a_correction: f32, b: &[i8], b_correction: f32) -> f32 {
        self.scale * self.scale * dot_i8(a, b) as f32 + a_correction + b_correction
    }
}
