//! Defences an operator can apply to stored vectors, as measurable options.
//!
//! - `noise:L`: add Gaussian noise whose expected norm is `L` times the (unit)
//!   vector's, then renormalise. Blurs every vector; costs retrieval quality.
//! - `rotation:KEY`: multiply by a random orthogonal matrix derived from `KEY`.
//!   Cosines between rotated vectors are unchanged, so a legitimate user who rotates
//!   queries with the same key retrieves exactly as before, while an attacker who
//!   inverts against the public encoder without the key searches the wrong space.

use std::fmt;

use faer::Mat;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Defence {
    None,
    Noise { lambda: f32 },
    Rotation { key: u64 },
}

impl Defence {
    /// Parses `none`, `noise:0.5` (lambda in (0, 100]) or `rotation:KEY` (`rotation`
    /// alone uses key 1).
    pub fn parse(s: &str) -> Result<Defence> {
        let bad = || {
            Error::invalid(
                "defence",
                format!("'{s}' is not a defence; use none, noise:LAMBDA (e.g. noise:0.5) or rotation:KEY"),
            )
        };
        let (name, arg) = s.trim().split_once(':').unwrap_or((s.trim(), ""));
        match (name, arg) {
            ("none", "") => Ok(Defence::None),
            ("noise", a) => {
                let lambda: f32 = a.parse().map_err(|_| bad())?;
                if !(lambda > 0.0 && lambda <= 100.0) {
                    return Err(Error::invalid(
                        "defence",
                        format!("noise level {a} is out of range; use a value in (0, 100]"),
                    ));
                }
                Ok(Defence::Noise { lambda })
            }
            ("rotation", "") => Ok(Defence::Rotation { key: 1 }),
            ("rotation", a) => a
                .parse()
                .map(|key| Defence::Rotation { key })
                .map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// Strength on the chart's x axis: lambda for noise, 0 for none and rotation.
    pub fn strength(&self) -> f32 {
        match self {
            Defence::Noise { lambda } => *lambda,
            _ => 0.0,
        }
    }

    /// Precomputes what applying the defence to `dim`-vectors needs.
    pub fn prepare(&self, dim: usize) -> Transform {
        let rotation = match *self {
            Defence::Rotation { key } => Some(random_orthogonal(dim, key)),
            _ => None,
        };
        Transform {
            defence: *self,
            dim,
            rotation,
        }
    }
}

impl fmt::Display for Defence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defence::None => write!(f, "none"),
            Defence::Noise { lambda } => write!(f, "noise:{lambda}"),
            Defence::Rotation { key } => write!(f, "rotation:{key}"),
        }
    }
}

impl From<Defence> for String {
    fn from(d: Defence) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for Defence {
    type Error = Error;
    fn try_from(s: String) -> Result<Defence> {
        Defence::parse(&s)
    }
}

/// A defence ready to apply to vectors of one dimension.
pub struct Transform {
    pub defence: Defence,
    dim: usize,
    /// Row-major `dim x dim` orthogonal matrix.
    rotation: Option<Vec<f32>>,
}

impl Transform {
    /// The stored (defended) form of `v`; `salt` makes each vector's noise different
    /// but reproducible.
    pub fn store(&self, v: &[f32], salt: u64) -> Vec<f32> {
        match self.defence {
            Defence::None => v.to_vec(),
            Defence::Noise { lambda } => {
                let mut rng = engram_kernels::SplitMix::new(salt ^ 0x006e_6f69_7365);
                let sd = lambda / (self.dim as f32).sqrt();
                let mut out: Vec<f32> = v.iter().map(|x| x + sd * gaussian(&mut rng)).collect();
                normalise(&mut out);
                out
            }
            Defence::Rotation { .. } => self.rotate(v),
        }
    }

    /// What the legitimate user does to a query: rotate with the key (noise is only
    /// ever added to stored vectors).
    pub fn query(&self, v: &[f32]) -> Vec<f32> {
        match self.defence {
            Defence::Rotation { .. } => self.rotate(v),
            _ => v.to_vec(),
        }
    }

    fn rotate(&self, v: &[f32]) -> Vec<f32> {
        let q = self.rotation.as_ref().expect("rotation prepared");
        q.chunks_exact(self.dim)
            .map(|row| engram_kernels::dot(row, v))
            .collect()
    }
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut engram_kernels::SplitMix) -> f32 {
    let u1 = (rng.unit() as f64).max(1e-12);
    let u2 = rng.unit() as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The Q of the QR decomposition of a seeded Gaussian matrix, with R's diagonal
/// made positive: a Haar-random orthogonal matrix, the same for the same key.
fn random_orthogonal(dim: usize, key: u64) -> Vec<f32> {
    let mut rng = engram_kernels::SplitMix::new(key ^ 0x726f_7461_7465);
    let g = Mat::<f64>::from_fn(dim, dim, |_, _| gaussian(&mut rng) as f64);
    let qr = g.qr();
    let q = qr.compute_Q();
    let r = qr.R();
    let mut out = vec![0.0f32; dim * dim];
    for i in 0..dim {
        for j in 0..dim {
            let sign = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
            out[i * dim + j] = (q[(i, j)] * sign) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names() {
        for s in ["none", "noise:0.5", "rotation:42"] {
            assert_eq!(Defence::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Defence::parse("rotation").unwrap(),
            Defence::Rotation { key: 1 }
        );
        for bad in ["noise", "noise:-1", "noise:abc", "blur:1", "rotation:x", ""] {
            assert!(Defence::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_cosines_and_noise_blurs() {
        let dim = 16;
        let a: Vec<f32> = (0..dim).map(|i| (i as f32).sin()).collect();
        let b: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.7).cos()).collect();
        let rot = Defence::Rotation { key: 7 }.prepare(dim);
        let (ra, rb) = (rot.store(&a, 0), rot.query(&b));
        let cos = crate::metrics::cosine;
        assert!((cos(&ra, &rb) - cos(&a, &b)).abs() < 1e-5);
        assert!(cos(&ra, &a) < 0.9, "rotated vector moved");
        let noise = Defence::Noise { lambda: 1.0 }.prepare(dim);
        let na = noise.store(&a, 3);
        let norm: f32 = na.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(cos(&na, &a) < 0.99 && cos(&na, &a) > 0.2);
        assert_eq!(na, noise.store(&a, 3), "reproducible");
    }
}
