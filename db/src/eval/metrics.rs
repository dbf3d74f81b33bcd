//! The retrieval evaluation's report: nDCG@10, recall@1, recall@10 and MRR@10
//! averaged over queries. The metrics themselves are `engram_metrics::ranking`'s,
//! the ones the leakage audit also reports; this is only how `engram eval
//! retrieval` aggregates and serialises them.

use engram_metrics::ranking::{ndcg_at, recall_at, reciprocal_rank};
use serde::Serialize;

/// The four figures `engram eval retrieval` reports, averaged over queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RetrievalMetrics {
    pub ndcg_at_10: f64,
    pub recall_at_1: f64,
    pub recall_at_10: f64,
    pub mrr_at_10: f64,
}

/// Accumulates per-query metrics into their means.
#[derive(Debug, Default)]
pub struct MeanMetrics {
    sum: RetrievalMetrics,
    queries: usize,
}

impl MeanMetrics {
    /// Adds one query's results (its top 10 or more, best first).
    pub fn add<T: PartialEq>(&mut self, ranked: &[T], relevant: &[T]) {
        let top = &ranked[..ranked.len().min(10)];
        self.sum.ndcg_at_10 += ndcg_at(top, relevant, 10);
        self.sum.recall_at_1 += recall_at(top, relevant, 1);
        self.sum.recall_at_10 += recall_at(top, relevant, 10);
        self.sum.mrr_at_10 += reciprocal_rank(top, relevant);
        self.queries += 1;
    }

    pub fn queries(&self) -> usize {
        self.queries
    }

    pub fn mean(&self) -> RetrievalMetrics {
        let n = self.queries.max(1) as f64;
        RetrievalMetrics {
            ndcg_at_10: self.sum.ndcg_at_10 / n,
            recall_at_1: self.sum.recall_at_1 / n,
            recall_at_10: self.sum.recall_at_10 / n,
            mrr_at_10: self.sum.mrr_at_10 / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn means_over_queries() {
        let mut m = MeanMetrics::default();
        m.add(&["a", "b"], &["a"]); // 1, 1, 1, 1
        m.add(&["a", "b"], &["b"]); // 0.630930, 0, 1, 0.5
        m.add(&["a", "b"], &["c"]); // 0, 0, 0, 0
        let mean = m.mean();
        assert_eq!(m.queries(), 3);
        assert!(close(mean.ndcg_at_10, 1.630_930 / 3.0));
        assert!(close(mean.recall_at_1, 1.0 / 3.0));
        assert!(close(mean.recall_at_10, 2.0 / 3.0));
        assert!(close(mean.mrr_at_10, 0.5));
        // Only the top 10 count.
        let mut m = MeanMetrics::default();
        let ranked: Vec<usize> = (0..20).collect();
        m.add(&ranked, &[15]);
        assert_eq!(m.mean(), RetrievalMetrics::default());
    }
}
