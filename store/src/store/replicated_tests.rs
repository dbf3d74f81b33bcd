//! Cluster mode's store side without a transport: two stores share an in-memory log
//! with the same compare-and-set on a collection's last sequence as JetStream's, each
//! followed by a thread that applies it. Writes through both converge to the same
//! records and indexes; creation and deletion replicate; a restart resumes after the
//! applied sequence.

use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::*;
use crate::collection::DocumentRecord;
use crate::replica::{Published, Replicator, Subject};
use crate::storage::Batch;
use crate::{ContextBuild, ContextQueue};

/// The log: (subject, incarnation, encoded batch) at sequence index + 1.
#[derive(Default)]
struct MemLog {
    entries: Mutex<Vec<(String, u64, Vec<u8>)>>,
    grew: Condvar,
    conflicts: AtomicU64,
}

impl Replicator for MemLog {
    fn publish(
        &self,
        subject: Subject<'_>,
        incarnation: u64,
        expected: u64,
        batch: &Batch,
    ) -> Result<Published> {
        let key = subject.key();
        let mut entries = self.entries.lock().unwrap();
        let last = entries
            .iter()
            .rposition(|(s, _, _)| *s == key)
            .map_or(0, |i| i as u64 + 1);
        if last != expected {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
            return Ok(Published::Conflict(Some(last)));
        }
        entries.push((key, incarnation, batch.encode()));
        self.grew.notify_all();
        Ok(Published::Seq(entries.len() as u64))
    }
}

pub(super) fn open(dir: &Path) -> Arc<Store> {
    let no_models: Box<EncoderLoader> =
        Box::new(|name| Err(engram_embedder::Error::UnsupportedModel(name.to_string())));
    Arc::new(Store::open_with_loader(dir, Limits::default(), no_models).unwrap())
}

/// Attaches `store` to `log` and applies the log to it until `stop`.
fn follow(store: Arc<Store>, log: Arc<MemLog>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let mut next = store.attach_replicator(log.clone()).unwrap() as usize;
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let entries = log.entries.lock().unwrap();
            let (entries, _) = log
                .grew
                .wait_timeout_while(entries, Duration::from_millis(20), |e| e.len() <= next)
                .unwrap();
            let todo: Vec<(String, u64, Vec<u8>)> = entries[next..].to_vec();
            drop(entries);
            for (key, incarnation, bytes) in todo {
                next += 1;
                let batch = Batch::decode(&bytes).unwrap();
                store
                    .apply_replicated(next as u64, &key, incarnation, batch)
                    .unwrap();
            }
        }
    })
}

fn doc(i: u64, round: u64) -> DocumentInput {
    DocumentInput {
        id: Some(format!("d{}", i % 40)),
        text: Some(format!("word{round} shared text {i}")),
        vector: Some(
            (0..4)
                .map(|j| ((i * 7 + j + round) % 13) as f32 - 6.0)
                .collect(),
        ),
        ..Default::default()
    }
}

/// Per document: its id, text and chunk ids.
type Docs = Vec<(String, Option<String>, Vec<u64>)>;

/// What a node holds: its documents and the keyword stats.
fn state(s: &Store) -> (Docs, Option<crate::storage::KeywordStats>) {
    let mut docs = Vec::new();
    s.storage
        .scan_documents::<DocumentRecord>("c", |id, d| {
            docs.push((id, d.text, d.chunks));
            Ok(())
        })
        .unwrap();
    (docs, s.storage.keyword_stats("c").unwrap())
}

/// Two stores on one in-memory log, each followed by a thread until `stop`.
pub(super) struct Nodes {
    log: Arc<MemLog>,
    stop: Arc<AtomicBool>,
    dirs: [tempfile::TempDir; 2],
    pub(super) stores: [Arc<Store>; 2],
    followers: Vec<JoinHandle<()>>,
}

fn two_nodes() -> Nodes {
    two_nodes_opened(open)
}

