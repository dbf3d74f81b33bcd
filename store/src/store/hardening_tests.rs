//! Tests of the store's defences against costly requests and racing writers:
//! cached clusters, the filtered walk's work limit, compaction off the request
//! path, and what a deleted collection's incarnation keeps from its successor.

use super::*;
use crate::collection::Durability;
use crate::storage::Storage;
use serde_json::json;

fn store(dir: &Path) -> Store {
    let no_models: Box<EncoderLoader> =
        Box::new(|name| Err(engram_embedder::Error::UnsupportedModel(name.to_string())));
    Store::open_with_loader(dir, Limits::default(), no_models).unwrap()
}

const DIM: usize = 4;

/// A reproducible vector per document number.
fn vector(i: usize) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| {
            let x = (i as u64 * 8 + j + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            ((x ^ (x >> 29)) % 10_007) as f32 / 10_007.0 - 0.5
        })
        .collect()
}

fn docs(range: std::ops::Range<usize>) -> Vec<DocumentInput> {
    range
        .map(|i| DocumentInput {
            id: Some(format!("d{i}")),
            vector: Some(vector(i)),
            metadata: Some(json!({"tag": "kept"})),
            ..Default::default()
        })
        .collect()
}

/// A fast-durability vector collection holding documents `0..n`.
fn filled(e: &Store, name: &str, n: usize) -> Arc<Collection> {
    let req = CreateCollection {
        dimension: Some(DIM),
        durability: Some(Durability::Fast),
        ..Default::default()
    };
    e.create_collection(name, req).unwrap();
    for start in (0..n).step_by(1000) {
        e.upsert(name, docs(start..(start + 1000).min(n))).unwrap();
    }
    e.collection(name).unwrap()
}

/// The nearest document to `i`'s own vector.
fn nearest(e: &Store, name: &str, i: usize) -> Option<String> {
    let req = QueryRequest {
        vector: Some(vector(i)),
        k: Some(1),
        ef: Some(100),
        ..Default::default()
    };
    e.query(name, &req).unwrap().hits.pop().map(|h| h.id)
}

#[test]
fn clusters_are_computed_once_per_write_generation() {
    let dir = tempfile::tempdir().unwrap();
    let e = store(dir.path());
    let coll = filled(&e, "c", 40);
    let first = e.clusters("c", Some(3), 2).unwrap();
    let cached = coll.groupings.current().expect("cached");
    let again = e.clusters("c", Some(3), 2).unwrap();
    assert!(
        Arc::ptr_eq(&cached, &coll.groupings.current().unwrap()),
        "the second call is served from the cache"
    );
    assert_eq!(
        first.iter().map(|c| c.ids.clone()).collect::<Vec<_>>(),
        again.iter().map(|c| c.ids.clone()).collect::<Vec<_>>()
    );
    // Another k is another grouping.
    e.clusters("c", Some(2), 2).unwrap();
    assert_eq!(coll.groupings.current().unwrap().k, Some(2));
    // A write invalidates it: the new document is in the next answer.
    e.upsert("c", docs(40..41)).unwrap();
    let after = e.clusters("c", Some(2), 2).unwrap();
    let now = coll.groupings.current().unwrap();
    assert!(now.generation > cached.generation);
    assert!(after.iter().any(|c| c.ids.contains(&"d40".to_string())));
    e.delete_document("c", "d40").unwrap();
    let after = e.clusters("c", Some(2), 2).unwrap();
    assert!(after.iter().all(|c| !c.ids.contains(&"d40".to_string())));
}

