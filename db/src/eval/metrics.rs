//! Ranking metrics with binary relevance, as the BEIR / MTEB retrieval
//! benchmarks compute them. `ranked` is a query's results, best first;
//! `relevant` the documents that answer it.

use serde::Serialize;

/// nDCG@k with binary relevance (one implementation, shared with the leakage audit).
pub use engram_inverter::metrics::ndcg_at;

/// Recall@k: the share of the relevant documents found in the top k.
pub fn recall_at<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|id| relevant.contains(id))
        .count();
    found as f64 / relevant.len() as f64
}

/// 1 / rank of the first relevant result (0 when none is in `ranked`); its
/// mean over queries is the MRR (at the depth of `ranked`).
pub fn reciprocal_rank<T: PartialEq>(ranked: &[T], relevant: &[T]) -> f64 {
    ranked
        .iter()
        .position(|id| relevant.contains(id))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

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
    fn ndcg_with_one_relevant_document() {
        let ranked = ["a", "b", "c", "d"];
        assert!(close(ndcg_at(&ranked, &["a"], 10), 1.0));
        // rank 2: 1 / log2(3) = 0.630930
        assert!(close(ndcg_at(&ranked, &["b"], 10), 0.630_930));
        // rank 4: 1 / log2(5) = 0.430677
        assert!(close(ndcg_at(&ranked, &["d"], 10), 0.430_677));
        assert!(close(ndcg_at(&ranked, &["d"], 3), 0.0), "outside the cut");
        assert!(close(ndcg_at(&ranked, &["z"], 10), 0.0));
        assert!(close(ndcg_at(&ranked, &[], 10), 0.0));
    }

    #[test]
    fn ndcg_with_several_relevant_documents() {
        // relevant at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5;
        // ideal (ranks 1, 2): 1 + 0.630930 = 1.630930; nDCG = 0.919721
        assert!(close(ndcg_at(&["a", "x", "b"], &["a", "b"], 10), 0.919_721));
        // three relevant, k = 2, none found in the top 2 but one at rank 3
        assert!(close(ndcg_at(&["x", "y", "a"], &["a", "b", "c"], 2), 0.0));
    }

    #[test]
    fn recall_and_reciprocal_rank() {
        let ranked = ["x", "a", "y", "b"];
        assert!(close(recall_at(&ranked, &["a", "b"], 1), 0.0));
        assert!(close(recall_at(&ranked, &["a", "b"], 2), 0.5));
        assert!(close(recall_at(&ranked, &["a", "b"], 10), 1.0));
        assert!(close(reciprocal_rank(&ranked, &["a", "b"]), 0.5));
        assert!(close(reciprocal_rank(&ranked, &["b"]), 0.25));
        assert!(close(reciprocal_rank(&ranked, &["z"]), 0.0));
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