/// [`two_nodes`] with stores opened by `open`.
fn two_nodes_opened(open: impl Fn(&Path) -> Arc<Store>) -> Nodes {
    let log = Arc::new(MemLog::default());
    let stop = Arc::new(AtomicBool::new(false));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let stores = [open(dirs[0].path()), open(dirs[1].path())];
    let followers = stores
        .iter()
        .map(|s| follow(s.clone(), log.clone(), stop.clone()))
        .collect();
    Nodes {
        log,
        stop,
        dirs,
        stores,
        followers,
    }
}

impl Nodes {
    /// Runs `work(node index, store)` on every node in its own thread at once (the
    /// writers race, which is what the convergence tests need); their results in
    /// node order.
    fn on_each_at_once<T: Send + 'static>(
        &self,
        work: impl Fn(usize, Arc<Store>) -> T + Send + Clone + 'static,
    ) -> Vec<T> {
        let threads: Vec<_> = self
            .stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (s, work) = (s.clone(), work.clone());
                std::thread::spawn(move || work(i, s))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    /// The log's messages after `seq` on subject `key`: (sequence, subject,
    /// incarnation, batch).
    pub(super) fn entries_after(&self, seq: u64, key: &str) -> Vec<(u64, String, u64, Batch)> {
        let entries = self.log.entries.lock().unwrap();
        (seq as usize..entries.len())
            .filter(|&i| entries[i].0 == key)
            .map(|i| {
                let (k, incarnation, bytes) = &entries[i];
                (
                    i as u64 + 1,
                    k.clone(),
                    *incarnation,
                    Batch::decode(bytes).unwrap(),
                )
            })
            .collect()
    }

    /// Stops the followers and closes the stores; their directories stay.
    pub(super) fn finish(self) -> [tempfile::TempDir; 2] {
        self.stop.store(true, Ordering::SeqCst);
        for f in self.followers {
            f.join().unwrap();
        }
        drop(self.stores);
        self.dirs
    }
}

/// Two nodes with collection "c" (4-d vectors, euclidean, `shards` shards) created
/// through the first; the creation request, to send again.
pub(super) fn two_nodes_with_c(shards: Option<u32>) -> (Nodes, CreateCollection) {
    let nodes = two_nodes();
    let req = CreateCollection {
        dimension: Some(4),
        distance: Some(crate::index::Metric::Euclidean),
        shards,
        ..Default::default()
    };
    nodes.stores[0].create_collection("c", req.clone()).unwrap();
    // Both hold it before the test goes on (the second applies it from the log).
    let seq = nodes.stores[0].applied_seq();
    nodes.stores[1].wait_applied(seq).unwrap();
    (nodes, req)
}

