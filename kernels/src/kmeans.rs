//! Spherical k-means (cosine), for the corpus context's topics and for the store's
//! document clusters: one implementation on the crate's dot kernel.

use crate::dot;

/// Spherical k-means (cosine) with k-means++ seeding on unit rows `x`; returns up to
/// `k` unit centroids, row-major. Deterministic for a seed.
pub fn kmeans(x: &[f32], dim: usize, k: usize, seed: u64) -> Vec<f32> {
    let n = x.len() / dim;
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let mut rng = SplitMix::new(seed);
    let mut centroids: Vec<f32> = row(rng.below(n)).to_vec();
    let mut nearest = vec![f32::MAX; n];
    while centroids.len() < k * dim {
        let last = &centroids[centroids.len() - dim..];
        for (i, d) in nearest.iter_mut().enumerate() {
            *d = d.min((1.0 - dot(row(i), last)).max(0.0));
        }
        let total: f32 = nearest.iter().sum();
        let pick = if total > 0.0 {
            let mut target = rng.unit() * total;
            nearest
                .iter()
                .position(|&d| {
                    target -= d;
                    target <= 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.below(n)
        };
        centroids.extend_from_slice(row(pick));
    }
    for _ in 0..20 {
        let mut sums = vec![0f32; k * dim];
        for i in 0..n {
            let best = (0..k)
                .max_by(|&a, &b| {
                    let da = dot(row(i), &centroids[a * dim..(a + 1) * dim]);
                    let db = dot(row(i), &centroids[b * dim..(b + 1) * dim]);
                    da.total_cmp(&db)
                })
                .unwrap_or(0);
            for (s, v) in sums[best * dim..(best + 1) * dim].iter_mut().zip(row(i)) {
                *s += v;
            }
        }
        for (c, s) in centroids.chunks_mut(dim).zip(sums.chunks(dim)) {
            let norm = s.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                c.iter_mut().zip(s).for_each(|(c, s)| *c = s / norm);
            }
        }
    }
    centroids
}

/// A tiny deterministic generator (SplitMix64): seeding and sampling need no more,
/// and results stay reproducible across platforms and crate versions.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_separated_clusters() {
        // Two tight groups around orthogonal axes.
        let mut x = Vec::new();
        for i in 0..50 {
            let e = i as f32 * 1e-3;
            for v in [[1.0, e, 0.0], [0.0, e, 1.0]] {
                let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                x.extend(v.map(|a| a / n));
            }
        }
        let c = kmeans(&x, 3, 2, 3);
        assert_eq!(c.len(), 6);
        let firsts: Vec<bool> = c.chunks(3).map(|c| c[0] > 0.99).collect();
        assert!(firsts.contains(&true) && firsts.contains(&false), "{c:?}");
        assert_eq!(kmeans(&x, 3, 2, 3), c, "deterministic for a seed");
    }
}
