//! A node's database as one consistent directory, for cluster mode's snapshots
//! (`engram-cluster`'s `snapshot` uploads it, `bootstrap` opens one as a new node's
//! store): a RocksDB checkpoint (RocksDB's own API: hard links of the live files,
//! taken while the node goes on applying) plus every collection's graph dump.
//!
//! Why the dumps are written first and copied while their locks are held: a dump
//! carries the local write-log sequence it reflects, and a start-up replays the
//! logged writes after it from the checkpoint's own log. A dump written before the
//! checkpoint is at or below the checkpoint's log, so the snapshot's graphs load and
//! catch up; a dump newer than the checkpoint would be refused (and rebuilt), so no
//! background dump may replace the files between the checkpoint and the copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{Options, DB};

use super::Store;
use crate::error::{Error, Result};
use crate::graph_dump::GraphDumps;
use crate::log::Family;
use crate::replica::APPLIED_KEY;

/// A snapshot directory on local disk, removed when dropped.
#[derive(Debug)]
pub struct LocalSnapshot {
    /// The database (RocksDB files, `graphs/`), openable as a data directory.
    pub dir: PathBuf,
    /// The last replicated-log sequence it reflects.
    pub seq: u64,
    /// The shards (`NAME.SHARD`) whose records it does not hold: this node keeps
    /// only some shards' records (`--shard-records placed`). Empty: the whole
    /// database.
    pub missing: Vec<String>,
}

impl Drop for LocalSnapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Numbers the snapshot directories of one process.
static TAKEN: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Writes a snapshot of the whole database into a new directory inside the data
    /// directory (so the checkpoint hard-links rather than copies): every collection's
    /// graph dumped now, the checkpoint, the dumps copied beside it. Safe while the
    /// node applies writes: the checkpoint is one point of the records, and its
    /// applied sequence is read back from it. A node that keeps only some shards'
    /// records snapshots those, and says which it lacks ([`LocalSnapshot::missing`]).
    pub fn snapshot(&self) -> Result<LocalSnapshot> {
        // Read before and after the checkpoint: a shard counts as held only if it was
        // kept at both (one copied in or let go meanwhile counts as missing).
        let mut missing = self.shards_not_kept();
        let n = TAKEN.fetch_add(1, Ordering::SeqCst);
        let data_dir = self.dumps.data_dir();
        sweep_leftovers(data_dir);
        let dir = data_dir.join(format!(".snapshot-{}-{n}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let collections = self.all_collections();
        // Held until the dumps are copied (see the module comment).
        let _dumping: Vec<_> = collections
            .iter()
            .map(|c| c.dump_lock.lock().expect("lock"))
            .collect();
        let mut dumped = Vec::new();
        for coll in &collections {
            if self.dumps.write_holding_lock(coll)? {
                dumped.push(coll.config.name.clone());
            }
        }
        self.storage.checkpoint(&dir)?;
        missing.extend(self.shards_not_kept());
        missing.sort_unstable();
        missing.dedup();
        let snapshot = LocalSnapshot {
            seq: applied_seq_in(&dir)?,
            dir,
            missing,
        };
        for name in dumped {
            let to = GraphDumps::file_in(&snapshot.dir, &name);
            std::fs::create_dir_all(to.parent().expect("graphs/"))?;
            std::fs::copy(self.dumps.path(&name), to)?;
        }
        Ok(snapshot)
    }

    /// The shards (`NAME.SHARD`) whose records this node does not keep.
    pub fn shards_not_kept(&self) -> Vec<String> {
        let mut out = Vec::new();
        for coll in self.all_collections() {
            let kept = coll.records.read().expect("lock").clone();
            let name = &coll.config.name;
            out.extend(
                (0..coll.config.shards)
                    .filter(|&s| !kept.holds_shard(s))
                    .map(|s| format!("{name}.{s}")),
            );
        }
        out
    }
}

/// Removes the snapshot directories and archives of earlier processes (one killed
/// while it wrote a snapshot), best effort.
fn sweep_leftovers(data_dir: &Path) {
    let ours = format!(".snapshot-{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".snapshot-") || name.starts_with(&ours) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an old snapshot");
        }
    }
}