#[test]
fn two_stores_writing_the_same_documents_converge_through_the_log() {
    let (n, req) = two_nodes_with_c(None);
    // The same settings again on the other node: the existing one.
    n.stores[1].create_collection("c", req).unwrap();
    // Both nodes replace the same 40 ids at once: every write is built on the latest
    // state (a lost race is rebuilt), so no chunk is orphaned and the stats add up.
    n.on_each_at_once(|n, s| {
        for i in 0..150u64 {
            let r = s.upsert("c", vec![doc(i, n as u64)]).unwrap();
            assert!(r.seq > 0);
        }
    });
    let last = n.log.entries.lock().unwrap().len() as u64;
    assert_eq!(last, 1 + 300, "one creation and 300 writes");
    assert!(
        n.log.conflicts.load(Ordering::SeqCst) > 0,
        "the race was exercised"
    );
    n.stores[1].delete_document("c", "d3").unwrap();
    let last = last + 1;
    for s in &n.stores {
        s.wait_applied(last).unwrap();
    }
    let (a, b) = (state(&n.stores[0]), state(&n.stores[1]));
    assert_eq!(a, b);
    assert_eq!(a.0.len(), 39);
    assert_eq!(a.1.unwrap().documents, 39);
    for s in &n.stores {
        let coll = s.collection("c").unwrap();
        let live: std::collections::HashSet<u64> = a.0.iter().flat_map(|d| d.2.clone()).collect();
        assert_eq!(
            coll.live_chunks(),
            live,
            "graph holds exactly the documents' chunks"
        );
        assert_eq!(coll.keywords().len(), 39);
    }
    let q = QueryRequest {
        vector: Some(vec![1.0, -2.0, 0.5, 3.0]),
        k: Some(10),
        min_seq: Some(last),
        ..Default::default()
    };
    let ids = |s: &Store| -> Vec<String> {
        s.query("c", &q)
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect()
    };
    assert_eq!(ids(&n.stores[0]), ids(&n.stores[1]));
    let too_far = QueryRequest {
        min_seq: Some(last + 5),
        ..q.clone()
    };
    let started = std::time::Instant::now();
    let err = n.stores[0].query("c", &too_far).unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(started.elapsed() >= crate::replica::APPLY_WAIT);

    // Deletion replicates; the applied sequence survives a reopen.
    n.stores[0].delete_collection("c").unwrap();
    n.stores[1].wait_applied(last + 1).unwrap();
    assert!(n.stores[1].collection("c").is_err());
    let dirs = n.finish();
    let reopened = open(dirs[1].path());
    let log2 = Arc::new(MemLog::default());
    assert_eq!(reopened.attach_replicator(log2).unwrap(), last + 1);
}

#[test]
fn batches_spanning_shards_publish_one_message_per_shard_and_converge() {
    let (n, _) = two_nodes_with_c(Some(4));
    let shards_of = |ids: &[String]| -> std::collections::BTreeSet<u32> {
        ids.iter()
            .map(|id| crate::collection::shard_of(id, 4))
            .collect()
    };
    // Batches of 6 documents: the two nodes overlap on half their ids.
    let last = n
        .on_each_at_once(|n, s| {
            let mut last = 0;
            for round in 0..25u64 {
                let docs: Vec<DocumentInput> = (0..6)
                    .map(|j| doc(round * 6 + j + n as u64 * 3, round))
                    .collect();
                last = s.upsert("c", docs).unwrap().seq;
            }
            last
        })
        .into_iter()
        .max()
        .unwrap();
    let messages = n.log.entries.lock().unwrap().clone();
    assert!(
        messages
            .iter()
            .all(|(s, _, _)| s == "c" || s.starts_with("c.")),
        "one subject per shard"
    );
    let per_write = shards_of(&(0..6).map(|j| format!("d{j}")).collect::<Vec<_>>()).len();
    assert!(per_write > 1, "a batch of 6 spans several of 4 shards");
    assert!(
        messages.len() > 1 + 50,
        "{} messages for 50 batches",
        messages.len()
    );
    for s in &n.stores {
        s.wait_applied(last).unwrap();
    }
    let (a, b) = (state(&n.stores[0]), state(&n.stores[1]));
    assert_eq!(a, b);
    assert_eq!(a.1.unwrap().documents, a.0.len() as u64);
    // Chunk ids never collide across shards: one owner per id.
    let ids: Vec<u64> = a.0.iter().flat_map(|d| d.2.clone()).collect();
    let unique: std::collections::HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len());
    for (id, _, chunks) in &a.0 {
        let shard = crate::collection::shard_of(id, 4);
        assert!(chunks.iter().all(|c| c % 4 == u64::from(shard)), "{id}");
    }

    // A shard's write for an earlier incarnation of the collection is skipped.
    let seq = n.log.entries.lock().unwrap().len() as u64 + 1;
    let stale = n.stores[1].storage.batch();
    n.stores[1]
        .apply_replicated(seq, "c.1", 12345, stale)
        .unwrap();
    assert!(n.stores[1].replication.was_skipped(seq));
    assert_eq!(n.stores[1].applied_seq(), seq);

    let dirs = n.finish();
    // Reopened, each node's keyword index agrees with its stored stats (opening
    // checks it) and with the other node's.
    let reopened = [open(dirs[0].path()), open(dirs[1].path())];
    assert_eq!(state(&reopened[0]), state(&reopened[1]));
}

