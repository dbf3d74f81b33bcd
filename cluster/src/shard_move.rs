//! Records that follow placement (`--shard-records placed`, the default): a shard
//! newly placed on this node is copied in from a node that serves it before this
//! node serves it (restored from a snapshot and the log when no other node does:
//! `crate::shard_restore`), and a shard placed elsewhere is let go once another
//! node serves it and this node's graph no longer holds it.
//!
//! The copy: one replica of the shard, asked on the shard's fetch subject, exports
//! it at a sequence at or after this node's applied one (`Store::export_shard`,
//! consistent at one point of the log) into the object store [`BUCKET`]; the copy is
//! read back and imported while this node's follower goes on (passing over the
//! shard's writes, which [`crate::hold`] keeps aside); then the follower is held
//! between two messages while the writes it passed over after the copy's sequence
//! are applied on top of the copy (`Store::apply_shard_tail`) and the shard is added
//! to the kept ones, and it goes on, applying the shard's later writes itself. Why
//! the object store and not pages on the fetch subject: a shard's copy is larger
//! than a NATS message, and its queue group would hand each page's request to any
//! replica.
//!
//! What the node pays: its follower is held only while the copy's tail is applied
//! (the shard's writes during the copy; milliseconds unless the shard is busy).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::object_store::ObjectMetadata;
use engram_store::log::Batch;
use engram_store::shard_scope::ShardScope;
use engram_store::store::{ShardDocument, ShardExport};
use engram_store::Store;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::{nats, Error, Node, Result};

/// The object store bucket of shard copies in transit (each deleted once imported).
pub const BUCKET: &str = "engram-shard-copies";
/// Documents imported per batch.
const PAGE: usize = 256;
/// How long the follower may take to pass the copy's sequence.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);

/// Which shards' records a node keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShardRecords {
    /// Every shard's: every node applies every write, and any node's snapshot holds
    /// the whole database.
    All,
    /// Only the shards placed on the node (the default): disk and applied writes
    /// scale out with the nodes; a node keeping only some shards snapshots those.
    #[default]
    Placed,
}

impl FromStr for ShardRecords {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "all" => Ok(ShardRecords::All),
            "placed" => Ok(ShardRecords::Placed),
            other => Err(Error::Config(format!(
                "shard records '{other}': use 'all' (every shard's records on every node) or 'placed' (only the shards placed on the node)"
            ))),
        }
    }
}

/// A replica's answer to an export: where the copy is and what it holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Exported {
    pub export: ShardExport,
    /// Its object's name in [`BUCKET`].
    pub object: String,
    pub bytes: u64,
}

async fn bucket(node: &Node) -> Result<async_nats::jetstream::object_store::ObjectStore> {
    // One replica: a copy lives for seconds, and a lost one is asked for again.
    crate::object_bucket(&node.js, BUCKET, "Engram shard copies in transit", 1).await
}

fn io(e: impl std::fmt::Display) -> engram_store::Error {
    engram_store::Error::Unavailable(format!("shard copy: {e}"))
}

/// A replica's side: waits until it has applied `min_seq`, exports `collection`'s
/// `shard` (one JSON document a line) and uploads it. Runs on a blocking thread.
pub(crate) fn export(
    node: &Node,
    collection: &str,
    shard: u32,
    min_seq: u64,
) -> engram_store::Result<Exported> {
    let store = node.store.store();
    store.wait_applied(min_seq)?;
    if !store.record_shards(collection)?.holds_shard(shard) {
        return Err(engram_store::Error::Unavailable(format!(
            "node {} does not keep the records of shard {shard} of '{collection}'; ask again",
            node.config.node_id
        )));
    }
    let file = tempfile::NamedTempFile::new().map_err(io)?;
    let export = write_copy(store, collection, shard, file.as_file())?;
    let bytes = file.as_file().metadata().map_err(io)?.len();
    let object = format!(
        "{collection}.{shard}.seq{}.node{}",
        export.seq, node.config.node_id
    );
    node.handle()
        .block_on(upload(node, &object, file.path()))
        .map_err(crate::reply::to_store_error)?;
    Ok(Exported {
        export,
        object,
        bytes,
    })
}

