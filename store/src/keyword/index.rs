//! One collection's inverted index for BM25, in memory, mirroring the
//! `keywords` column family that RocksDB holds (see `storage.rs`).
//!
//! Writers go through a [`KeywordUpdate`]: `write` turns it into deletes and
//! puts in the same `WriteBatch` as the documents it belongs to, and `apply`
//! changes memory once that batch is committed. Both run under the
//! collection's write lock, so the in-memory index is exactly what was
//! committed. At start-up the index is loaded back from RocksDB.
//!
//! BM25 scores whole documents, not the chunks the vector index holds: the
//! result of a query is a document, BM25's length normalisation already
//! handles long documents, and terms that straddle two overlapping windows
//! would otherwise be counted twice.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::bm25::Bm25;
use super::term_stats::{query_terms, TermStats};
use super::tokenizer::tokenize;
use crate::collection::shard_of;
use crate::error::{Error, Result};
use crate::storage::{Batch, KeywordRecord, KeywordStats, Storage};

/// A document's terms and their frequencies, computed from its text (outside
/// any lock, like embeddings).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DocTerms {
    terms: Vec<(String, u32)>,
    len: u32,
}

impl DocTerms {
    /// Tokenises and counts; the terms come out sorted, so the same text
    /// always writes the same keys.
    pub fn from_text(text: &str) -> Self {
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut len = 0u32;
        for t in tokenize(text) {
            *counts.entry(t).or_default() += 1;
            len = len.saturating_add(1);
        }
        let mut terms: Vec<(String, u32)> = counts.into_iter().collect();
        terms.sort_unstable();
        DocTerms { terms, len }
    }
}

/// The new keyword state of some documents: `Some(terms)` to index (or
/// re-index) a document, `None` to remove it. The last change of an id wins.
#[derive(Debug, Default)]
pub struct KeywordUpdate {
    changes: HashMap<String, Option<DocTerms>>,
}

impl KeywordUpdate {
    /// Records the new state of `doc`; a later call for the same id replaces
    /// an earlier one (as a later document replaces an earlier one in a batch).
    pub fn set(&mut self, doc: &str, terms: Option<DocTerms>) {
        self.changes.insert(doc.to_string(), terms);
    }
}

/// A document as the index holds it: its terms (shared with the postings) and
/// its length.
#[derive(Debug, Default)]
struct Indexed {
    terms: Vec<(Arc<str>, u32)>,
    len: u32,
}

#[derive(Debug, Default)]
struct Inverted {
    /// term -> document -> term frequency
    postings: HashMap<Arc<str>, HashMap<Arc<str>, u32>>,
    docs: HashMap<Arc<str>, Indexed>,
    total_len: u64,
    /// The collection's shard count (0 until set: one shard).
    shards: u32,
    /// Documents and their total length per shard, for [`KeywordIndex::term_stats`].
    per_shard: Vec<(u64, u64)>,
}

/// The BM25 index of one collection.
#[derive(Debug, Default)]
pub struct KeywordIndex {
    inner: RwLock<Inverted>,
    bm25: Bm25,
}

impl Inverted {
    fn stats(&self) -> KeywordStats {
        KeywordStats {
            documents: self.docs.len() as u64,
            total_terms: self.total_len,
        }
    }

    /// The shared copy of `term`, interned on first sight.
    fn intern(&mut self, term: &str) -> Arc<str> {
        match self.postings.get_key_value(term) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = term.into();
                self.postings.insert(k.clone(), HashMap::new());
                k
            }
        }
    }

    /// Counts a document of `len` terms in (`sign` 1) or out (-1) of its shard's totals.
    fn count_in_shard(&mut self, doc: &str, len: u32, sign: i64) {
        let shard = shard_of(doc, self.shards) as usize;
        if self.per_shard.len() <= shard {
            self.per_shard.resize(shard + 1, (0, 0));
        }
        let (docs, terms) = &mut self.per_shard[shard];
        *docs = docs.wrapping_add_signed(sign);
        *terms = terms.wrapping_add_signed(sign * i64::from(len));
    }

    fn remove(&mut self, doc: &str) {
        let Some(old) = self.docs.remove(doc) else {
            return;
        };
        self.total_len -= u64::from(old.len);
        self.count_in_shard(doc, old.len, -1);
        for (term, _) in &old.terms {
            if let Some(p) = self.postings.get_mut(term) {
                p.remove(doc);
                if p.is_empty() {
                    self.postings.remove(term);
                }
            }
        }
    }

    fn add_posting(&mut self, doc: &Arc<str>, term: &str, tf: u32) {
        let term = self.intern(term);
        self.postings
            .get_mut(&term)
            .expect("interned")
            .insert(doc.clone(), tf);
        self.docs
            .get_mut(doc)
            .expect("document added first")
            .terms
            .push((term, tf));
    }
}

