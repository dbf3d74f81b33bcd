//! Scatter/gather queries: the node a query reaches sends one NATS request per
//! shard, on subject `engram.q.NAME.SHARD`, and merges the answers
//! (`Store::gather`: the same merge and fusion as one machine).
//!
//! Each replica of a shard (placement: `crate::placement`) subscribes to the
//! shard's subject in a queue group named after the shard, so NATS hands each
//! request to one live replica; a dead node's subscriptions end with its
//! connection, so its shards are answered by their other replicas at once. Every
//! node recomputes the placement every [`REPLAN_EVERY`] from the heartbeats and
//! subscribes or unsubscribes accordingly; a shard moved off a node is unsubscribed
//! only once another node's heartbeat says it serves it ([`handed_over`]).
//!
//! The local fast path: the shards the asking node itself serves are ranked
//! in-process, all of them with one walk of the graph (`Store::query_shards`),
//! instead of one NATS round trip each; only the others are requested. The asking
//! node has already applied up to the query's `min_seq` (`Store::shard_queries`
//! waits for it), so its own ranking reads the same writes a replica's would.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engram_store::api::{Hit, QueryRequest, QueryResponse};
use engram_store::replica::APPLY_WAIT;
use engram_store::shard_scope::ShardScope;
use engram_store::store::Rescoped;
use engram_store::{HitFetch, ShardQuery, ShardRanking};
use tokio::task::JoinHandle;

use crate::reply::{answer_each, ask_replica, to_store_error, ShardRequest};
use crate::{nats, Error, Node, Result};

/// Query subjects: `engram.q.` and the shard's `NAME.SHARD`.
pub const QUERY_PREFIX: &str = "engram.q.";
/// How often a node recomputes which shards it answers for.
pub const REPLAN_EVERY: Duration = Duration::from_secs(2);
/// How long a shard may take: a replica waits up to `APPLY_WAIT` for `min_seq`
/// and answers 503 then, so the request outlives that by a margin.
pub const SHARD_WAIT: Duration = Duration::from_secs(APPLY_WAIT.as_secs() + 2);

/// The subject (and queue group) of a shard's queries.
pub fn subject(collection: &str, shard: u32) -> String {
    format!("{QUERY_PREFIX}{collection}.{shard}")
}

/// Keeps this node's shard subscriptions and its graphs in line with the
/// placement, for as long as the node runs. A shard is answered only once this
/// node's graph holds it: a newly placed shard is first indexed (in the background,
/// [`regraph`]), a shard placed elsewhere is unsubscribed before the graph drops it.
pub async fn serve(node: Arc<Node>) {
    let mut serving: HashMap<(String, u32), JoinHandle<()>> = HashMap::new();
    let mut rebuilding: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut moving = None;
    loop {
        match mine(&node).await {
            Ok((mine, elsewhere)) => {
                serving.retain(|key, task| {
                    let keep = mine.contains(key) && !task.is_finished();
                    if !keep {
                        // Dropping the subscriber unsubscribes.
                        task.abort();
                    }
                    keep
                });
                rebuilding.retain(|_, task| !task.is_finished());
                crate::shard_move::reconcile(&node, &mine, &elsewhere, &mut moving);
                regraph(&node, &mine, &mut rebuilding);
                for (name, shard) in mine {
                    if serving.contains_key(&(name.clone(), shard)) {
                        continue;
                    }
                    // Indexed, and its records here: a shard being copied in is
                    // indexed page by page before it is kept (`crate::shard_move`).
                    let store = node.store.store();
                    let ready = store
                        .indexed_shards(&name)
                        .is_ok_and(|scope| scope.holds_shard(shard))
                        && store
                            .record_shards(&name)
                            .is_ok_and(|kept| kept.holds_shard(shard));
                    if !ready {
                        continue;
                    }
                    match subscribe(&node, &name, shard).await {
                        Ok(task) => {
                            serving.insert((name, shard), task);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot subscribe to a shard's queries and writes")
                        }
                    }
                }
                *node.serving.write().expect("lock") = serving.keys().cloned().collect();
            }
            Err(e) => {
                tracing::warn!(error = %e, "placement not computed; keeping the shards served")
            }
        }
        // Sooner when a copy or a rebuild finished: the next step (index the copied
        // shard, serve the rebuilt one) need not wait for the period.
        tokio::select! {
            _ = tokio::time::sleep(REPLAN_EVERY) => {}
            _ = node.replan.notified() => {}
        }
    }
}

