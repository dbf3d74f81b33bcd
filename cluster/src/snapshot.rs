//! Snapshots and trimming: one node at a time (the holder of a lease) uploads its
//! whole database, a RocksDB checkpoint plus the graph dumps (`Store::snapshot`), to
//! the JetStream object store, named by the stream sequence it reflects, then purges
//! the stream below it. A new or wiped node starts from the newest one
//! ([`crate::bootstrap`]) instead of replaying the whole stream.
//!
//! Why a snapshot of a node's database, not one per shard: a node applies every
//! shard it keeps in the stream's order (README "Cluster mode"), so its records are
//! one consistent point of the stream, named by one sequence. Any node can write one;
//! the lease (a key in the bucket [`LEASE_BUCKET`], created only if absent, with a
//! max age so a dead writer's lease expires) makes it one at a time. A node that
//! keeps only some shards' records (`--shard-records placed`) writes a snapshot that
//! lacks the others and says which ([`SnapshotInfo::missing`]); each node then
//! snapshots when the newest snapshot holding its own shards is due, and the stream
//! is trimmed only as far as every shard is in some snapshot ([`covered_to`]).
//!
//! Trimming: the stream keeps the messages after [`covered_to`], and also those any
//! live node (heartbeat within 10 s) has not applied yet, which its heartbeat says at
//! no cost; a node that was down when the stream was trimmed past it bootstraps from
//! the snapshot when it starts. The newest [`KEEP`] snapshots are kept: an older one
//! is a fallback for a damaged newer one while the stream still holds its tail.
//!
//! When: every [`Policy::every_writes`] messages or [`Policy::every`] (if anything was
//! written since), checked every [`CHECK_EVERY`] by every node against the newest
//! snapshot, and on demand (`POST /cluster/snapshot`, `engram cluster snapshot`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{self, CreateErrorKind};
use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};
use async_nats::jetstream::Context;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::archive;
use crate::{nats, Error, Node, Result, STREAM};

/// The object store bucket of snapshots.
pub const BUCKET: &str = "engram-snapshots";
/// The key-value bucket of the writer's lease.
pub const LEASE_BUCKET: &str = "engram-snapshot-lease";
/// A lease not renewed for this long expires (its writer died).
pub const LEASE_TTL: Duration = Duration::from_secs(30);
const LEASE_KEY: &str = "writer";
/// Snapshots kept in the bucket, newest first.
pub const KEEP: usize = 2;
/// How often each node checks whether a snapshot is due.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// When snapshots are taken without being asked (0 turns a trigger off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Messages written to the stream since the newest snapshot.
    pub every_writes: u64,
    /// Time since the newest snapshot (if anything was written since).
    pub every: Duration,
}

impl Default for Policy {
    /// Every 100,000 messages or every hour: a replay of 100,000 messages takes about
    /// 20 s at the catch-up rate measured (README), and an hourly upload of a
    /// database is small next to what it saves a new node.
    fn default() -> Self {
        Policy {
            every_writes: 100_000,
            every: Duration::from_secs(3600),
        }
    }
}

impl Policy {
    /// Whether a snapshot is due: the stream's last message is `last`, the newest
    /// snapshot reflects `newest` and is `age` old.
    pub fn due(&self, last: u64, newest: u64, age: Duration) -> bool {
        if last <= newest {
            return false;
        }
        let by_writes = self.every_writes > 0 && last - newest >= self.every_writes;
        let by_time = !self.every.is_zero() && age >= self.every;
        by_writes || by_time
    }
}

/// A stored snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SnapshotInfo {
    /// Its object's name: `snapshot-` and the sequence, zero-padded.
    pub name: String,
    /// The last stream sequence its records reflect.
    pub seq: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the archive, checked before it is used.
    pub sha256: String,
    /// The node that wrote it, and when (Unix milliseconds).
    pub node_id: u32,
    pub created_ms: u64,
    /// The shards (`NAME.SHARD`) whose records it lacks: its node kept only some
    /// (`--shard-records placed`). Empty: the whole database.
    #[serde(default)]
    pub missing: Vec<String>,
}