impl KeywordIndex {
    /// An empty index (a new collection).
    pub fn new() -> Self {
        Self::default()
    }

    /// The index with per-shard totals for a collection of `shards` shards.
    pub fn with_shards(self, shards: u32) -> Self {
        {
            let mut inv = self.inner.write().expect("lock");
            inv.shards = shards;
            inv.per_shard = vec![(0, 0); shards.max(1) as usize];
            let lens: Vec<(Arc<str>, u32)> =
                inv.docs.iter().map(|(d, i)| (d.clone(), i.len)).collect();
            for (doc, len) in lens {
                inv.count_in_shard(&doc, len, 1);
            }
        }
        self
    }

    /// Loads a collection's index from storage; `None` when the collection has
    /// never had one written (a database from before keyword search), so the
    /// caller can build it from the documents. Fails if the stored postings,
    /// lengths and stats disagree.
    pub fn load(storage: &Storage, coll: &str) -> Result<Option<Self>> {
        let Some(stored) = storage.keyword_stats(coll)? else {
            return Ok(None);
        };
        let mut inv = Inverted::default();
        storage.scan_keywords(coll, |rec| {
            match rec {
                KeywordRecord::Length { doc, terms } => {
                    inv.total_len += u64::from(terms);
                    let indexed = Indexed {
                        terms: Vec::new(),
                        len: terms,
                    };
                    inv.docs.insert(doc.into(), indexed);
                }
                KeywordRecord::Posting { term, doc, tf } => {
                    let Some((doc, _)) = inv.docs.get_key_value(doc.as_str()) else {
                        return Err(Error::Corrupt(format!(
                            "keyword posting for '{doc}', which has no length record"
                        )));
                    };
                    let doc = doc.clone();
                    inv.add_posting(&doc, &term, tf);
                }
                KeywordRecord::Stats(_) => {}
            }
            Ok(())
        })?;
        if inv.stats() != stored {
            return Err(Error::Corrupt(format!(
                "keyword index of '{coll}' holds {:?} but its stats say {stored:?}",
                inv.stats()
            )));
        }
        for (doc, d) in &inv.docs {
            let sum: u64 = d.terms.iter().map(|(_, tf)| u64::from(*tf)).sum();
            if sum != u64::from(d.len) {
                return Err(Error::Corrupt(format!(
                    "keyword index of '{coll}': document '{doc}' has {sum} postings for length {}",
                    d.len
                )));
            }
        }
        Ok(Some(KeywordIndex {
            inner: RwLock::new(inv),
            bm25: Bm25::default(),
        }))
    }

    /// Adds to `batch` the storage changes `update` makes: the old postings of
    /// every changed document go, the new ones and the new stats are written.
    pub fn write(&self, update: &KeywordUpdate, storage: &Storage, batch: &mut Batch, coll: &str) {
        let inv = self.inner.read().expect("lock");
        for (doc, new) in &update.changes {
            if let Some(old) = inv.docs.get(doc.as_str()) {
                for (term, _) in &old.terms {
                    storage.delete_posting(batch, coll, term, doc);
                }
                storage.delete_keyword_length(batch, coll, doc);
            }
            if let Some(new) = new {
                for (term, tf) in &new.terms {
                    storage.put_posting(batch, coll, term, doc, *tf);
                }
                storage.put_keyword_length(batch, coll, doc, new.len);
            }
        }
        storage.put_keyword_stats(batch, coll, stats_after(&inv, update));
    }

    /// Adds to `batch` the collection's stats after `update`, from this index as it
    /// is now. Cluster mode calls it when applying a shard's message: the stats its
    /// writer put in were counted from that writer's view, which other shards'
    /// writes may have moved on since (the postings are per document, so theirs hold).
    pub fn write_stats(
        &self,
        update: &KeywordUpdate,
        storage: &Storage,
        batch: &mut Batch,
        coll: &str,
    ) {
        let inv = self.inner.read().expect("lock");
        storage.put_keyword_stats(batch, coll, stats_after(&inv, update));
    }

    /// Applies a committed update to memory.
    pub fn apply(&self, update: KeywordUpdate) {
        let mut inv = self.inner.write().expect("lock");
        for (doc, new) in update.changes {
            inv.remove(&doc);
            if let Some(new) = new {
                let doc: Arc<str> = doc.into();
                inv.total_len += u64::from(new.len);
                inv.count_in_shard(&doc, new.len, 1);
                let indexed = Indexed {
                    terms: Vec::with_capacity(new.terms.len()),
                    len: new.len,
                };
                inv.docs.insert(doc.clone(), indexed);
                for (term, tf) in &new.terms {
                    inv.add_posting(&doc, term, *tf);
                }
            }
        }
    }