/// Subscribes to `name`'s `shard`: its queries, its hits' fetches (`crate::fetch`)
/// and its forwarded writes (`crate::forward`), all answered by one task (aborting
/// it unsubscribes them all).
async fn subscribe(node: &Arc<Node>, name: &str, shard: u32) -> Result<JoinHandle<()>> {
    // Each subject is its own queue group: one live replica takes each request.
    let queue = |subject: String| node.client.queue_subscribe(subject.clone(), subject);
    let queries = queue(subject(name, shard)).await.map_err(nats)?;
    let fetches = queue(crate::fetch::subject(name, shard))
        .await
        .map_err(nats)?;
    let writes = queue(crate::forward::subject(name, shard))
        .await
        .map_err(nats)?;
    let (node, name) = (node.clone(), name.to_string());
    Ok(tokio::spawn(async move {
        tokio::join!(
            answer_each(node.clone(), queries, rank),
            answer_each(node.clone(), fetches, crate::fetch::read),
            answer_each(node, writes, move |node: &Node, write: &[u8]| {
                crate::forward::take(node, &name, shard, write)
            })
        );
    }))
}

/// Starts, for each collection whose graph does not hold exactly the shards placed
/// here whose records it keeps (none running for it yet), a rebuild of its graph for
/// them (`Store::index_shards`, aside like a compaction); a shard being copied in
/// (`crate::shard_move`) counts as kept, its pages indexed as they arrive. A
/// collection none of whose shards is placed here keeps an empty graph.
fn regraph(
    node: &Arc<Node>,
    mine: &BTreeSet<(String, u32)>,
    rebuilding: &mut HashMap<String, JoinHandle<()>>,
) {
    // Each collection's graph scope, shard count, kept records and the shards to
    // index, from the one listing.
    let mut placed: HashMap<String, (ShardScope, u32, ShardScope, BTreeSet<u32>)> = node
        .store
        .store()
        .list_collections()
        .into_iter()
        .map(|c| {
            let held = ShardScope::from_list(c.indexed_shards.as_deref());
            let kept = ShardScope::from_list(c.record_shards.as_deref());
            (
                c.config.name,
                (held, c.config.shards, kept, BTreeSet::new()),
            )
        })
        .collect();
    let copying = node.copying.lock().expect("lock").clone();
    for (name, shard) in mine {
        if let Some((_, _, kept, shards)) = placed.get_mut(name) {
            if kept.holds_shard(*shard) || copying.contains(&(name.clone(), *shard)) {
                shards.insert(*shard);
            }
        }
    }
    for (name, (held, count, _, shards)) in placed {
        if rebuilding.contains_key(&name) || held == ShardScope::of(&shards, count) {
            continue;
        }
        let owner = node.clone();
        let key = name.clone();
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            match owner.store.store().index_shards(&name, &shards) {
                Ok(Rescoped::Rebuilt) => {
                    owner.replan.notify_one();
                    tracing::info!(collection = %name, shards = ?shards, seconds = started.elapsed().as_secs_f64(), "graph rebuilt for the shards placed here")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(collection = %name, error = %e, "graph not rebuilt for the shards placed here; retrying")
                }
            }
        });
        rebuilding.insert(key, task);
    }
}

/// The shards this node answers for: those placed on it, and those it answers for
/// now that no other live node answers for yet ([`handed_over`]); and the shards
/// other live nodes answer for (`NAME.SHARD`, from their heartbeats).
async fn mine(node: &Node) -> Result<(BTreeSet<(String, u32)>, BTreeSet<String>)> {
    let nodes = crate::status::live_nodes(node).await?;
    let me = node.config.node_id;
    if !nodes.iter().any(|n| n.node_id == me) {
        // Just started: placed without itself, the node would let go of every shard
        // (and, with `--shard-records placed`, of their records) only to take them
        // back once its first heartbeat shows.
        return Err(Error::Unavailable(
            "this node's own heartbeat is not in the bucket yet".into(),
        ));
    }
    let placement = crate::placement::current(node, &nodes).await?;
    let others: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n.node_id != me)
        .flat_map(|n| n.serving.iter().map(String::as_str))
        .collect();
    let now = node.serving.read().expect("lock").clone();
    let mine = handed_over(&placement.replicas, me, &now, &others);
    Ok((mine, others.into_iter().map(String::from).collect()))
}

/// The shards placed on `me` by `replicas`, plus those it serves `now` that no other
/// node serves yet (`others`: `NAME.SHARD` from their heartbeats) and that still
/// exist. Why: a shard that placement moves off a node is answered by its new
/// replica only once that one has indexed it; with replication 1 nobody else would
/// answer meanwhile (503s for as long as the indexing takes), so the old node hands
/// it over only when the new one says it serves it.
fn handed_over(
    replicas: &std::collections::BTreeMap<(String, u32), Vec<u32>>,
    me: u32,
    now: &BTreeSet<(String, u32)>,
    others: &BTreeSet<&str>,
) -> BTreeSet<(String, u32)> {
    let mut mine: BTreeSet<(String, u32)> = replicas
        .iter()
        .filter(|(_, r)| r.contains(&me))
        .map(|(k, _)| k.clone())
        .collect();
    for key in now {
        let (name, shard) = key;
        if replicas.contains_key(key) && !others.contains(format!("{name}.{shard}").as_str()) {
            mine.insert(key.clone());
        }
    }
    mine
}

