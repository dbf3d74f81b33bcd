//! A cluster node's graph following the shards placed on it (`shard_index.rs`), on
//! two stores sharing the in-memory log of `replicated_tests`.

use std::collections::BTreeSet;

use super::replicated_tests::{open, two_nodes_with_c, Nodes};
use super::*;
use crate::graph_dump::Opened;
use crate::shard_scope::ShardScope;

pub(super) fn vector_doc(i: u32) -> DocumentInput {
    let f = i as f32;
    DocumentInput {
        id: Some(format!("d{i}")),
        text: Some(format!("common word{} words", i % 7)),
        vector: Some(vec![f.sin(), (f * 1.3).cos(), (f * 0.37).fract(), f / 40.0]),
        ..Default::default()
    }
}

pub(super) fn shards(s: &[u32]) -> BTreeSet<u32> {
    s.iter().copied().collect()
}

/// Live chunks of collection "c" on `store` whose shard (id modulo 4) is in `held`.
fn chunks_in(store: &Store, held: &[u32]) -> usize {
    let coll = store.collection("c").unwrap();
    coll.live_chunks()
        .into_iter()
        .filter(|id| held.contains(&((id % 4) as u32)))
        .count()
}

/// Both sides of a shard ranking: (id, score) of the vector and the keyword hits.
fn ids(r: &ShardRanking) -> Vec<(String, f32)> {
    r.vector
        .iter()
        .chain(&r.keyword)
        .map(|h| (h.id.clone(), h.score))
        .collect()
}

/// Two nodes with collection "c" in 4 shards, 40 documents written through the first
/// (`a`) and applied on the second (`b`).
pub(super) fn two_nodes_with_40_documents() -> (Nodes, Arc<Store>, Arc<Store>) {
    let (n, _) = two_nodes_with_c(Some(4));
    let [a, b] = n.stores.clone();
    let seq = a
        .upsert("c", (0..40).map(vector_doc).collect())
        .unwrap()
        .seq;
    b.wait_applied(seq).unwrap();
    (n, a, b)
}

