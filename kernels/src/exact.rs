//! Exact (brute-force) top-k on the CPU: the reference the GPU path is tested
//! against, and the rescoring / small-collection path when there is no GPU.
//!
//! Every score comes from the dispatched kernels of this crate ([`dot`],
//! [`l2_squared`], [`cosine_similarity`]); this module only adds the loop
//! order (blocks of rows reused across a thread's queries, for cache) and the
//! bounded selection.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::{cosine_similarity, dot, l2_squared};

/// How vectors are compared. Scores follow the metric's own sense:
/// similarities for [`Metric::Dot`] and [`Metric::Cosine`] (higher is
/// better), squared distances for [`Metric::L2`] (lower is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Inner product `q·x`.
    Dot,
    /// Cosine similarity (the GPU path normalizes both sides and takes `q·x`).
    Cosine,
    /// Squared Euclidean distance `|q−x|²`.
    L2,
}

impl Metric {
    /// Whether a larger score ranks first.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::L2)
    }

    /// The score of one pair, with this crate's dispatched kernels.
    #[inline]
    pub fn score(self, q: &[f32], x: &[f32]) -> f32 {
        match self {
            Metric::Dot => dot(q, x),
            Metric::Cosine => cosine_similarity(q, x),
            Metric::L2 => l2_squared(q, x),
        }
    }
}

/// The `k` best rows for each query of a batch, best first, row-major:
/// query `i`'s results are `ids[i*k..(i+1)*k]` and `scores[i*k..(i+1)*k]`.
/// `k` is the number asked for, capped at the number of rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopK {
    /// Results per query.
    pub k: usize,
    /// Row indices into the searched matrix.
    pub ids: Vec<u32>,
    /// Scores in the metric's own sense (see [`Metric`]).
    pub scores: Vec<f32>,
}

impl TopK {
    /// Number of queries answered.
    pub fn queries(&self) -> usize {
        self.ids.len().checked_div(self.k).unwrap_or(0)
    }

    /// Ids and scores of query `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = i * self.k..(i + 1) * self.k;
        (&self.ids[r.clone()], &self.scores[r])
    }
}

/// A candidate ordered by "cost" (lower is better), then by id, so the
/// max-heap's top is the worst one kept.
#[derive(PartialEq)]
struct Cand(f32, u32);

impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Rows per block: a block of `ROWS × dim` floats is scored against all of a
/// thread's queries before the next, so it stays in cache.
const ROWS: usize = 1024;

/// Exact top-`k` of `queries` (`q × dim`, row-major) against `data`
/// (`n × dim`), on all cores. `k` is capped at `n`; NaN scores rank last.
/// Panics if either slice's length is not a multiple of `dim` or `n`
/// exceeds `u32::MAX`.
pub fn exact_topk(data: &[f32], queries: &[f32], dim: usize, k: usize, metric: Metric) -> TopK {
    assert!(dim > 0, "exact_topk: dim must be positive");
    assert_eq!(data.len() % dim, 0, "exact_topk: data is not n × dim");
    assert_eq!(
        queries.len() % dim,
        0,
        "exact_topk: queries are not q × dim"
    );
    let n = data.len() / dim;
    assert!(
        u32::try_from(n).is_ok(),
        "exact_topk: more than u32::MAX rows"
    );
    let q = queries.len() / dim;
    let k = k.min(n);
    let mut out = TopK {
        k,
        ids: vec![0; q * k],
        scores: vec![0.0; q * k],
    };
    if q == 0 || k == 0 {
        out.ids.clear();
        out.scores.clear();
        return out;
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(q);
    let per = q.div_ceil(threads);
    let sign = if metric.higher_is_better() { -1.0 } else { 1.0 };
    std::thread::scope(|s| {
        let chunks = queries
            .chunks(per * dim)
            .zip(out.ids.chunks_mut(per * k))
            .zip(out.scores.chunks_mut(per * k));
        for ((qs, ids), scores) in chunks {
            s.spawn(move || {
                let mut heaps: Vec<BinaryHeap<Cand>> = (0..qs.len() / dim)
                    .map(|_| BinaryHeap::with_capacity(k + 1))
                    .collect();
                for (b, block) in data.chunks(ROWS * dim).enumerate() {
                    for (qv, heap) in qs.chunks_exact(dim).zip(&mut heaps) {
                        for (r, x) in block.chunks_exact(dim).enumerate() {
                            let mut cost = sign * metric.score(qv, x);
                            if cost.is_nan() {
                                cost = f32::INFINITY;
                            }
                            let id = (b * ROWS + r) as u32;
                            if heap.len() < k {
                                heap.push(Cand(cost, id));
                            } else if heap.peek().is_some_and(|w| Cand(cost, id) < *w) {
                                heap.pop();
                                heap.push(Cand(cost, id));
                            }
                        }
                    }
                }
                for (i, heap) in heaps.into_iter().enumerate() {
                    for (j, Cand(cost, id)) in heap.into_sorted_vec().into_iter().enumerate() {
                        ids[i * k + j] = id;
                        scores[i * k + j] = sign * cost;
                    }
                }
            });
        }
    });
    out
}