/// Ranks one shard's part of a query (a replica's side of [`ask`]).
fn rank(node: &Node, payload: &[u8]) -> engram_store::Result<ShardRanking> {
    let q = serde_json::from_slice::<ShardQuery>(payload).map_err(|e| {
        engram_store::Error::invalid("shard query", format!("not a shard query: {e}"))
    })?;
    node.store.store().query_shard(&q)
}

/// Asks one replica of `q`'s shard, bounded by [`SHARD_WAIT`].
async fn ask(node: &Node, q: &ShardQuery) -> Result<ShardRanking> {
    let payload = bytes::Bytes::from(serde_json::to_vec(q).expect("serialises"));
    let request = ShardRequest {
        collection: &q.collection,
        shard: q.shard,
        what: "query",
        wait: SHARD_WAIT,
        on_timeout: "",
    };
    ask_replica(node, subject(&q.collection, q.shard), payload, &request).await
}

/// Answers `req` on `name` from every shard's replicas.
pub(crate) async fn query(
    node: &Arc<Node>,
    name: String,
    req: QueryRequest,
) -> Result<QueryResponse> {
    let started = Instant::now();
    let req = Arc::new(req);
    let owner = node.store.clone();
    let (n, r) = (name.clone(), req.clone());
    let queries = tokio::task::spawn_blocking(move || owner.store().shard_queries(&n, &r))
        .await
        .map_err(nats)??;
    // One view of what this node serves for both phases.
    let serving = node.serving.read().expect("lock").clone();
    let (local, remote): (Vec<ShardQuery>, Vec<ShardQuery>) = queries
        .into_iter()
        .partition(|q| serving.contains(&(q.collection.clone(), q.shard)));
    // A keyword side is scored with the collection's BM25 counts, gathered from
    // every shard first (one more round trip), not with the counts of whatever
    // records each replica keeps.
    let term_stats = match remote.first().and_then(|q| q.text.clone()) {
        Some(text) => Some(
            crate::fetch::term_stats(
                node,
                &name,
                &text,
                local.iter().map(|q| q.shard).collect(),
                remote.iter().map(|q| q.shard).collect(),
                req.min_seq,
            )
            .await?,
        ),
        None => None,
    };
    // This node reads its own shards' winners after the merge; only a replica reads
    // ahead, to spare the fetch phase's round trip, within a quarter of a message.
    let local: Vec<ShardQuery> = local
        .into_iter()
        .map(|q| ShardQuery {
            prefetch: 0,
            term_stats: term_stats.clone(),
            ..q
        })
        .collect();
    let room = crate::message_room(&node.client) / 4;
    let remote: Vec<ShardQuery> = remote
        .into_iter()
        .map(|q| ShardQuery {
            prefetch_bytes: q.prefetch_bytes.min(room),
            term_stats: term_stats.clone(),
            ..q
        })
        .collect();
    let asked = futures_util::future::try_join_all(remote.iter().map(|q| ask(node, q)));
    let owner = node.store.clone();
    let ranked = async move {
        if local.is_empty() {
            return Ok(None);
        }
        let part = tokio::task::spawn_blocking(move || owner.store().query_shards(&local))
            .await
            .map_err(nats)??;
        Ok::<_, Error>(Some(part))
    };
    let (mut parts, local) = futures_util::future::try_join(asked, ranked).await?;
    parts.extend(local);
    let owner = node.store.clone();
    let (n, r) = (name.clone(), req.clone());
    let gathered = tokio::task::spawn_blocking(move || owner.store().gather(&n, &r, parts))
        .await
        .map_err(nats)??;
    let fetched = fetch_phase(node, gathered.fetches(&name, &req), &serving).await?;
    let owner = node.store.clone();
    let answer = tokio::task::spawn_blocking(move || {
        owner
            .store()
            .answer_gathered(&name, &req, gathered, fetched, started)
    })
    .await
    .map_err(nats)??;
    Ok(answer)
}