#[test]
fn a_graph_follows_the_shards_placed_on_its_node() {
    let (n, a, b) = two_nodes_with_40_documents();

    // Node b keeps shards 1 and 3 in its graph; its records stay whole.
    assert_eq!(
        b.index_shards("c", &shards(&[1, 3])).unwrap(),
        Rescoped::Rebuilt
    );
    assert_eq!(
        b.index_shards("c", &shards(&[3, 1])).unwrap(),
        Rescoped::Unchanged
    );
    let info = b.collection_info("c").unwrap();
    assert_eq!((info.documents, info.vectors), (40, 40));
    assert_eq!(info.indexed_shards, Some(vec![1, 3]));
    let held = chunks_in(&b, &[1, 3]);
    assert!(
        held > 5 && held < 35,
        "{held} of 40 chunks in shards 1 and 3"
    );
    assert_eq!(info.indexed_vectors, held);

    // It ranks those shards as a node holding every shard does, and refuses others.
    let q = QueryRequest {
        vector: Some(vec![1.0, -2.0, 0.5, 3.0]),
        text: Some("common word3".into()),
        mode: Some(QueryMode::Hybrid),
        k: Some(5),
        ..Default::default()
    };
    let qs = a.shard_queries("c", &q).unwrap();
    let pair = [qs[1].clone(), qs[3].clone()];
    assert_eq!(
        ids(&b.query_shards(&pair).unwrap()),
        ids(&a.query_shards(&pair).unwrap())
    );
    // Both sides, each only from the shards asked for (the keyword index holds
    // every shard's documents even where the graph does not).
    let ranked = b.query_shards(&pair).unwrap();
    assert!(ranked.vector.len() >= 5 && ranked.keyword.len() >= 5);
    let shard_of = |id: &str| crate::collection::shard_of(id, 4);
    assert!(ranked
        .keyword
        .iter()
        .all(|h| [1, 3].contains(&shard_of(&h.id))));
    assert!(matches!(b.query_shard(&qs[0]), Err(Error::Unavailable(_))));
    // A query embedded under another corpus context than this node's is refused.
    let other_space = ShardQuery {
        context: Some(7),
        ..qs[1].clone()
    };
    assert!(
        matches!(b.query_shard(&other_space), Err(Error::Unavailable(m)) if m.contains("context 0"))
    );
    assert_eq!(
        qs[1].context, None,
        "a vector of the caller's own carries none"
    );

    // Writes and deletes after the change reach the graph only for its shards, and a
    // delete elsewhere leaves no tombstone behind.
    let seq = a
        .upsert("c", (40..60).map(vector_doc).collect())
        .unwrap()
        .seq;
    b.wait_applied(seq).unwrap();
    let coll = b.collection("c").unwrap();
    let doomed = ["d1", "d2", "d3", "d4"];
    let doomed_here = doomed
        .iter()
        .flat_map(|id| coll.chunks_of(id))
        .filter(|c| [1, 3].contains(&(c % 4)))
        .count();
    let dead_before = coll.index().tombstone_count();
    for id in doomed {
        a.delete_document("c", id).unwrap();
    }
    b.wait_applied(a.applied_seq()).unwrap();
    let info = b.collection_info("c").unwrap();
    assert_eq!(info.vectors, 56);
    assert_eq!(info.indexed_vectors, chunks_in(&b, &[1, 3]));
    assert_eq!(
        coll.index().tombstone_count() - dead_before,
        doomed_here,
        "only deletes in the graph's shards leave tombstones"
    );
    assert_eq!(coll.index().len(), chunks_in(&b, &[1, 3]));

    // Back to every shard: the one-machine graph.
    assert_eq!(
        b.index_shards("c", &shards(&[0, 1, 2, 3])).unwrap(),
        Rescoped::Rebuilt
    );
    let info = b.collection_info("c").unwrap();
    assert_eq!((info.indexed_shards, info.indexed_vectors), (None, 56));
    let all: Vec<ShardQuery> = a.shard_queries("c", &q).unwrap();
    assert_eq!(
        ids(&b.query_shards(&all).unwrap()),
        ids(&a.query_shards(&all).unwrap())
    );

    // A restart comes back with the shards of its dump, caught up from the log.
    assert_eq!(
        b.index_shards("c", &shards(&[2])).unwrap(),
        Rescoped::Rebuilt
    );
    // As a clean shutdown would (the rebuild's background dump is skipped while an
    // earlier one still runs).
    b.wait_for_graph_dumps();
    b.persist_graphs();
    let seq = a
        .upsert("c", (60..70).map(vector_doc).collect())
        .unwrap()
        .seq;
    b.wait_applied(seq).unwrap();
    drop((a, b));
    let dirs = n.finish();
    let b = open(dirs[1].path());
    let opened = b.graph_dumps().opened("c");
    assert!(
        matches!(opened, Some(Opened::Dump { replayed, .. }) if replayed > 0),
        "{opened:?}"
    );
    assert_eq!(
        b.indexed_shards("c").unwrap(),
        ShardScope::Only(shards(&[2]))
    );
    let info = b.collection_info("c").unwrap();
    assert_eq!(info.vectors, 66);
    assert_eq!(info.indexed_vectors, chunks_in(&b, &[2]));
}

/// Scatter over two stores: shards `here` ranked by `local`, the others by `other`.
struct TwoStores {
    local: Arc<Store>,
    other: Arc<Store>,
    here: Vec<u32>,
}

impl crate::replica::ScatterQueries for TwoStores {
    fn query(&self, name: &str, req: &QueryRequest) -> Result<QueryResponse> {
        let parts = self
            .local
            .shard_queries(name, req)?
            .iter()
            .map(|q| self.holder(q.shard).query_shard(q))
            .collect::<Result<Vec<_>>>()?;
        // Each shard's documents read where its graph is.
        super::shard_fetch::gather_with(&self.local, name, req, parts, |f| {
            self.holder(f.shard).fetch_hits(f, usize::MAX)
        })
    }

    fn get_document(
        &self,
        name: &str,
        shard: u32,
        id: &str,
        with_vectors: bool,
    ) -> Result<crate::api::Document> {
        assert!(!self.here.contains(&shard), "read here, not asked for");
        self.other.get_document_here(name, id, with_vectors)
    }

    fn document_record(
        &self,
        name: &str,
        shard: u32,
        id: &str,
    ) -> Result<Option<crate::collection::DocumentRecord>> {
        assert!(!self.here.contains(&shard), "read here, not asked for");
        self.other.storage.get_document(name, id)
    }