impl SnapshotInfo {
    /// Whether it holds the records of shard `key` (`NAME.SHARD`).
    pub fn holds(&self, key: &str) -> bool {
        !self.missing.iter().any(|m| m == key)
    }
}

/// What taking a snapshot did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Taken {
    pub snapshot: SnapshotInfo,
    /// The stream's first sequence after trimming (it holds every message from it on).
    pub stream_first_seq: u64,
    /// Messages purged from the stream by this trim.
    pub purged: u64,
    /// Older snapshots deleted (beyond the newest [`KEEP`]).
    pub removed: Vec<String>,
    pub seconds: f64,
}

/// The object name of node `node`'s snapshot at `seq`: sorts by sequence. With the
/// node: two nodes keeping different shards may snapshot at the same sequence.
pub fn object_name(seq: u64, node: u32) -> String {
    format!("snapshot-{seq:020}-node{node}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The first sequence the stream must keep: the one after the snapshot, or after
/// the slowest live node's applied sequence if that is lower.
pub fn trim_point(snapshot_seq: u64, live_applied: impl IntoIterator<Item = u64>) -> u64 {
    live_applied.into_iter().fold(snapshot_seq, u64::min) + 1
}

/// The snapshot bucket (made if missing).
pub(crate) async fn bucket(js: &Context, replicas: usize) -> Result<ObjectStore> {
    crate::object_bucket(
        js,
        BUCKET,
        "Engram database snapshots (RocksDB checkpoint + graph dumps)",
        replicas,
    )
    .await
}

fn info_of(o: &object_store::ObjectInfo) -> Option<SnapshotInfo> {
    let m = &o.metadata;
    let num = |k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
    Some(SnapshotInfo {
        name: o.name.clone(),
        seq: num("seq")?,
        bytes: o.size as u64,
        sha256: m.get("sha256")?.clone(),
        node_id: num("node")? as u32,
        created_ms: num("created_ms").unwrap_or(0),
        missing: m
            .get("missing")
            .map(|l| {
                l.split(',')
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The stored snapshots, newest first (objects without our metadata are ignored).
pub(crate) async fn list_in(store: &ObjectStore) -> Result<Vec<SnapshotInfo>> {
    let mut out = Vec::new();
    let mut objects = store.list().await.map_err(nats)?;
    while let Some(o) = objects.next().await {
        let o = o.map_err(nats)?;
        if o.deleted || !o.name.starts_with("snapshot-") {
            continue;
        }
        if let Some(info) = info_of(&o) {
            out.push(info);
        }
    }
    out.sort_by(|a, b| b.seq.cmp(&a.seq).then(b.created_ms.cmp(&a.created_ms)));
    Ok(out)
}

/// Reads snapshot `name` whole, into the file `to` when given; its size and hex
/// SHA-256 (the object store also checks its own digest at the end).
pub(crate) async fn fetch(
    store: &ObjectStore,
    name: &str,
    to: Option<&Path>,
) -> Result<(u64, String)> {
    let mut stalls = 0;
    loop {
        match fetch_once(store, name, to).await {
            Err(Stalled(why)) if stalls < FETCH_TRIES => {
                stalls += 1;
                tracing::warn!(name, stalls, "{why}; reading the snapshot again");
            }
            Err(Stalled(why)) => return Err(Error::Snapshot(why)),
            Ok(read) => return read,
        }
    }
}

/// A read of a snapshot that got no bytes for [`READ_STALL`]: seen once when a
/// node replaced a snapshot of the same sequence it had written itself (the
/// object's old description, from a replica lagging the put, named chunks the put
/// had purged, and the read waited for them forever). Read again from the start.
struct Stalled(String);

/// How long one read of a snapshot's bytes may wait for the next ones.
const READ_STALL: Duration = Duration::from_secs(30);
/// Reads of one snapshot started again after a stall.
const FETCH_TRIES: u32 = 3;

/// [`fetch`] once: `Err(Stalled)` when the bytes stopped coming.
async fn fetch_once(
    store: &ObjectStore,
    name: &str,
    to: Option<&Path>,
) -> std::result::Result<Result<(u64, String)>, Stalled> {
    // A just-written object can be missing for a moment where the read is served by
    // a replica that lags the put (seen under load as "object not found"): retried
    // briefly (5 s) before the object counts as missing.
    let mut tries = 0;
    let mut object = loop {
        match store.get(name).await {
            Ok(object) => break object,
            Err(e) if tries < 20 && e.kind() == object_store::GetErrorKind::NotFound => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Ok(Err(nats(e))),
        }
    };
    let failed = |e: std::io::Error| {
        Ok(Err(Error::Snapshot(format!(
            "cannot write the download: {e}"
        ))))
    };
    let mut file = match to.map(std::fs::File::create).transpose() {
        Ok(f) => f,
        Err(e) => return failed(e),
    };
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match tokio::time::timeout(READ_STALL, object.read(&mut buf)).await {
            Err(_) => {
                return Err(Stalled(format!(
                    "the download of {name} got no bytes for {} s after {bytes}",
                    READ_STALL.as_secs()
                )))
            }
            Ok(Err(e)) => return Ok(Err(Error::Snapshot(format!("download of {name}: {e}")))),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        if let Some(f) = &mut file {
            if let Err(e) = std::io::Write::write_all(f, &buf[..n]) {
                return failed(e);
            }
        }
        bytes += n as u64;
    }
    if let Some(f) = file {
        if let Err(e) = f.sync_all() {
            return failed(e);
        }
    }
    Ok(Ok((bytes, archive::hex(hash))))
}

/// The writer's lease, held while one snapshot is written; its entry's revision,
/// moved on by each renewal, is what releasing it must match (a lease that expired
/// and was taken by another node is not deleted by this one).
struct Lease {
    kv: kv::Store,
    revision: Arc<std::sync::atomic::AtomicU64>,
}

impl Lease {
    /// Takes the lease, or says who holds it (409).
    async fn acquire(node: &Node) -> Result<Lease> {
        let kv = crate::made(|| {
            node.js.create_key_value(kv::Config {
                bucket: LEASE_BUCKET.to_string(),
                history: 1,
                max_age: LEASE_TTL,
                num_replicas: node.config.replicas(),
                ..Default::default()
            })
        })
        .await?;
        let me = node.config.node_id.to_string();
        match kv.create(LEASE_KEY, me.into()).await {
            Ok(revision) => Ok(Lease {
                kv,
                revision: Arc::new(revision.into()),
            }),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                let holder = kv.get(LEASE_KEY).await.ok().flatten();
                let holder = holder.map_or("another node".into(), |h| {
                    format!("node {}", String::from_utf8_lossy(&h))
                });
                Err(Error::Conflict(format!(
                    "{holder} is writing a snapshot (its lease expires {} s after its last renewal); retry when it is done",
                    LEASE_TTL.as_secs()
                )))
            }
            Err(e) => Err(nats(e)),
        }
    }

    /// Renews the lease every third of its age until the task is aborted.
    async fn keep(kv: kv::Store, revision: Arc<std::sync::atomic::AtomicU64>, me: String) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            tokio::time::sleep(LEASE_TTL / 3).await;
            match kv
                .update(LEASE_KEY, me.clone().into(), revision.load(SeqCst))
                .await
            {
                Ok(r) => revision.store(r, SeqCst),
                Err(e) => {
                    tracing::warn!(error = %e, "the snapshot lease was not renewed");
                    return;
                }
            }
        }
    }
}

impl Node {
    /// The stored snapshots, newest first.
    pub async fn snapshots(self: &Arc<Self>) -> Result<Vec<SnapshotInfo>> {
        let node = self.clone();
        self.handle()
            .spawn(async move { list_in(&bucket(&node.js, node.config.replicas()).await?).await })
            .await
            .map_err(nats)?
    }

    /// Takes a snapshot now (the admin command); 409 while another node writes one.
    pub async fn snapshot(self: &Arc<Self>) -> Result<Taken> {
        let node = self.clone();
        self.handle()
            .spawn(async move { take(&node, None).await })
            .await
            .map_err(nats)?
            .map(|t| t.expect("taken unconditionally"))
    }
}

/// Under the lease: writes a snapshot, unless `only_if` says none is due any more
/// (another node took one meanwhile); `None` then.
async fn take(node: &Arc<Node>, only_if: Option<Policy>) -> Result<Option<Taken>> {
    let lease = Lease::acquire(node).await?;
    let renew = node.handle().spawn(Lease::keep(
        lease.kv.clone(),
        lease.revision.clone(),
        node.config.node_id.to_string(),
    ));
    let written = write_if_due(node, only_if).await;
    renew.abort();
    // Released now, if still ours (or expired by its max age if this fails).
    let revision = lease.revision.load(std::sync::atomic::Ordering::SeqCst);
    if let Err(e) = lease
        .kv
        .delete_expect_revision(LEASE_KEY, Some(revision))
        .await
    {
        tracing::warn!(error = %e, "the snapshot lease was not released; it expires on its own");
    }
    written
}

async fn write_if_due(node: &Arc<Node>, only_if: Option<Policy>) -> Result<Option<Taken>> {
    let started = Instant::now();
    let store = bucket(&node.js, node.config.replicas()).await?;
    if let Some(policy) = only_if {
        let newest = newest_for(node, &list_in(&store).await?);
        let last = last_seq(node).await?;
        let (seq, at) = newest.map_or((0, 0), |s| (s.seq, s.created_ms));
        let age = Duration::from_millis(now_ms().saturating_sub(at));
        if !policy.due(last, seq, age) {
            return Ok(None);
        }
    }
    let owner = node.store.clone();
    let packed = tokio::task::spawn_blocking(move || -> Result<_> {
        let local = owner.store().snapshot()?;
        let file = local.dir.with_extension("snap");
        let (bytes, sha) = archive::pack(&local.dir, &file)?;
        Ok((local.seq, bytes, sha, local.missing.clone(), file))
    })
    .await
    .map_err(nats)??;
    let (seq, bytes, sha256, missing, file) = packed;
    let info = SnapshotInfo {
        name: object_name(seq, node.config.node_id),
        seq,
        bytes,
        sha256,
        node_id: node.config.node_id,
        created_ms: now_ms(),
        missing,
    };
    let uploaded = upload(&store, &info, &file).await;
    let _ = std::fs::remove_file(&file);
    let snapshot = uploaded?;
    let listed = list_in(&store).await?;
    let (stream_first_seq, purged) = trim(node, covered_to(&listed)).await?;
    let removed = prune(&store, &listed).await?;
    let taken = Taken {
        snapshot,
        stream_first_seq,
        purged,
        removed,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(name = %taken.snapshot.name, seq, bytes, purged, stream_first_seq, seconds = taken.seconds, "snapshot written and the stream trimmed below it");
    Ok(Some(taken))
}

/// Uploads the archive `file` as `info` says, then reads it back whole and checks
/// its SHA-256: the stream is trimmed only below a snapshot known good.
pub(crate) async fn upload(
    store: &ObjectStore,
    info: &SnapshotInfo,
    file: &Path,
) -> Result<SnapshotInfo> {
    let (seq, bytes) = (info.seq, info.bytes);
    let metadata = HashMap::from([
        ("seq".to_string(), seq.to_string()),
        ("sha256".to_string(), info.sha256.clone()),
        ("node".to_string(), info.node_id.to_string()),
        ("created_ms".to_string(), info.created_ms.to_string()),
        ("missing".to_string(), info.missing.join(",")),
    ]);
    let meta = ObjectMetadata {
        name: info.name.clone(),
        description: Some(format!("Engram snapshot at stream sequence {seq}")),
        metadata,
        ..Default::default()
    };
    let mut reader = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::Snapshot(format!("cannot read the archive: {e}")))?;
    store.put(meta, &mut reader).await.map_err(nats)?;
    let (read, hash) = fetch(store, &info.name, None).await?;
    if read != bytes || hash != info.sha256 {
        return Err(Error::Snapshot(format!(
            "snapshot {} read back as {read} bytes with SHA-256 {hash}, written as {bytes} with {}; the stream is not trimmed",
            info.name, info.sha256
        )));
    }
    Ok(info.clone())
}

/// The stream's last sequence.
async fn last_seq(node: &Node) -> Result<u64> {
    let mut stream = node.js.get_stream(STREAM).await.map_err(nats)?;
    Ok(stream.info().await.map_err(nats)?.state.last_sequence)
}

/// The last sequence up to which every shard's records are in a stored snapshot:
/// the newest snapshot's, or for each shard it lacks, the newest one holding that
/// shard's (0 when none does). `listed`: newest first. Why this is safe for a shard
/// a snapshot does not know at all (its collection created after it): everything of
/// that shard came after that snapshot's sequence, so nothing of it is trimmed.
pub fn covered_to(listed: &[SnapshotInfo]) -> u64 {
    let Some(newest) = listed.first() else {
        return 0;
    };
    newest.missing.iter().fold(newest.seq, |to, key| {
        let held = listed[1..].iter().find(|s| s.holds(key));
        to.min(held.map_or(0, |s| s.seq))
    })
}

/// The snapshots to keep: the newest [`KEEP`], and for each shard the newest one
/// lacks, the newest that holds it ([`covered_to`] relies on them).
fn kept(listed: &[SnapshotInfo]) -> std::collections::BTreeSet<&str> {
    let mut keep: std::collections::BTreeSet<&str> =
        listed.iter().take(KEEP).map(|s| s.name.as_str()).collect();
    if let Some(newest) = listed.first() {
        for key in &newest.missing {
            if let Some(s) = listed[1..].iter().find(|s| s.holds(key)) {
                keep.insert(&s.name);
            }
        }
    }
    keep
}

/// Purges the stream below [`trim_point`]; the stream's first sequence after it and
/// the messages purged.
async fn trim(node: &Node, seq: u64) -> Result<(u64, u64)> {
    let live = crate::status::live_nodes(node).await?;
    let keep_from = trim_point(seq, live.iter().map(|n| n.applied_seq));
    let mut stream = node.js.get_stream(STREAM).await.map_err(nats)?;
    let first = stream.info().await.map_err(nats)?.state.first_sequence;
    if keep_from <= first {
        return Ok((first, 0));
    }
    let purged = stream
        .purge()
        .sequence(keep_from)
        .await
        .map_err(nats)?
        .purged;
    Ok((keep_from, purged))
}

/// The newest of `listed` that holds every shard whose records this node keeps: the
/// one a snapshot of this node would replace (with every node keeping every shard,
/// the newest).
fn newest_for(node: &Node, listed: &[SnapshotInfo]) -> Option<SnapshotInfo> {
    let lacking = node.store.store().shards_not_kept();
    listed
        .iter()
        .find(|s| s.missing.iter().all(|m| lacking.contains(m)))
        .cloned()
}

/// Deletes the snapshots of `listed` that are not [`kept`].
async fn prune(store: &ObjectStore, listed: &[SnapshotInfo]) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let keep = kept(listed);
    for old in listed.iter().filter(|s| !keep.contains(s.name.as_str())) {
        match store.delete(&old.name).await {
            Ok(()) => removed.push(old.name.clone()),
            // Already gone (a listing can still show an object being replaced or
            // removed): what pruning wants, not a failed snapshot.
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => {}
            Err(e) => return Err(nats(e)),
        }
    }
    Ok(removed)
}

/// Takes snapshots when [`Policy`] says so, for as long as the node runs.
pub async fn periodic(node: Arc<Node>) {
    let policy = node.config.snapshots;
    if policy.every_writes == 0 && policy.every.is_zero() {
        return;
    }
    let started = now_ms();
    // The newest snapshot as last listed: (sequence, Unix ms); listed again only
    // when it looks due, so idle checks cost one stream-info request.
    let mut newest = (0, started);
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Ok(last) = last_seq(&node).await else {
            continue;
        };
        let age = Duration::from_millis(now_ms().saturating_sub(newest.1));
        if !policy.due(last, newest.0, age) {
            continue;
        }
        match bucket(&node.js, node.config.replicas()).await {
            Ok(store) => {
                if let Some(s) = list_in(&store)
                    .await
                    .ok()
                    .and_then(|l| newest_for(&node, &l))
                {
                    newest = (s.seq, s.created_ms);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list snapshots"),
        }
        let age = Duration::from_millis(now_ms().saturating_sub(newest.1));
        if !policy.due(last, newest.0, age) {
            continue;
        }
        match take(&node, Some(policy)).await {
            Ok(Some(t)) => newest = (t.snapshot.seq, t.snapshot.created_ms),
            Ok(None) | Err(Error::Conflict(_)) => {}
            Err(e) => tracing::error!(error = %e, "the periodic snapshot failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_due_by_writes_or_by_time_and_only_after_new_writes() {
        let p = Policy {
            every_writes: 100,
            every: Duration::from_secs(60),
        };
        assert!(!p.due(50, 0, Duration::ZERO));
        assert!(p.due(100, 0, Duration::ZERO));
        assert!(p.due(150, 100, Duration::from_secs(61)));
        assert!(!p.due(150, 100, Duration::from_secs(59)));
        assert!(!p.due(100, 100, Duration::from_secs(3600)), "nothing new");
        let off = Policy {
            every_writes: 0,
            every: Duration::ZERO,
        };
        assert!(!off.due(1_000_000, 0, Duration::from_secs(1_000_000)));
    }

    #[test]
    fn the_stream_is_trimmed_only_as_far_as_every_shard_is_in_a_snapshot() {
        let snap = |seq: u64, node: u32, missing: &[&str]| SnapshotInfo {
            name: object_name(seq, node),
            seq,
            bytes: 1,
            sha256: String::new(),
            node_id: node,
            created_ms: seq,
            missing: missing.iter().map(|m| m.to_string()).collect(),
        };
        assert_eq!(covered_to(&[]), 0);
        // Whole snapshots: the newest.
        assert_eq!(covered_to(&[snap(50, 1, &[]), snap(40, 2, &[])]), 50);
        // Node 3's lacks c.0, which no other holds: nothing can be trimmed.
        let only = [snap(90, 3, &["c.0"])];
        assert_eq!(covered_to(&only), 0);
        // Node 1's, older, holds c.0 (it lacks c.1, which node 3's holds).
        let listed = [
            snap(90, 3, &["c.0"]),
            snap(70, 2, &["c.0", "c.2"]),
            snap(60, 1, &["c.1"]),
            snap(30, 1, &[]),
        ];
        assert_eq!(covered_to(&listed), 60);
        let keep = kept(&listed);
        assert_eq!(
            keep.into_iter().collect::<Vec<_>>(),
            [object_name(60, 1), object_name(70, 2), object_name(90, 3)],
            "the newest two and the one holding c.0"
        );
    }

    #[test]
    fn the_stream_keeps_what_the_slowest_live_node_still_needs() {
        assert_eq!(trim_point(100, []), 101);
        assert_eq!(trim_point(100, [120, 130]), 101);
        assert_eq!(trim_point(100, [120, 40]), 41);
        assert_eq!(object_name(42, 3), "snapshot-00000000000000000042-node3");
        assert!(object_name(9, 2) < object_name(10, 1));
    }
}