    /// Documents in the index (those with text).
    pub fn len(&self) -> usize {
        self.inner.read().expect("lock").docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// BM25's statistics for `query` over the documents of `shards` (`shards[s]`:
    /// shard `s` counts; None: every document here).
    pub fn term_stats(&self, query: &str, shards: Option<&[bool]>) -> TermStats {
        let inv = self.inner.read().expect("lock");
        let Some(only) = shards else {
            return TermStats {
                documents: inv.docs.len() as u64,
                total_terms: inv.total_len,
                df: query_terms(query)
                    .iter()
                    .map(|t| inv.postings.get(t.as_str()).map_or(0, |p| p.len() as u64))
                    .collect(),
            };
        };
        let counts = |s: usize| only.get(s).copied().unwrap_or(false);
        let (documents, total_terms) = inv
            .per_shard
            .iter()
            .enumerate()
            .filter(|(s, _)| counts(*s))
            .fold((0, 0), |(d, t), (_, (sd, st))| (d + sd, t + st));
        let df = query_terms(query)
            .iter()
            .map(|t| {
                inv.postings.get(t.as_str()).map_or(0, |p| {
                    p.keys()
                        .filter(|d| counts(shard_of(d, inv.shards) as usize))
                        .count() as u64
                })
            })
            .collect();
        TermStats {
            documents,
            total_terms,
            df,
        }
    }

    /// The `k` best documents for `query` by BM25 among those `keep` accepts,
    /// best first (ties broken by id, so results are deterministic). Documents
    /// sharing no term with the query are not returned. With `stats` (the
    /// collection's, summed over shards), documents are scored with those counts
    /// instead of this index's own, as one machine holding every shard would.
    pub fn search(
        &self,
        query: &str,
        k: usize,
        keep: &dyn Fn(&str) -> bool,
        stats: Option<&TermStats>,
    ) -> Vec<(Arc<str>, f32)> {
        let inv = self.inner.read().expect("lock");
        let terms = query_terms(query);
        let (n, total) = match stats {
            Some(s) => (s.documents as usize, s.total_terms),
            None => (inv.docs.len(), inv.total_len),
        };
        if n == 0 || k == 0 {
            return Vec::new();
        }
        let avg_len = total as f32 / n as f32;
        let mut scores: HashMap<&Arc<str>, f32> = HashMap::new();
        for (i, term) in terms.iter().enumerate() {
            let Some(postings) = inv.postings.get(term.as_str()) else {
                continue;
            };
            let df = stats
                .and_then(|s| s.df.get(i))
                .map_or(postings.len(), |&d| (d as usize).max(1));
            let idf = self.bm25.idf(n, df);
            for (doc, tf) in postings {
                let len = inv.docs.get(doc).map_or(0, |d| d.len);
                *scores.entry(doc).or_default() += self.bm25.term_score(idf, *tf, len, avg_len);
            }
        }
        let mut ranked: Vec<(Arc<str>, f32)> = scores
            .into_iter()
            .filter(|(doc, _)| keep(doc))
            .map(|(doc, s)| (doc.clone(), s))
            .collect();
        let order = |a: &(Arc<str>, f32), b: &(Arc<str>, f32)| {
            b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0))
        };
        if ranked.len() > k {
            ranked.select_nth_unstable_by(k - 1, order);
            ranked.truncate(k);
        }
        ranked.sort_unstable_by(order);
        ranked
    }
}