    fn chunk_span(&self, name: &str, shard: u32, chunk: u64) -> Result<Option<(u32, u32)>> {
        assert!(!self.here.contains(&shard), "read here, not asked for");
        self.other.chunk_span_here(name, chunk)
    }

    fn shard_documents(&self, scan: &crate::ShardScan) -> Result<crate::ShardPage> {
        assert!(
            !self.here.contains(&scan.shard),
            "listed here, not asked for"
        );
        // Small pages, as a small max_payload would make them.
        self.other.shard_documents(scan, 300)
    }

    fn shard_counts(&self, name: &str, shard: u32) -> Result<crate::ShardCounts> {
        assert!(!self.here.contains(&shard), "counted here, not asked for");
        self.other.shard_counts(name, &[shard])
    }
}

impl TwoStores {
    /// The store that ranks and reads `shard`.
    fn holder(&self, shard: u32) -> &Store {
        match self.here.contains(&shard) {
            true => &self.local,
            false => &self.other,
        }
    }
}

#[test]
fn a_node_holding_some_shards_answers_whole_queries_through_the_scatter() {
    let (n, a, b) = two_nodes_with_40_documents();
    b.index_shards("c", &shards(&[1, 3])).unwrap();
    let q = QueryRequest {
        vector: Some(vec![0.5, 1.0, -0.5, 0.2]),
        k: Some(10),
        ..Default::default()
    };
    let view = |r: QueryResponse| -> Vec<(String, f32)> {
        r.hits.into_iter().map(|h| (h.id, h.score)).collect()
    };
    let whole = view(a.query("c", &q).unwrap());
    // Its own graph alone misses shards 0 and 2.
    assert_ne!(view(b.query("c", &q).unwrap()), whole);
    b.attach_scatter(Arc::new(TwoStores {
        local: b.clone(),
        other: a.clone(),
        here: vec![1, 3],
    }));
    assert_eq!(view(b.query("c", &q).unwrap()), whole);
    // Single documents: shard 0's from `a` (the scatter), shard 1's from b's own records.
    for id in (0..40).map(|i| format!("d{i}")) {
        let got = b.get_document("c", &id, true).unwrap();
        let want = a.get_document_here("c", &id, true).unwrap();
        assert_eq!(
            (got.id, got.text, got.vectors),
            (want.id, want.text, want.vectors)
        );
    }
    assert!(matches!(
        b.get_document("c", "d40", false),
        Err(Error::DocumentNotFound { .. })
    ));
    // Records (what jobs read), the same way; a missing one is None.
    for id in (0..40).map(|i| format!("d{i}")) {
        let got = b.document_record("c", &id).unwrap().unwrap();
        let want: crate::collection::DocumentRecord =
            a.storage.get_document("c", &id).unwrap().unwrap();
        assert_eq!((got.text, got.seq), (want.text, want.seq));
        // A chunk's span (an audit's target), the same way.
        let chunk = want.chunks[0];
        let span = b.chunk_span("c", &id, chunk).unwrap();
        assert!(span.is_some());
        assert_eq!(span, a.chunk_span_here("c", chunk).unwrap());
    }
    assert!(b.document_record("c", "d40").unwrap().is_none());
    assert!(b.document_record("gone", "d1").unwrap().is_none());
    // The whole collection (what promote --all and an audit list): shards 1 and 3
    // from b's records, 0 and 2 from a's pages.
    let listed = |s: &Store| {
        let mut all = Vec::new();
        s.each_document("c", |id, rec| {
            all.push((id, rec.text, rec.seq));
            Ok(())
        })
        .unwrap();
        all.sort();
        all
    };
    assert_eq!(listed(&b).len(), 40);
    assert_eq!(listed(&b), listed(&a));
    // The collection's counts: shards 1 and 3 counted here, 0 and 2 by `a`.
    let counts = |i: crate::api::CollectionInfo| (i.documents, i.vectors, i.keyword_documents);
    let whole = counts(a.collection_info("c").unwrap());
    assert_eq!(whole.0, 40);
    assert_eq!(counts(b.collection_info_all_shards("c").unwrap()), whole);
    let parts: Vec<crate::ShardCounts> =
        (0..4).map(|s| a.shard_counts("c", &[s]).unwrap()).collect();
    assert!(parts.iter().all(|p| p.documents > 0 && p.documents < 40));
    assert_eq!(
        parts.iter().map(|p| p.documents as usize).sum::<usize>(),
        whole.0
    );
    assert_eq!(
        parts.iter().map(|p| p.vectors as usize).sum::<usize>(),
        whole.1
    );
    assert_eq!(b.list_collections_all_shards().unwrap().len(), 1);
    assert!(b.shard_counts("c", &[4]).is_err());
    drop((a, b));
    n.finish();
}