#[test]
fn a_selective_filter_is_answered_exactly_after_the_walk_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let e = store(dir.path());
    // More vectors than a walk at the default ef may visit.
    let n = crate::index::filter_budget(64) + 2000;
    filled(&e, "big", n);
    let mut req = QueryRequest {
        vector: Some(vector(3)),
        k: Some(10),
        filter: Some(json!({"key": "tag", "eq": "missing"})),
        ..Default::default()
    };
    let started = Instant::now();
    let r = e.query("big", &req).unwrap();
    assert!(r.hits.is_empty());
    assert!(r.exhaustive && r.warning.is_none(), "the scan proved it");
    eprintln!("empty filtered query: {:?}", started.elapsed());
    // Three documents of n match: all three come back, complete.
    let mut again = docs(7..8);
    again.extend(docs(5000..5001));
    again.extend(docs(9999..10000));
    for d in &mut again {
        d.metadata = Some(json!({"tag": "rare"}));
    }
    e.upsert("big", again).unwrap();
    req.filter = Some(json!({"key": "tag", "eq": "rare"}));
    let r = e.query("big", &req).unwrap();
    let mut got: Vec<&str> = r.hits.iter().map(|h| h.id.as_str()).collect();
    got.sort();
    assert_eq!(got, vec!["d5000", "d7", "d9999"]);
    assert!(r.exhaustive && r.warning.is_none());
    // A filter that matches finds its documents and is complete.
    req.filter = Some(json!({"key": "tag", "eq": "kept"}));
    let r = e.query("big", &req).unwrap();
    assert_eq!(r.hits.len(), 10);
    assert_eq!(r.hits[0].id, "d3");
    assert!(r.exhaustive && r.warning.is_none());
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["exhaustive"], json!(true));
    assert!(json.get("warning").is_none());
}

#[test]
fn compaction_builds_aside_and_keeps_writes_made_during_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let e = store(dir.path());
    let coll = filled(&e, "c", 1500);
    // Fewer tombstones than a write-triggered compaction needs: this test drives it.
    for i in 0..500 {
        e.delete_document("c", &format!("d{i}")).unwrap();
    }
    assert!(!coll.needs_compaction() && !coll.is_compacting());
    let before = coll.index();
    let swapped = crate::compaction::compact(&e.storage, &coll, || {
        // Writes while the new graph is built: queries and writes go on.
        e.upsert("c", docs(5000..5010)).unwrap();
        for i in 500..505 {
            e.delete_document("c", &format!("d{i}")).unwrap();
        }
        assert_eq!(nearest(&e, "c", 5003).as_deref(), Some("d5003"));
    })
    .unwrap();
    assert!(swapped);
    let after = coll.index();
    assert!(!Arc::ptr_eq(&before, &after), "a new graph was swapped in");
    assert_eq!(
        after.tombstone_count(),
        5,
        "only the deletes made during the build"
    );
    assert_eq!(after.len(), 1000 - 5 + 10);
    for i in (505..1500).step_by(7).chain(5000..5010) {
        assert_eq!(nearest(&e, "c", i), Some(format!("d{i}")), "document {i}");
    }
    for i in [0, 250, 499, 500, 504] {
        assert_ne!(nearest(&e, "c", i), Some(format!("d{i}")), "deleted {i}");
    }
}