/// Each shard's winners read where its records are kept: this node's own shards
/// (`serving`) here, the others by one of their replicas, all at once.
async fn fetch_phase(
    node: &Arc<Node>,
    fetches: Vec<HitFetch>,
    serving: &BTreeSet<(String, u32)>,
) -> Result<Vec<(u32, Vec<Option<Hit>>)>> {
    let (local, remote): (Vec<HitFetch>, Vec<HitFetch>) = fetches
        .into_iter()
        .partition(|f| serving.contains(&(f.collection.clone(), f.shard)));
    let asked = futures_util::future::try_join_all(remote.into_iter().map(|f| async move {
        let shard = f.shard;
        Ok::<_, Error>((shard, crate::fetch::fetch(node, f).await?))
    }));
    let owner = node.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        local
            .into_iter()
            // Ranked here, so held here: no write to wait for.
            .map(|f| HitFetch { min_seq: 0, ..f })
            .map(|f| Ok((f.shard, owner.store().fetch_hits(&f, usize::MAX)?.hits)))
            .collect::<engram_store::Result<Vec<_>>>()
    });
    let (mut fetched, here) = futures_util::future::try_join(asked, async {
        read.await.map_err(nats)?.map_err(Error::from)
    })
    .await?;
    fetched.extend(here);
    Ok(fetched)
}

/// The store's whole-collection queries in cluster mode (`Store::query`, used by
/// answers and anything else that asks the store directly), sent through
/// [`query`]: this node's graph may hold only its own shards.
pub(crate) struct Hook {
    pub node: std::sync::Weak<Node>,
    pub runtime: tokio::runtime::Handle,
}

impl Hook {
    /// The node, unless it is stopping.
    pub(crate) fn node(&self) -> engram_store::Result<Arc<Node>> {
        self.node
            .upgrade()
            .ok_or_else(|| engram_store::Error::Unavailable("the cluster node is stopping".into()))
    }
}

impl engram_store::replica::ScatterQueries for Hook {
    fn query(&self, name: &str, req: &QueryRequest) -> engram_store::Result<QueryResponse> {
        let node = self.node()?;
        let (name, req) = (name.to_string(), req.clone());
        // Called from a blocking thread, like the write log's publish.
        self.runtime
            .block_on(async move { query(&node, name, req).await })
            .map_err(to_store_error)
    }

    fn get_document(
        &self,
        name: &str,
        shard: u32,
        id: &str,
        with_vectors: bool,
    ) -> engram_store::Result<engram_store::api::Document> {
        let node = self.node()?;
        self.runtime
            .block_on(crate::fetch::document(&node, name, shard, id, with_vectors))
            .map_err(to_store_error)
    }

    fn document_record(
        &self,
        name: &str,
        shard: u32,
        id: &str,
    ) -> engram_store::Result<Option<engram_store::collection::DocumentRecord>> {
        let node = self.node()?;
        self.runtime
            .block_on(crate::fetch::record(&node, name, shard, id))
            .map_err(to_store_error)
    }

    fn chunk_span(
        &self,
        name: &str,
        shard: u32,
        chunk: u64,
    ) -> engram_store::Result<Option<(u32, u32)>> {
        let node = self.node()?;
        self.runtime
            .block_on(crate::fetch::chunk_span(&node, name, shard, chunk))
            .map_err(to_store_error)
    }

    fn shard_documents(
        &self,
        scan: &engram_store::ShardScan,
    ) -> engram_store::Result<engram_store::ShardPage> {
        let node = self.node()?;
        self.runtime
            .block_on(crate::fetch::documents(&node, scan.clone()))
            .map_err(to_store_error)
    }

    fn shard_counts(
        &self,
        name: &str,
        shard: u32,
    ) -> engram_store::Result<engram_store::ShardCounts> {
        let node = self.node()?;
        self.runtime
            .block_on(crate::fetch::counts(&node, name, shard))
            .map_err(to_store_error)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_shard_moved_off_a_node_is_kept_until_another_serves_it() {
        let key = |s: u32| ("c".to_string(), s);
        // Shard 0 moved from node 1 to node 2; shard 1 stays on node 1.
        let replicas = BTreeMap::from([(key(0), vec![2]), (key(1), vec![1])]);
        let now = BTreeSet::from([key(0), key(1), ("gone".to_string(), 0)]);
        let kept = handed_over(&replicas, 1, &now, &BTreeSet::new());
        assert_eq!(
            kept,
            BTreeSet::from([key(0), key(1)]),
            "a deleted collection's is not"
        );
        // Node 2 serves it now: handed over.
        let kept = handed_over(&replicas, 1, &now, &BTreeSet::from(["c.0"]));
        assert_eq!(kept, BTreeSet::from([key(1)]));
        // A node that never served it does not start to.
        let kept = handed_over(&replicas, 3, &BTreeSet::new(), &BTreeSet::new());
        assert!(kept.is_empty());
    }
}