#[test]
fn shard_chunk_ids_rise_and_keep_their_residue() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut seen = 0;
    for shard in [3, 0, 7, 7, 1] {
        let id = s.shard_chunk_id(shard, 8);
        assert!(id > seen);
        assert_eq!(id % 8, u64::from(shard));
        seen = id;
    }
    assert_eq!(s.shard_chunk_id(0, 1), seen + 1);
}

#[test]
fn a_query_gathered_from_its_shards_answers_as_one_machine() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for metric in [
        crate::index::Metric::Euclidean,
        crate::index::Metric::Cosine,
    ] {
        let name = format!("c{}", metric as u8);
        let req = CreateCollection {
            dimension: Some(4),
            distance: Some(metric),
            shards: Some(5),
            ..Default::default()
        };
        s.create_collection(&name, req).unwrap();
        // Distinct vectors and BM25 scores: no ties, whose order is arbitrary.
        let docs: Vec<DocumentInput> = (0..30u32)
            .map(|i| {
                let f = i as f32;
                DocumentInput {
                    id: Some(format!("d{i}")),
                    text: Some(format!(
                        "{}{}end",
                        "word1 ".repeat(i as usize % 5 + 1),
                        "filler ".repeat(i as usize % 7)
                    )),
                    vector: Some(vec![f.sin(), (f * 1.3).cos(), (f * 0.37).fract(), f / 40.0]),
                    ..Default::default()
                }
            })
            .collect();
        s.upsert(&name, docs).unwrap();
        let base = QueryRequest {
            vector: Some(vec![1.0, -2.0, 0.5, 3.0]),
            text: Some("word1 filler".into()),
            k: Some(7),
            ..Default::default()
        };
        let modes = [
            QueryRequest {
                text: None,
                ..base.clone()
            },
            QueryRequest {
                vector: None,
                mode: Some(QueryMode::Keyword),
                ..base.clone()
            },
            QueryRequest {
                mode: Some(QueryMode::Hybrid),
                ..base.clone()
            },
            QueryRequest {
                mode: Some(QueryMode::Hybrid),
                fusion: Some(crate::fusion::Fusion::Rrf { k: 60.0 }),
                filter: Some(serde_json::json!({"not": {"key": "x", "eq": 1}})),
                ..base.clone()
            },
        ];
        for q in &modes {
            let one = s.query(&name, q).unwrap();
            let qs = s.shard_queries(&name, q).unwrap();
            let parts: Vec<ShardRanking> = qs.iter().map(|sq| s.query_shard(sq).unwrap()).collect();
            assert_eq!(parts.len(), 5);
            assert!(
                parts
                    .iter()
                    .filter(|p| !p.vector.is_empty() || !p.keyword.is_empty())
                    .count()
                    > 1
            );
            // The asking node's own shards (0, 2 and 3) ranked in one walk, the
            // others as their remote replicas answer; and every shard local.
            let local = s.query_shards(&[qs[0].clone(), qs[2].clone(), qs[3].clone()]);
            let mut mixed = vec![local.unwrap()];
            mixed.extend([1, 4].map(|i| s.query_shard(&qs[i]).unwrap()));
            let all_local = vec![s.query_shards(&qs).unwrap()];
            // Nothing read ahead: every winner is fetched.
            let unread: Vec<ShardRanking> = qs
                .iter()
                .map(|sq| {
                    let sq = ShardQuery {
                        prefetch: 0,
                        ..sq.clone()
                    };
                    s.query_shard(&sq).unwrap()
                })
                .collect();
            assert!(unread.iter().all(|p| p.hits.is_empty()));
            // BM25's counts gathered shard by shard first (the keyword round).
            let counted: Vec<ShardRanking> = qs
                .iter()
                .map(|sq| {
                    let stats = sq.text.as_deref().map(|t| {
                        let mut sum = crate::keyword::TermStats::default();
                        for shard in 0..5 {
                            sum.add(&s.term_stats(&name, t, &[shard], None).unwrap());
                        }
                        sum
                    });
                    let sq = ShardQuery {
                        term_stats: stats,
                        ..sq.clone()
                    };
                    s.query_shard(&sq).unwrap()
                })
                .collect();
            assert!(parts.iter().any(|p| !p.hits.is_empty()), "read ahead");
            let view = |r: &QueryResponse| -> Vec<(String, f32, ChunkSpan)> {
                r.hits
                    .iter()
                    .map(|h| (h.id.clone(), h.score, h.chunk.clone()))
                    .collect()
            };
            assert_eq!(one.hits.len(), 7, "{q:?}");
            let ways = [
                ("remote", parts),
                ("remote, nothing read ahead", unread),
                ("remote, with the collection's BM25 counts", counted),
                ("mixed", mixed),
                ("local", all_local),
            ];
            for (how, parts) in ways {
                // Each shard's winners read one hit a page, as a small max_payload would.
                let gathered = super::shard_fetch::gather_with(&s, &name, q, parts, |f| {
                    let first = HitFetch {
                        hits: f.hits[..1].to_vec(),
                        ..f.clone()
                    };
                    s.fetch_hits(&first, usize::MAX)
                })
                .unwrap();
                assert_eq!(view(&one), view(&gathered), "{how} {metric:?} {q:?}");
            }
        }
        // A replica refuses a shard the collection does not have.
        assert!(s.term_stats(&name, "x", &[5], None).is_err());
        let mut bad = s.shard_queries(&name, &modes[0]).unwrap().remove(0);
        bad.shard = 5;
        assert!(matches!(
            s.query_shard(&bad),
            Err(Error::InvalidInput { .. })
        ));
        // Shards ranked together must be one query's.
        let mut qs = s.shard_queries(&name, &modes[0]).unwrap();
        qs[1].depth += 1;
        assert!(matches!(
            s.query_shards(&qs),
            Err(Error::InvalidInput { .. })
        ));
    }
}