#[test]
fn deletes_that_cross_the_threshold_compact_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let e = store(dir.path());
    let coll = filled(&e, "c", 2200);
    let before = coll.index();
    for i in 0..1150 {
        e.delete_document("c", &format!("d{i}")).unwrap();
    }
    let waited = Instant::now();
    while coll.is_compacting() || coll.needs_compaction() {
        assert!(
            waited.elapsed().as_secs() < 60,
            "the compaction never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let after = coll.index();
    assert!(!Arc::ptr_eq(&before, &after), "a new graph was swapped in");
    assert!(after.tombstone_count() < 1150);
    assert_eq!(after.len(), 1050);
    for i in (1150..2200).step_by(5) {
        assert_eq!(nearest(&e, "c", i), Some(format!("d{i}")), "document {i}");
    }
}

#[test]
fn hit_counts_and_questions_of_a_deleted_collection_are_never_written_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = store(dir.path());
        filled(&e, "c", 20);
        let old = e.collection("c").unwrap();
        let first = old.incarnation();
        assert_ne!(first, 0);
        // A query that found its documents before the delete...
        old.hits.record(&e.storage, "c", ["d1", "d2"].into_iter());
        old.questions
            .record(&e.storage, "c", "what is d1?", &["d1"]);
        e.delete_collection("c").unwrap();
        // ...flushes its counts and question after it, into the deleted key range.
        old.hits.flush(&e.storage, "c");
        old.hits.record(&e.storage, "c", ["d3"].into_iter());
        old.hits.flush(&e.storage, "c");
        old.questions.flush(&e.storage, "c");
        old.questions.record(&e.storage, "c", "and d3?", &["d3"]);
        old.questions.flush(&e.storage, "c");
        filled(&e, "c", 20);
        assert_ne!(e.incarnation("c").unwrap(), first, "a new incarnation");
    }
    let storage = Storage::open(dir.path()).unwrap();
    let mut stored = 0;
    storage
        .scan_hits("c", |_, _| {
            stored += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(stored, 0, "no counts of the deleted collection");
    storage
        .scan_questions("c", |_, _| {
            stored += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(stored, 0, "no questions of the deleted collection");
    drop(storage);
    let e = store(dir.path());
    assert!(e.collection("c").unwrap().hits.snapshot().is_empty());
    assert!(e.questions("c").unwrap().is_empty());
}

#[test]
fn incarnations_survive_a_reopen_and_old_records_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let e = store(dir.path());
        filled(&e, "c", 3);
        let mut legacy = e.collection_info("c").unwrap().config;
        legacy.name = "old".into();
        legacy.incarnation = 0;
        let mut batch = e.storage.batch();
        e.storage.put_collection(&mut batch, "old", &legacy);
        e.storage.commit(batch, true).unwrap();
        // Creating it again with the same settings keeps it (and its incarnation).
        let req = CreateCollection {
            dimension: Some(DIM),
            durability: Some(Durability::Fast),
            ..Default::default()
        };
        let again = e.create_collection("c", req).unwrap();
        assert_eq!(again.config.incarnation, e.incarnation("c").unwrap());
        again.config.incarnation
    };
    let e = store(dir.path());
    assert_eq!(e.incarnation("c").unwrap(), first);
    let assigned = e.incarnation("old").unwrap();
    assert_ne!(assigned, 0);
    drop(e);
    assert_eq!(
        store(dir.path()).incarnation("old").unwrap(),
        assigned,
        "stored"
    );
}

/// A stage-one encoder for mechanics: one 8-dimensional unit vector per text, from
/// its bytes (the first context build, which would need MiniLM, never runs here).
pub(super) struct Bytes8;

impl engram_embedder::TextEncoder for Bytes8 {
    fn name(&self) -> &str {
        "minilm"
    }
    fn dim(&self) -> usize {
        8
    }
    fn max_tokens(&self) -> usize {
        256
    }
    fn embed(&self, texts: &[&str]) -> engram_embedder::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = [0.1f32; 8];
                for (i, b) in t.bytes().enumerate() {
                    v[i % 8] += b as f32;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / norm).collect()
            })
            .collect())
    }
    fn embed_chunked(
        &self,
        texts: &[&str],
        _: engram_embedder::Chunking,
    ) -> engram_embedder::Result<Vec<Vec<engram_embedder::Chunk>>> {
        Ok(self
            .embed(texts)?
            .into_iter()
            .zip(texts)
            .map(|(vector, t)| {
                vec![engram_embedder::Chunk {
                    index: 0,
                    start: 0,
                    end: t.len(),
                    vector,
                }]
            })
            .collect())
    }
}

