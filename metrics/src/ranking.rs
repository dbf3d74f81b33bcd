//! Ranking metrics with binary relevance, as the BEIR / MTEB retrieval benchmarks
//! compute them. `ranked` is a query's results, best first; `relevant` the documents
//! that answer it. The database's retrieval evaluation and the leakage audit's cost
//! of a defence (nDCG@10 with and without it) both use these, so the two nDCGs are
//! one measure.

/// nDCG@k: the discounted gain of the relevant documents in the top k,
/// sum of 1 / log2(rank + 1), divided by the best possible (all relevant
/// documents first). 0 when nothing is relevant.
pub fn ndcg_at<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> f64 {
    let gain = |rank: usize| 1.0 / (rank as f64 + 1.0).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, id)| relevant.contains(id))
        .map(|(i, _)| gain(i + 1))
        .sum();
    let ideal: f64 = (1..=relevant.len().min(k)).map(gain).sum();
    if ideal > 0.0 {
        dcg / ideal
    } else {
        0.0
    }
}

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
        assert!(close(recall_at(&ranked, &["z"], 10), 0.0));
        assert!(close(recall_at::<&str>(&ranked, &[], 10), 0.0));
        assert!(close(reciprocal_rank(&ranked, &["a", "b"]), 0.5));
        assert!(close(reciprocal_rank(&ranked, &["b"]), 0.25));
        assert!(close(reciprocal_rank(&ranked, &["z"]), 0.0));
    }
}