/// Exports `collection`'s `shard` from `store` into `file`, one JSON document a line
/// (what [`import`] reads).
pub(crate) fn write_copy(
    store: &Store,
    collection: &str,
    shard: u32,
    file: &std::fs::File,
) -> engram_store::Result<ShardExport> {
    let mut out = std::io::BufWriter::new(file);
    let export = store.export_shard(collection, shard, |doc| {
        serde_json::to_writer(&mut out, &doc).map_err(io)?;
        out.write_all(b"\n").map_err(io)
    })?;
    out.flush().map_err(io)?;
    Ok(export)
}

async fn upload(node: &Node, object: &str, file: &Path) -> Result<()> {
    let store = bucket(node).await?;
    let meta = ObjectMetadata {
        name: object.to_string(),
        description: Some("a shard's records, one JSON document a line".into()),
        ..Default::default()
    };
    let mut reader = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::Nats(format!("cannot read the shard copy: {e}")))?;
    store.put(meta, &mut reader).await.map_err(nats)?;
    Ok(())
}

/// Copies `collection`'s `shard` in from one of its replicas (see the module's doc)
/// and keeps its records from now on. Returns how many documents came.
pub(crate) async fn copy_in(node: &Arc<Node>, collection: &str, shard: u32) -> Result<u64> {
    let started = Instant::now();
    let key = format!("{collection}.{shard}");
    // Kept from before the position the copy is asked at, so no write of the shard
    // after the copy's sequence goes by unseen.
    let tail = node.hold.keep_tail(&key);
    let applied = node.store.store().applied_seq();
    tail.after(applied);
    let exported = crate::fetch::export(node, collection, shard, applied).await?;
    let seq = exported.export.seq;
    tail.after(seq);
    let objects = bucket(node).await?;
    let copying = (collection.to_string(), shard);
    node.copying.lock().expect("lock").insert(copying.clone());
    let exported_s = started.elapsed().as_secs_f64();
    let imported = async {
        let download = tempfile::NamedTempFile::new()
            .map_err(|e| Error::Nats(format!("cannot store the shard copy: {e}")))?;
        let fetched = Instant::now();
        crate::snapshot::fetch(&objects, &exported.object, Some(download.path())).await?;
        let downloaded_s = fetched.elapsed().as_secs_f64();
        let (owner, name, export) = (node.store.clone(), collection.to_string(), exported.export);
        let importing = Instant::now();
        let documents = tokio::task::spawn_blocking(move || {
            import(owner.store(), &name, shard, &export, download.path())
        })
        .await
        .map_err(nats)??;
        let imported_s = importing.elapsed().as_secs_f64();
        let paused = keep(node, collection, shard, seq, &tail).await?;
        Ok::<_, Error>((documents, paused, [downloaded_s, imported_s]))
    }
    .await;
    node.copying.lock().expect("lock").remove(&copying);
    drop(tail);
    if let Err(e) = objects.delete(&exported.object).await {
        tracing::warn!(object = %exported.object, error = %e, "a shard copy was not deleted from the object store");
    }
    let (documents, (paused, tail), [downloaded_s, imported_s]) = imported?;
    tracing::info!(
        collection,
        shard,
        seq,
        documents,
        tail,
        bytes = exported.bytes,
        seconds = started.elapsed().as_secs_f64(),
        paused_ms = paused.as_secs_f64() * 1e3,
        exported_s,
        downloaded_s,
        imported_s,
        "shard copied in; its records are kept here from now on"
    );
    Ok(documents)
}