#[test]
fn an_audit_report_stored_on_one_node_is_held_by_every_node_and_goes_with_its_collection() {
    let (n, req) = two_nodes_with_c(None);
    let incarnation = n.stores[0].incarnation("c").unwrap();
    let seq = n.stores[0]
        .put_audit("c", incarnation, "a1", br#"{"report":1}"#)
        .unwrap()
        .expect("cluster mode returns the report's sequence");
    n.stores[1].wait_applied(seq).unwrap();
    let audits = |s: &Store| {
        let mut out = Vec::new();
        s.storage
            .scan_audits("c", |id, v| {
                out.push((id.to_string(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        out
    };
    let want = vec![("a1".to_string(), br#"{"report":1}"#.to_vec())];
    assert_eq!(audits(&n.stores[0]), want);
    assert_eq!(audits(&n.stores[1]), want);

    // Deleted, then made again: the report went with the first, and a report of the
    // first (an audit that finished late) is refused, not stored in the second.
    n.stores[1].delete_collection("c").unwrap();
    n.stores[0].create_collection("c", req).unwrap();
    let last = n.log.entries.lock().unwrap().len() as u64;
    for s in &n.stores {
        s.wait_applied(last).unwrap();
        assert!(audits(s).is_empty());
    }
    let late = n.stores[1].put_audit("c", incarnation, "a2", b"{}");
    assert!(
        matches!(late, Err(Error::CollectionNotFound(_))),
        "{late:?}"
    );
    n.finish();
}

/// The work queue as a record of the context builds asked of it.
#[derive(Default)]
struct Asked(Mutex<Vec<(ContextBuild, crate::ContextRequest)>>);

impl ContextQueue for Asked {
    fn queue(&self, first: ContextBuild, request: crate::ContextRequest) -> Result<()> {
        self.0.lock().unwrap().push((first, request));
        Ok(())
    }
}

/// Cluster mode queues context builds rather than running them here: the write that
/// brings the collection to `min_documents` makes every node ask for the first
/// context once, under the id every node uses (incarnation and version 1), and
/// later writes do not ask again; a recontextualization is queued under an id of its
/// own; a node not joined to the queue yet says so (503) rather than building alone.
#[test]
fn cluster_mode_queues_context_builds_under_shared_ids() {
    let n = two_nodes_opened(|dir| {
        let loader: Box<EncoderLoader> = Box::new(|name| match name {
            "minilm" => Ok(Arc::new(super::hardening_tests::Bytes8) as _),
            other => Err(engram_embedder::Error::UnsupportedModel(other.to_string())),
        });
        Arc::new(Store::open_with_loader(dir, Limits::default(), loader).unwrap())
    });
    let req = CreateCollection {
        embedder: Some("contextual".into()),
        context: Some(crate::collection::ContextSettings {
            min_documents: 3,
            ..Default::default()
        }),
        ..Default::default()
    };
    n.stores[0].create_collection("ctx", req).unwrap();
    let text = |id: &str, t: &str| DocumentInput {
        id: Some(id.into()),
        text: Some(t.into()),
        ..Default::default()
    };
    let two = vec![
        text("a", "The Rhine flows through Basel."),
        text("b", "Bern is on the Aare."),
    ];
    let seq = n.stores[0].upsert("ctx", two).unwrap().seq;
    // Node 1 must hold both documents before it is asked (its follower may lag).
    n.stores[1].wait_applied(seq).unwrap();
    let early = n.stores[1].recontextualize("ctx").unwrap_err();
    assert!(matches!(early, Error::Unavailable(_)), "{early}");

    let asked: [Arc<Asked>; 2] = Default::default();
    for (s, a) in n.stores.iter().zip(&asked) {
        s.set_context_queue(a.clone());
    }
    let third = vec![text("c", "Geneva sits where the Rhone leaves the lake.")];
    let seq = n.stores[1].upsert("ctx", third).unwrap().seq;
    n.stores[0].wait_applied(seq).unwrap();
    let want = crate::ContextRequest {
        version: 1,
        incarnation: n.stores[0].incarnation("ctx").unwrap(),
    };
    let listed = |a: &Asked| a.0.lock().unwrap().clone();
    for a in &asked {
        let got = listed(a);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].1, want);
        assert_eq!(got[0].0.job.id, want.job_id());
        assert_eq!(got[0].0.job.stage, "queued");
        assert_eq!(got[0].0.job.total, 3);
    }
    let fourth = vec![text("d", "Zurich lies on the Limmat.")];
    let seq = n.stores[0].upsert("ctx", fourth).unwrap().seq;
    n.stores[1].wait_applied(seq).unwrap();
    assert_eq!(listed(&asked[0]).len(), 1, "asked once");
    assert_eq!(listed(&asked[1]).len(), 1, "asked once");

    let info = n.stores[1].recontextualize("ctx").unwrap();
    let got = listed(&asked[1]);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].1, want, "still version 1: none is installed");
    let id = &got[1].0.job.id;
    assert!(id.starts_with(&format!("{}-", want.job_id())), "{id}");
    assert_ne!(id, &got[0].0.job.id);
    assert_eq!(info.corpus_context.unwrap().version, 0);
    for s in &n.stores {
        assert!(
            s.context_jobs().list("ctx").unwrap().is_empty(),
            "nothing built here"
        );
    }
    n.finish();
}