/// The last replicated-log sequence applied by the database in `dir` (opened read
/// only), 0 when it has none or `dir` holds no database.
pub fn applied_seq_in(dir: &Path) -> Result<u64> {
    if !dir.join("CURRENT").is_file() {
        return Ok(0);
    }
    let families = DB::list_cf(&Options::default(), dir)?;
    let db = DB::open_cf_for_read_only(&Options::default(), dir, &families, false)?;
    let meta = db
        .cf_handle(Family::Meta.name())
        .ok_or_else(|| Error::Corrupt(format!("{} has no meta records", dir.display())))?;
    match db.get_cf(meta, APPLIED_KEY)? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| Error::Corrupt(format!("{}: bad applied sequence", dir.display())))?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::replica::{Published, Replicator, Subject};
    use crate::EncoderLoader;
    use std::sync::{Arc, Mutex};

    /// A one-node log: every publish is taken and applied at once, in sequence order.
    #[derive(Default)]
    struct OneNodeLog(Mutex<u64>, Mutex<Option<Arc<Store>>>);

    impl Replicator for OneNodeLog {
        fn publish(
            &self,
            subject: Subject<'_>,
            incarnation: u64,
            _expected: u64,
            batch: &crate::log::Batch,
        ) -> Result<Published> {
            // Held while the message is applied: a log's follower applies in stream
            // order, and the upsert publishes its shards from several threads.
            let mut seq = self.0.lock().unwrap();
            *seq += 1;
            let store = self.1.lock().unwrap().clone().unwrap();
            let batch = crate::log::Batch::decode(&batch.encode())?;
            store.apply_replicated(*seq, &subject.key(), incarnation, batch)?;
            Ok(Published::Seq(*seq))
        }
    }

    fn open(dir: &Path) -> Store {
        let no_models: Box<EncoderLoader> =
            Box::new(|name| Err(engram_embedder::Error::UnsupportedModel(name.to_string())));
        Store::open_with_loader(dir, Limits::default(), no_models).unwrap()
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn a_snapshot_opens_as_the_same_database_at_its_sequence() {
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&root.path().join("db")));
        let log = Arc::new(OneNodeLog::default());
        *log.1.lock().unwrap() = Some(store.clone());
        assert_eq!(store.attach_replicator(log.clone()).unwrap(), 0);
        let req = crate::api::CreateCollection {
            dimension: Some(4),
            ..Default::default()
        };
        store.create_collection("v", req).unwrap();
        let docs: Vec<crate::api::DocumentInput> = (0..30)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "id": format!("d{i}"), "vector": [1.0, i as f32, 0.5, -1.0]
                }))
                .unwrap()
            })
            .collect();
        store.upsert("v", docs).unwrap();
        let applied = store.applied_seq();
        assert!(applied > 1);

        let leftover = root.path().join("db/.snapshot-1-0");
        std::fs::create_dir_all(&leftover).unwrap();
        let snap = store.snapshot().unwrap();
        assert!(!leftover.exists(), "an earlier process's snapshot is swept");
        assert_eq!(snap.seq, applied);
        assert!(GraphDumps::file_in(&snap.dir, "v").is_file());
        assert_eq!(applied_seq_in(&snap.dir).unwrap(), applied);
        // Opened elsewhere, it is the same collection, its graph from the dump.
        let copy = root.path().join("copy");
        copy_tree(&snap.dir, &copy);
        let dir = snap.dir.clone();
        drop(snap);
        assert!(!dir.exists(), "the local snapshot is removed when dropped");
        let reopened = open(&copy);
        assert_eq!(reopened.collection_info("v").unwrap().documents, 30);
        assert!(matches!(
            reopened.graph_dumps().opened("v"),
            Some(crate::graph_dump::Opened::Dump { .. })
        ));
        assert_eq!(
            applied_seq_in(root.path().join("none").as_path()).unwrap(),
            0
        );
        assert!(store.snapshot().unwrap().missing.is_empty());
        // A node that keeps only some shards' records says which its snapshot lacks.
        let only: std::collections::BTreeSet<u32> = [0].into();
        store.keep_shard_records("v", &only).unwrap();
        let shards = store.collection_info("v").unwrap().config.shards;
        let lacks: Vec<String> = (1..shards).map(|s| format!("v.{s}")).collect();
        assert_eq!(store.snapshot().unwrap().missing, lacks);
    }
}
