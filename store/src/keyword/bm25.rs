//! Okapi BM25, the scoring function of keyword search, kept apart from the
//! index so the formula can be read (and checked by hand) in one place.
//!
//! score(q, d) = sum over distinct query terms t in d of
//!     idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
//! with Lucene's non-negative idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)).

/// BM25's two knobs, at the values Lucene and Elasticsearch ship.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25 {
    /// Term-frequency saturation: how fast repeats of a term stop adding score.
    pub k1: f32,
    /// Length normalisation: 0 ignores document length, 1 divides by it fully.
    pub b: f32,
}

impl Default for Bm25 {
    fn default() -> Self {
        Bm25 { k1: 1.2, b: 0.75 }
    }
}

impl Bm25 {
    /// Inverse document frequency of a term found in `df` of `n` documents.
    pub fn idf(&self, n: usize, df: usize) -> f32 {
        let (n, df) = (n as f32, df as f32);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// One term's contribution to a document's score.
    pub fn term_score(&self, idf: f32, tf: u32, doc_len: u32, avg_len: f32) -> f32 {
        let tf = tf as f32;
        let norm = 1.0 - self.b + self.b * doc_len as f32 / avg_len.max(f32::MIN_POSITIVE);
        idf * tf * (self.k1 + 1.0) / (tf + self.k1 * norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_matches_hand_computed_values() {
        let bm = Bm25::default();
        // N = 3, df = 1: ln(1 + 2.5 / 1.5) = ln(2.6667) = 0.98083
        assert!((bm.idf(3, 1) - 0.980_829).abs() < 1e-5);
        // A term in every document still scores a little: ln(1 + 0.5 / 3.5) = 0.13353
        assert!((bm.idf(3, 3) - 0.133_531).abs() < 1e-5);
    }

    #[test]
    fn term_score_matches_hand_computed_values() {
        let bm = Bm25::default();
        // tf 2, |d| = 10, avgdl = 5: norm = 0.25 + 0.75 * 2 = 1.75
        // 1.0 * 2 * 2.2 / (2 + 1.2 * 1.75) = 4.4 / 4.1 = 1.073171
        assert!((bm.term_score(1.0, 2, 10, 5.0) - 1.073_171).abs() < 1e-5);
        // An average-length document: norm = 1; 0.5 * 1 * 2.2 / 2.2 = 0.5
        assert!((bm.term_score(0.5, 1, 5, 5.0) - 0.5).abs() < 1e-6);
        // Repeats saturate towards idf * (k1 + 1).
        assert!(bm.term_score(1.0, 1000, 5, 5.0) < 2.2);
    }
}
