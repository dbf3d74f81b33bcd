//! Maps of a corpus's covariance spectrum: each principal direction of the sample
//! scaled by a power of its (shrunk) eigenvalue. Whitening is the power -1/2 (every
//! direction to unit variance); [`STRETCH_POWER`] is a small positive power, which
//! stretches the directions the corpus varies most along.
//!
//! Why the stretch (issue 23): on templated niche corpora (several entities described
//! by the same sentences) the largest directions of the documents' spread are the ones
//! that tell entity and topic apart, and the small ones carry the fill-in words that
//! a query does not share. Whitening flattens exactly the large ones and lost 5 to 40
//! points there; a gentle stretch of them gained on the tuning corpora
//! (`scripts/contextual_variants.py`).

use crate::error::{Error, Result};

/// The power of the eigenvalues the stretch variant scales by: each direction by its
/// standard deviation to the 1/4. Chosen on the tuning niche corpora (phones, hotels,
/// insurers; 1/8 was the largest power with no collection losing more than 0.5 points).
pub const STRETCH_POWER: f64 = 0.125;

/// How far the stretch pulls the eigenvalues toward their mean before the power, for
/// every sample size (0.7 lost no tuning collection more than 0.4 points; whitening's
/// own rule, at least 0.3, d/(d+n) and Ledoit-Wolf, lost 0.6 on hotels at 1,152).
pub const STRETCH_SHRINKAGE: f32 = 0.7;

/// The symmetric matrix `U diag(s^power) U^T` of a covariance (row-major `dim x dim`,
/// f64) whose eigenvalues `s` are shrunk toward their mean by `shrinkage`, which keeps
/// directions the sample barely spans from being blown up (power < 0) or flattened to
/// nothing (power > 0).
pub fn spectral_map(cov: &[f64], dim: usize, shrinkage: f32, power: f64) -> Result<Vec<f32>> {
    let c = faer::Mat::<f64>::from_fn(dim, dim, |i, j| cov[i * dim + j]);
    let eig = c
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| Error::InvalidContext(format!("covariance eigendecomposition: {e:?}")))?;
    let (u, s) = (eig.U(), eig.S().column_vector());
    let values: Vec<f64> = (0..dim).map(|i| s[i].max(0.0)).collect();
    let average = values.iter().sum::<f64>() / dim as f64;
    if average <= 0.0 {
        return Err(Error::InvalidContext(
            "the sample's vectors are all identical; add more varied documents".into(),
        ));
    }
    let alpha = shrinkage.clamp(0.0, 1.0) as f64;
    let scale: Vec<f64> = values
        .iter()
        .map(|l| ((1.0 - alpha) * l + alpha * average).max(1e-12).powf(power))
        .collect();
    let mut w = vec![0f32; dim * dim];
    for i in 0..dim {
        for j in 0..dim {
            w[i * dim + j] = (0..dim)
                .map(|k| u[(i, k)] * scale[k] * u[(j, k)])
                .sum::<f64>() as f32;
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major covariance of 3-d rows (their mean subtracted).
    fn covariance(x: &[[f64; 3]]) -> Vec<f64> {
        let n = x.len() as f64;
        let mean: Vec<f64> = (0..3)
            .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let mut c = vec![0.0; 9];
        for r in x {
            for i in 0..3 {
                for j in 0..3 {
                    c[i * 3 + j] += (r[i] - mean[i]) * (r[j] - mean[j]) / n;
                }
            }
        }
        c
    }

    fn sample() -> Vec<[f64; 3]> {
        let mut rng = engram_kernels::SplitMix::new(1);
        (0..4000)
            .map(|_| {
                let (a, b, c) = (rng.unit() - 0.5, rng.unit() - 0.5, rng.unit() - 0.5);
                [
                    (a * 3.0) as f64,
                    (a * 2.0 + b * 0.5) as f64,
                    (c * 0.1) as f64,
                ]
            })
            .collect()
    }

    fn apply(w: &[f32], v: &[f64; 3]) -> [f64; 3] {
        let mut out = [0.0; 3];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..3).map(|j| w[i * 3 + j] as f64 * v[j]).sum();
        }
        out
    }

    #[test]
    fn power_minus_half_makes_the_covariance_the_identity() {
        let x = sample();
        let w = spectral_map(&covariance(&x), 3, 0.0, -0.5).unwrap();
        let white: Vec<[f64; 3]> = x.iter().map(|v| apply(&w, v)).collect();
        let cov = covariance(&white);
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (cov[i * 3 + j] - want).abs() < 1e-3,
                    "cov[{i}][{j}] = {}",
                    cov[i * 3 + j]
                );
            }
        }
    }

    #[test]
    fn the_map_matches_a_reference_on_a_diagonal_covariance() {
        // Diagonal covariance: the eigenvectors are the axes, so the map must be the
        // diagonal of each shrunk variance to the power, whatever the power.
        let var = [4.0, 1.0, 0.01];
        let cov: Vec<f64> = (0..9)
            .map(|k| if k % 4 == 0 { var[k / 4] } else { 0.0 })
            .collect();
        let average = var.iter().sum::<f64>() / 3.0;
        for (shrinkage, power) in [(0.0, STRETCH_POWER), (0.3, STRETCH_POWER), (0.5, -0.5)] {
            let w = spectral_map(&cov, 3, shrinkage as f32, power).unwrap();
            for i in 0..3 {
                for j in 0..3 {
                    let shrunk: f64 = (1.0 - shrinkage) * var[i] + shrinkage * average;
                    let want = if i == j { shrunk.powf(power) } else { 0.0 };
                    let got = w[i * 3 + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "w[{i}][{j}] = {got}, want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_positive_power_stretches_the_largest_direction_most() {
        // The stretch keeps the order of the spread and widens the gap between the
        // largest and smallest directions, where whitening closes it.
        let x = sample();
        let cov = covariance(&x);
        let spread = |w: &[f32]| {
            let out: Vec<[f64; 3]> = x.iter().map(|v| apply(w, v)).collect();
            let c = covariance(&out);
            c[0] / c[8]
        };
        let before = cov[0] / cov[8];
        let stretched = spread(&spectral_map(&cov, 3, 0.0, STRETCH_POWER).unwrap());
        let white = spread(&spectral_map(&cov, 3, 0.0, -0.5).unwrap());
        assert!(stretched > before * 1.5, "{stretched} vs {before}");
        assert!(white < before / 10.0, "{white} vs {before}");
    }

    #[test]
    fn identical_vectors_are_an_error() {
        assert!(spectral_map(&[0.0; 9], 3, 0.3, STRETCH_POWER).is_err());
    }
}
