//! BM25's collection statistics for one query, gathered from shards.
//!
//! Why: BM25 scores a document with the collection's document count, average length
//! and each query term's document frequency. A replica that holds only some shards'
//! documents would score with its own counts and rank differently from one machine.
//! So a scattered keyword query first asks every shard for its counts
//! ([`KeywordIndex::term_stats`](super::KeywordIndex::term_stats)), sums them
//! ([`TermStats::add`]) and sends the collection's totals with each shard's query
//! (Elasticsearch's `dfs_query_then_fetch`), and every shard scores as one machine
//! holding all of them would.

use serde::{Deserialize, Serialize};

use super::tokenizer::tokenize;

/// Documents with text, their total length in terms, and how many of them hold each
/// of a query's terms ([`query_terms`] order), over some shards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermStats {
    pub documents: u64,
    pub total_terms: u64,
    pub df: Vec<u64>,
}

impl TermStats {
    /// Adds another shard's counts for the same query (documents are in one shard
    /// each, so the sums are the union's).
    pub fn add(&mut self, other: &TermStats) {
        self.documents += other.documents;
        self.total_terms += other.total_terms;
        if self.df.len() < other.df.len() {
            self.df.resize(other.df.len(), 0);
        }
        for (d, o) in self.df.iter_mut().zip(&other.df) {
            *d += o;
        }
    }
}

/// A query's distinct terms, sorted: the order of [`TermStats::df`] on every node.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut terms = tokenize(query);
    terms.sort_unstable();
    terms.dedup();
    terms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::shard_of;
    use crate::keyword::{DocTerms, KeywordIndex, KeywordUpdate};

    const SHARDS: u32 = 4;

    fn index_of(docs: &[(String, String)], keep: impl Fn(u32) -> bool) -> KeywordIndex {
        let index = KeywordIndex::new().with_shards(SHARDS);
        let mut up = KeywordUpdate::default();
        for (id, text) in docs.iter().filter(|(id, _)| keep(shard_of(id, SHARDS))) {
            up.set(id, Some(DocTerms::from_text(text)));
        }
        index.apply(up);
        index
    }

    #[test]
    fn shards_scored_with_the_summed_stats_rank_as_the_whole_collection() {
        let words = ["red", "apple", "green", "pear", "tree", "river", "stone"];
        let docs: Vec<(String, String)> = (0..60)
            .map(|i: usize| {
                let text: Vec<&str> = (0..1 + i % 5).map(|j| words[(i * 7 + j * 3) % 7]).collect();
                (format!("d{i}"), text.join(" "))
            })
            .collect();
        let whole = index_of(&docs, |_| true);
        let low = index_of(&docs, |s| s < 2);
        let high = index_of(&docs, |s| s >= 2);
        let only_low = [true, true, false, false];
        for q in ["red apple", "pear stone river", "tree", "nothing here"] {
            // What the asking node sums: each part's stats over the shards it answers.
            let mut stats = low.term_stats(q, Some(&only_low));
            stats.add(&high.term_stats(q, Some(&[false, false, true, true])));
            assert_eq!(stats, whole.term_stats(q, None), "{q}");
            // Per-shard totals agree with counting the documents.
            let low_docs = docs
                .iter()
                .filter(|(id, _)| shard_of(id, SHARDS) < 2)
                .count();
            assert_eq!(
                low.term_stats(q, Some(&only_low)).documents,
                low_docs as u64
            );
            let in_low = |d: &str| shard_of(d, SHARDS) < 2;
            let want = whole.search(q, 10, &in_low, None);
            assert_eq!(low.search(q, 10, &|_| true, Some(&stats)), want, "{q}");
        }
        // Scored with its own counts, the part ranks otherwise: the stats matter.
        let own = low.search("red apple", 10, &|_| true, None);
        let scored = low.search(
            "red apple",
            10,
            &|_| true,
            Some(&whole.term_stats("red apple", None)),
        );
        assert_ne!(own, scored);
        // Deleting keeps the per-shard totals: the index counted out what it removed.
        let mut up = KeywordUpdate::default();
        up.set("d0", None);
        whole.apply(up);
        let all = [true; 4];
        assert_eq!(
            whole.term_stats("red", Some(&all)),
            whole.term_stats("red", None)
        );
    }

    #[test]
    fn counts_add_up_term_by_term_and_terms_are_sorted_and_distinct() {
        let mut a = TermStats {
            documents: 3,
            total_terms: 12,
            df: vec![1, 0],
        };
        a.add(&TermStats {
            documents: 2,
            total_terms: 5,
            df: vec![2, 1],
        });
        assert_eq!(
            a,
            TermStats {
                documents: 5,
                total_terms: 17,
                df: vec![3, 1]
            }
        );
        let mut empty = TermStats::default();
        empty.add(&a);
        assert_eq!(empty, a);
        assert_eq!(query_terms("red apple red"), ["apple", "red"]);
    }
}