#[test]
fn a_shards_hits_are_read_in_pages_that_fit_one_message() {
    let (n, a, b) = two_nodes_with_40_documents();
    let q = QueryRequest {
        vector: Some(vec![0.5, 1.0, -0.5, 0.2]),
        k: Some(10),
        ..Default::default()
    };
    // Nothing read ahead with the rankings: every winner is fetched.
    let parts: Vec<_> = a
        .shard_queries("c", &q)
        .unwrap()
        .into_iter()
        .map(|s| a.query_shard(&ShardQuery { prefetch: 0, ..s }).unwrap())
        .collect();
    let gathered = a.gather("c", &q, parts).unwrap();
    let f = gathered
        .fetches("c", &q)
        .into_iter()
        .max_by_key(|f| f.hits.len())
        .unwrap();
    assert!(f.hits.len() > 1, "{f:?}");
    let whole = b.fetch_hits(&f, usize::MAX).unwrap().hits;
    assert_eq!(whole.len(), f.hits.len());
    let first = serde_json::to_vec(&whole[0]).unwrap().len() + 1;
    let page = b.fetch_hits(&f, first).unwrap().hits;
    assert_eq!(page.len(), 1, "the next hit would not fit");
    assert_eq!(page[0].as_ref().unwrap().id, f.hits[0].id);
    assert!(matches!(
        b.fetch_hits(&f, first - 1),
        Err(Error::InvalidInput { .. })
    ));
    // A document of another shard is refused; a deleted one reads as None.
    let mut wrong = f.clone();
    wrong.shard = (f.shard + 1) % 4;
    assert!(matches!(
        b.fetch_hits(&wrong, usize::MAX),
        Err(Error::InvalidInput { .. })
    ));
    a.delete_document("c", &f.hits[0].id).unwrap();
    let after = HitFetch {
        min_seq: a.applied_seq(),
        ..f
    };
    let hits = b.fetch_hits(&after, usize::MAX).unwrap().hits;
    assert!(hits[0].is_none() && hits[1..].iter().all(Option::is_some));
    drop((a, b));
    n.finish();
}

#[test]
fn a_node_keeps_and_applies_only_the_shards_it_is_told_to_keep() {
    let (n, _) = two_nodes_with_c(Some(4));
    let [a, b] = n.stores.clone();
    b.keep_shard_records("c", &shards(&[1, 3])).unwrap();
    assert_eq!(
        b.record_shards("c").unwrap(),
        ShardScope::Only(shards(&[1, 3]))
    );
    let seq = a
        .upsert("c", (0..40).map(vector_doc).collect())
        .unwrap()
        .seq;
    b.wait_applied(seq).unwrap();
    assert_eq!(b.applied_seq(), a.applied_seq());
    let (kept, skipped) = (
        b.shard_counts("c", &[1, 3]).unwrap(),
        b.shard_counts("c", &[0, 2]).unwrap(),
    );
    assert_eq!(kept, a.shard_counts("c", &[1, 3]).unwrap());
    assert!(kept.documents > 0);
    assert_eq!(skipped, crate::ShardCounts::default());
    // Kept across a restart.
    drop((a, b));
    let dirs = n.finish();
    let b = open(dirs[1].path());
    assert_eq!(
        b.record_shards("c").unwrap(),
        ShardScope::Only(shards(&[1, 3]))
    );
    assert_eq!(
        b.shard_counts("c", &[0, 2]).unwrap(),
        crate::ShardCounts::default()
    );
    // Every shard again: stored as "all".
    b.keep_shard_records("c", &shards(&[0, 1, 2, 3])).unwrap();
    assert_eq!(b.record_shards("c").unwrap(), ShardScope::All);
    assert_eq!(b.storage.get_record_shards("c").unwrap(), None);
}