/// The step after a commit fails for real (the first corpus-context build's thread
/// cannot start: no system maps its stack): the write is still acknowledged, stored
/// once, and findable; the failed start is recorded, and later writes neither fail
/// nor retry it on every call (recontextualizing does).
#[test]
fn a_failure_after_the_commit_never_fails_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let loader: Box<EncoderLoader> = Box::new(|name| match name {
        "minilm" => Ok(Arc::new(Bytes8) as Arc<dyn engram_embedder::TextEncoder>),
        other => Err(engram_embedder::Error::UnsupportedModel(other.to_string())),
    });
    let mut e = Store::open_with_loader(dir.path(), Limits::default(), loader).unwrap();
    e.context_jobs.stack_size = Some(usize::MAX / 2);
    let req = CreateCollection {
        embedder: Some("contextual".into()),
        context: Some(crate::collection::ContextSettings {
            min_documents: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    e.create_collection("ctx", req).unwrap();
    let text = |t: &str| DocumentInput {
        text: Some(t.into()),
        ..Default::default()
    };
    // Server-generated ids: a failure reported here would make a client retry and
    // store the batch twice.
    let first = e
        .upsert(
            "ctx",
            vec![
                text("The Rhine flows through Basel."),
                text("Bern is on the Aare."),
            ],
        )
        .expect("the committed write is acknowledged although its follow-up failed");
    assert_eq!(first.ids.len(), 2);
    let builds = e.context_jobs.list("ctx").unwrap();
    assert_eq!(builds.len(), 1, "the first context build was attempted");
    assert_eq!(builds[0].job.state, crate::jobs::JobState::Failed);
    let why = builds[0].job.error.as_deref().unwrap_or("");
    assert!(why.contains("could not start"), "{why}");
    for id in &first.ids {
        let doc = e.get_document("ctx", id, false).unwrap();
        assert!(doc.text.is_some());
    }
    // The next write succeeds too, and does not retry the failed build on its own.
    let second = e
        .upsert("ctx", vec![text("Zurich lies on the Limmat.")])
        .unwrap();
    assert_eq!(second.ids.len(), 1);
    assert_eq!(e.context_jobs.list("ctx").unwrap().len(), 1);
    let coll = e.collection("ctx").unwrap();
    assert_eq!(coll.document_count(), 3, "stored once each");
    let r = e
        .query(
            "ctx",
            &QueryRequest {
                text: Some("Rhine Basel".into()),
                mode: Some(crate::api::QueryMode::Keyword),
                k: Some(10),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.hits.len(), 1);
    assert_eq!(r.hits[0].id, first.ids[0]);
}

/// A bring-your-own-vector collection of 3,000 16-d documents holding only 97
/// distinct vectors (the cluster benchmark's shape): every k = 10 query at the
/// default ef gets 10 hits, and an answer is never short and marked exhaustive.
#[test]
fn a_collection_of_heavily_duplicated_vectors_answers_every_query_in_full() {
    use crate::index::{test_points, Metric};
    const D: usize = 16;
    let pool = test_points(97, D, 31);
    let picks = test_points(3000, 1, 32);
    let dir = tempfile::tempdir().unwrap();
    let e = store(dir.path());
    for metric in [Metric::Cosine, Metric::Euclidean, Metric::Dot] {
        let name = format!("{metric:?}").to_lowercase();
        let req = CreateCollection {
            dimension: Some(D),
            distance: Some(metric),
            durability: Some(Durability::Fast),
            ..Default::default()
        };
        e.create_collection(&name, req).unwrap();
        let docs: Vec<DocumentInput> = picks
            .iter()
            .enumerate()
            .map(|(i, p)| DocumentInput {
                id: Some(format!("d{i}")),
                vector: Some(pool[(p[0] * 97.0) as usize % 97].clone()),
                metadata: Some(json!({"third": i % 3})),
                ..Default::default()
            })
            .collect();
        for chunk in docs.chunks(1000) {
            e.upsert(&name, chunk.to_vec()).unwrap();
        }
        let (mut short, mut queries) = (0, 0);
        let mut queries_of = test_points(100, D, 33);
        queries_of.extend(pool.iter().cloned());
        for (q, filter) in queries_of
            .iter()
            .flat_map(|q| [(q, None), (q, Some(json!({"key": "third", "eq": 1})))])
        {
            let r = e
                .query(
                    &name,
                    &QueryRequest {
                        vector: Some(q.clone()),
                        k: Some(10),
                        filter,
                        ..Default::default()
                    },
                )
                .unwrap();
            queries += 1;
            short += usize::from(r.hits.len() < 10);
            assert!(
                r.hits.len() == 10 || !r.exhaustive,
                "{name}: {} hits marked exhaustive",
                r.hits.len()
            );
        }
        eprintln!("{name}: {short} of {queries} queries short of k = 10");
        assert_eq!(short, 0, "{name}: short answers");
    }
}