/// The stats of `inv` once `update` is applied.
fn stats_after(inv: &Inverted, update: &KeywordUpdate) -> KeywordStats {
    let mut stats = inv.stats();
    for (doc, new) in &update.changes {
        if let Some(old) = inv.docs.get(doc.as_str()) {
            stats.documents -= 1;
            stats.total_terms -= u64::from(old.len);
        }
        if let Some(new) = new {
            stats.documents += 1;
            stats.total_terms += u64::from(new.len);
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(docs: &[(&str, &str)]) -> KeywordIndex {
        let index = KeywordIndex::new();
        let mut up = KeywordUpdate::default();
        for (id, text) in docs {
            up.set(id, Some(DocTerms::from_text(text)));
        }
        index.apply(up);
        index
    }

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn scores_match_a_hand_computed_bm25() {
        // Lengths 3, 2, 4: avgdl = 3, N = 3.
        let index = index_of(&[
            ("a", "red apple red"),
            ("b", "green apple"),
            ("c", "blue sky blue sea"),
        ]);
        let hits = index.search("red apple", 10, &all, None);
        // idf(red) = ln(1 + 2.5/1.5) = 0.980829; idf(apple) = ln(1 + 1.5/2.5) = 0.470004
        // a (|d| = avgdl, so the length norm is 1): red tf 2 -> 0.980829 * 4.4 / 3.2 = 1.348640;
        //    apple tf 1 -> 0.470004 * 2.2 / 2.2 = 0.470004; total 1.818644
        // b: apple tf 1, |d| 2: norm 0.25 + 0.75 * 2/3 = 0.75 -> 0.470004 * 2.2 / 1.9 = 0.544215
        assert_eq!(hits.len(), 2, "c shares no term");
        assert_eq!(&*hits[0].0, "a");
        assert!((hits[0].1 - 1.818_644).abs() < 1e-4, "{}", hits[0].1);
        assert_eq!(&*hits[1].0, "b");
        assert!((hits[1].1 - 0.544_215).abs() < 1e-4, "{}", hits[1].1);
        // Repeated query terms count once; unknown terms add nothing.
        let again = index.search("red red apple zebra", 10, &all, None);
        assert_eq!(again, hits);
    }

    #[test]
    fn filters_and_k_cut_the_ranking() {
        let index = index_of(&[("a", "x x x"), ("b", "x x"), ("c", "x")]);
        let top: Vec<String> = index
            .search("x", 2, &all, None)
            .into_iter()
            .map(|h| h.0.to_string())
            .collect();
        assert_eq!(top, ["a", "b"]);
        let no_a = index.search("x", 10, &|d| d != "a", None);
        assert_eq!(no_a.iter().map(|h| &*h.0).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn overwrite_and_delete_leave_no_stale_postings() {
        let index = index_of(&[("a", "alpha beta"), ("b", "beta gamma")]);
        let mut up = KeywordUpdate::default();
        up.set("a", Some(DocTerms::from_text("delta")));
        index.apply(up);
        assert!(index.search("alpha", 10, &all, None).is_empty());
        assert_eq!(&*index.search("delta", 10, &all, None)[0].0, "a");
        let beta: Vec<String> = index
            .search("beta", 10, &all, None)
            .into_iter()
            .map(|h| h.0.to_string())
            .collect();
        assert_eq!(beta, ["b"]);

        let mut up = KeywordUpdate::default();
        up.set("b", None);
        index.apply(up);
        assert!(index.search("beta gamma", 10, &all, None).is_empty());
        let inv = index.inner.read().unwrap();
        assert_eq!(
            inv.stats(),
            KeywordStats {
                documents: 1,
                total_terms: 1
            }
        );
        assert_eq!(inv.postings.len(), 1, "emptied terms are dropped");
    }

    #[test]
    fn storage_round_trip_survives_overwrites_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let index = KeywordIndex::new();
        assert!(KeywordIndex::load(&storage, "c").unwrap().is_none());
        let steps: Vec<Vec<(&str, Option<&str>)>> = vec![
            vec![("a", Some("one two two")), ("b", Some("two three"))],
            // Overwrite within one update: the last one wins.
            vec![
                ("a", Some("four")),
                ("a", Some("five five six")),
                ("c", Some("!!!")),
            ],
            vec![("b", None), ("d", Some("three six"))],
        ];
        for step in steps {
            let mut up = KeywordUpdate::default();
            for (id, text) in step {
                up.set(id, text.map(DocTerms::from_text));
            }
            let mut batch = storage.batch();
            index.write(&up, &storage, &mut batch, "c");
            storage.commit(batch, true).unwrap();
            index.apply(up);

            let loaded = KeywordIndex::load(&storage, "c").unwrap().unwrap();
            for q in [
                "one",
                "two",
                "three",
                "four",
                "five",
                "six",
                "five six three",
            ] {
                assert_eq!(
                    loaded.search(q, 10, &all, None),
                    index.search(q, 10, &all, None),
                    "{q}"
                );
            }
            assert_eq!(
                loaded.inner.read().unwrap().stats(),
                index.inner.read().unwrap().stats()
            );
        }
        let inv = index.inner.read().unwrap();
        // a (3 terms), c (0 terms, still a document), d (2 terms)
        assert_eq!(
            inv.stats(),
            KeywordStats {
                documents: 3,
                total_terms: 5
            }
        );
        let mut n = 0;
        storage
            .scan_keywords("c", |r| {
                if matches!(r, KeywordRecord::Posting { .. }) {
                    n += 1;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 4, "five, six (a) and three, six (d): nothing stale");
    }
}