/// Once the follower has passed the copy's sequence `seq`: holds it between two
/// messages, applies the shard's writes it passed over after `seq` (the copy's
/// tail) and keeps the shard, so the follower applies its writes from the next
/// message on. Returns how long the follower was held and how many writes the tail
/// held.
pub(crate) async fn keep(
    node: &Arc<Node>,
    collection: &str,
    shard: u32,
    seq: u64,
    tail: &crate::hold::Tail<'_>,
) -> Result<(Duration, usize)> {
    let waited = Instant::now();
    while node.store.store().applied_seq() < seq {
        if waited.elapsed() > CATCH_UP_WAIT {
            return Err(Error::Unavailable(format!(
                "this node did not reach the copy's sequence {seq} within {} s",
                CATCH_UP_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _paused = node.hold.pause().await;
    let held = Instant::now();
    let messages = tail.take().ok_or_else(|| {
        Error::Unavailable(format!(
            "the writes to shard {shard} of '{collection}' during its copy outgrew what a copy keeps; copying it again"
        ))
    })?;
    let count = messages.len();
    let (owner, name, key) = (
        node.store.clone(),
        collection.to_string(),
        tail.key().to_string(),
    );
    tokio::task::spawn_blocking(move || -> engram_store::Result<()> {
        let store = owner.store();
        for m in messages {
            let batch = Batch::decode(&m.payload)?;
            store.apply_shard_tail(m.seq, &key, m.incarnation, batch)?;
        }
        store.change_record_shards(&name, |kept| {
            kept.insert(shard);
        })
    })
    .await
    .map_err(nats)??;
    Ok((held.elapsed(), count))
}

/// Imports the copy in `file` (what a copy cut short left dropped first, the graph
/// made to hold the shard so that each page is indexed as it is written); the shard
/// is kept only once its tail is in ([`keep`]). Blocking.
pub(crate) fn import(
    store: &Store,
    collection: &str,
    shard: u32,
    export: &ShardExport,
    file: &Path,
) -> engram_store::Result<u64> {
    store.begin_shard_import(collection, shard)?;
    let lines = std::io::BufReader::new(std::fs::File::open(file).map_err(io)?).lines();
    let mut page = Vec::with_capacity(PAGE);
    let mut documents = 0;
    for line in lines {
        let doc: ShardDocument = serde_json::from_str(&line.map_err(io)?)
            .map_err(|e| engram_store::Error::Corrupt(format!("a shard copy's line: {e}")))?;
        page.push(doc);
        documents += 1;
        if page.len() == PAGE {
            store.import_shard(collection, shard, export, std::mem::take(&mut page))?;
        }
    }
    store.import_shard(collection, shard, export, page)?;
    if documents != export.documents {
        return Err(engram_store::Error::Corrupt(format!(
            "the copy of shard {shard} of '{collection}' holds {documents} documents, its export says {}",
            export.documents
        )));
    }
    Ok(documents)
}

/// What one collection's records need: shards to let go, shards to copy in from
/// another node, and shards no other node serves, to restore from a snapshot and
/// the log (`crate::shard_restore`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Moves {
    pub release: Vec<u32>,
    pub copy: Vec<u32>,
    pub restore: Vec<u32>,
}

/// The moves of a collection of `count` shards whose records this node keeps for
/// `kept`, whose graph holds `indexed`, with `placed` the shards this node answers
/// for and `elsewhere` those another live node answers for: a shard is let go once
/// it is neither placed here nor in the graph (so no longer served here) and another
/// node serves it (so keeps its records: the last node keeping a shard never lets it
/// go, whatever placement says while heartbeats come and go), and brought in when
/// placed here and not kept: copied from another node serving it, restored from
/// the snapshots and the log when none does.
pub(crate) fn moves(
    count: u32,
    kept: &ShardScope,
    indexed: &ShardScope,
    placed: &BTreeSet<u32>,
    elsewhere: &BTreeSet<u32>,
) -> Moves {
    let mut m = Moves::default();
    for s in 0..count {
        let (keeps, wanted) = (kept.holds_shard(s), placed.contains(&s));
        if keeps && !wanted && !indexed.holds_shard(s) && elsewhere.contains(&s) {
            m.release.push(s);
        } else if wanted && !keeps && elsewhere.contains(&s) {
            m.copy.push(s);
        } else if wanted && !keeps {
            m.restore.push(s);
        }
    }
    m
}

/// Starts, when none is running, a task that brings this node's records in line with
/// `mine` (the shards it answers for) under `--shard-records placed`, or with every
/// shard under `all` (a node that kept only some shards before copies the others
/// in): shards let go (those `elsewhere`, `NAME.SHARD`, says another node serves),
/// then shards copied in, then shards restored, one at a time.
pub(crate) fn reconcile(
    node: &Arc<Node>,
    mine: &BTreeSet<(String, u32)>,
    elsewhere: &BTreeSet<String>,
    running: &mut Option<JoinHandle<()>>,
) {
    if running.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    let mut placed: HashMap<&str, BTreeSet<u32>> = HashMap::new();
    for (name, shard) in mine {
        placed.entry(name.as_str()).or_default().insert(*shard);
    }
    let empty = BTreeSet::new();
    let plan: BTreeMap<String, Moves> = node
        .store
        .store()
        .list_collections()
        .into_iter()
        .map(|c| {
            let kept = ShardScope::from_list(c.record_shards.as_deref());
            let indexed = ShardScope::from_list(c.indexed_shards.as_deref());
            let every: BTreeSet<u32>;
            let here = match node.config.records {
                ShardRecords::Placed => placed.get(c.config.name.as_str()).unwrap_or(&empty),
                ShardRecords::All => {
                    every = (0..c.config.shards).collect();
                    &every
                }
            };
            let name = &c.config.name;
            let served: BTreeSet<u32> = (0..c.config.shards)
                .filter(|s| elsewhere.contains(&format!("{name}.{s}")))
                .collect();
            let m = moves(c.config.shards, &kept, &indexed, here, &served);
            (c.config.name, m)
        })
        .filter(|(_, m)| *m != Moves::default())
        .collect();
    if plan.is_empty() {
        return;
    }
    let node = node.clone();
    *running = Some(tokio::spawn(async move {
        for (name, m) in plan {
            if let Err(e) = carry_out(&node, &name, m).await {
                tracing::warn!(collection = %name, error = %e, "shard records not moved yet; retrying");
            }
        }
        node.replan.notify_one();
    }));
}

async fn carry_out(node: &Arc<Node>, name: &str, m: Moves) -> Result<()> {
    if !m.release.is_empty() {
        let (owner, n) = (node.store.clone(), name.to_string());
        tokio::task::spawn_blocking(move || release(owner.store(), &n, &m.release))
            .await
            .map_err(nats)??;
    }
    for shard in m.copy {
        copy_in(node, name, shard).await?;
    }
    for shard in m.restore {
        crate::shard_restore::restore(node, name, shard).await?;
    }
    Ok(())
}

/// Stops keeping `shards` of collection `name`, then drops their records.
fn release(store: &Store, name: &str, shards: &[u32]) -> engram_store::Result<()> {
    store.change_record_shards(name, |kept| {
        for s in shards {
            kept.remove(s);
        }
    })?;
    for &s in shards {
        let dropped = store.drop_shard_records(name, s)?;
        tracing::info!(
            collection = name,
            shard = s,
            documents = dropped,
            "a shard placed elsewhere: its records dropped here"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_let_go_once_unserved_and_copied_when_placed_and_missing() {
        let only = |s: &[u32]| ShardScope::Only(s.iter().copied().collect());
        let placed = BTreeSet::from([1, 2]);
        let everywhere = BTreeSet::from([0, 1, 2, 3]);
        // Keeps all, graph holds 0-2: shard 3 goes; 0 waits for its graph to drop it.
        let m = moves(4, &ShardScope::All, &only(&[0, 1, 2]), &placed, &everywhere);
        assert_eq!(
            m,
            Moves {
                release: vec![3],
                ..Default::default()
            }
        );
        // Keeps 0 and 1, graph holds 1: 0 goes, 2 comes.
        let m = moves(4, &only(&[0, 1]), &only(&[1]), &placed, &everywhere);
        assert_eq!(
            m,
            Moves {
                release: vec![0],
                copy: vec![2],
                ..Default::default()
            }
        );
        // ... but not while no other node serves it: its records may be the last.
        // And shard 2, which no other node serves either, comes from a snapshot.
        let m = moves(
            4,
            &only(&[0, 1]),
            &only(&[1]),
            &placed,
            &BTreeSet::from([3]),
        );
        assert_eq!(
            m,
            Moves {
                restore: vec![2],
                ..Default::default()
            }
        );
        assert_eq!(
            moves(4, &only(&[1, 2]), &only(&[1, 2]), &placed, &everywhere),
            Moves::default()
        );
        assert!("placed".parse::<ShardRecords>().is_ok());
        assert!("some".parse::<ShardRecords>().is_err());
    }
}
