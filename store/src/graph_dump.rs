//! When a collection's graph is dumped to disk, and how a start-up uses the dump.
//!
//! Why: the graph is derived data, and rebuilding it from RocksDB at every start takes
//! 36-45 s for 390k 50-d vectors on 2 cores. A dump (`index::dump`, one file per
//! collection in `<data dir>/graphs/`) is read back in a fraction of that.
//!
//! Start-up ([`GraphDumps::open_index`]): read the dump, check it was built for the
//! collection as it is now (incarnation, dimension, metric, graph parameters, corpus
//! context), replay onto it the collection's writes after the dump's sequence number
//! from the write log (inserts, replacements and deletes of chunk vectors), then check
//! it against the records: the live chunk ids must be exactly those of the stored
//! documents, and a sample of vectors must equal the stored ones bit for bit. Any
//! failure (missing, unreadable, wrong version, corrupt, mismatched, stale because the
//! log no longer holds the writes after it, or disagreeing) falls back to the rebuild
//! from RocksDB, with a log line that says which and why: RocksDB always wins.
//!
//! Writing ([`GraphDumps::write`]): at a clean shutdown, in the background after a
//! compaction or a corpus context swapped a new graph in, after a start-up that had
//! to rebuild, and in the background once a collection's writes since its last dump
//! reach a quarter of the write log's retention (so the log still holds them when the
//! next start-up replays them). Never on a request's path. The collection's write
//! lock is held only while the arrays are copied into the file's bytes (memory speed,
//! so the copy is exactly the graph at one sequence number); the checksum, the file
//! write and the fsync run after it is released. A crash while writing leaves the old
//! dump or none (`index::dump::write_atomically`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::collection::Collection;
use crate::error::Result;
use crate::index::dump::{read_file, write_atomically};
use crate::index::{DumpHeader, Rejected, VectorIndex};
use crate::log::embedded::DEFAULT_RETAINED_BYTES;
use crate::log::Batch;
use crate::shard_scope::ShardScope;
use crate::storage::{Storage, VectorChange};

/// Vectors compared bit for bit with the records after a dump is caught up.
const SAMPLED_VECTORS: usize = 32;

/// A collection is dumped again once its changed chunks since the last dump add up to
/// this many bytes of vectors: a quarter of what the write log retains, so a start-up
/// still finds every write after the dump in the log.
const DUMP_AFTER_BYTES: usize = DEFAULT_RETAINED_BYTES / 4;

/// Retained write-log batches with their sequence numbers, oldest first.
type LogTail = Vec<(u64, Batch)>;

/// Where the dumps live and the store's records they are checked against.
pub struct GraphDumps {
    data_dir: PathBuf,
    storage: Arc<Storage>,
    /// The write log's retained batches, read once for all collections at start-up.
    tail: Mutex<Option<Arc<LogTail>>>,
    /// How each collection got its graph at this start-up.
    opened: Mutex<HashMap<String, Opened>>,
}

/// How a start-up got its graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// From the dump, with this many chunk changes replayed from the log.
    Dump { seq: u64, replayed: usize },
    /// Rebuilt from RocksDB, because the dump was not usable.
    Rebuilt(Rejected),
}

impl GraphDumps {
    /// Dumps of the database in `data_dir` (in `data_dir/graphs/`).
    pub fn new(data_dir: &Path, storage: Arc<Storage>) -> Self {
        GraphDumps {
            data_dir: data_dir.to_path_buf(),
            storage,
            tail: Mutex::new(None),
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// The data directory the dumps live in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The dump file of collection `name` (names are plain: see `validate_name`).
    pub fn path(&self, name: &str) -> PathBuf {
        Self::file_in(&self.data_dir, name)
    }

    /// The dump file of collection `name` in the database in `data_dir`.
    pub fn file_in(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("graphs").join(format!("{name}.graph"))
    }

    /// Gives `coll` its graph: the dump brought up to date, or else a rebuild from
    /// RocksDB (see the module comment). Fails only when the rebuild does.
    pub fn open_index(&self, coll: &Collection) -> Result<Opened> {
        let opened = self.open_inner(coll)?;
        self.opened
            .lock()
            .expect("lock")
            .insert(coll.config.name.clone(), opened.clone());
        Ok(opened)
    }

    /// How collection `name` got its graph when the store opened.
    pub fn opened(&self, name: &str) -> Option<Opened> {
        self.opened.lock().expect("lock").get(name).cloned()
    }

    fn open_inner(&self, coll: &Collection) -> Result<Opened> {
        let name = &coll.config.name;
        let started = Instant::now();
        match self.load(coll) {
            Ok((index, seq, replayed)) => {
                coll.swap_index(index);
                coll.graph_changes.store(replayed, Ordering::SeqCst);
                tracing::info!(collection = %name, seq, replayed, seconds = started.elapsed().as_secs_f64(), "graph loaded from its dump");
                Ok(Opened::Dump { seq, replayed })
            }
            Err(why) => {
                let message =
                    format!("graph dump not used ({why}); rebuilding the graph from the records");
                match &why {
                    Rejected::Missing => tracing::info!(collection = %name, "{message}"),
                    _ => tracing::warn!(collection = %name, "{message}"),
                }
                coll.rebuild_index(&self.storage)?;
                tracing::info!(collection = %name, seconds = started.elapsed().as_secs_f64(), "graph rebuilt");
                Ok(Opened::Rebuilt(why))
            }
        }
    }

    /// Drops the log entries read for start-up.
    pub fn forget_tail(&self) {
        *self.tail.lock().expect("lock") = None;
    }

    /// The header a dump of `coll` at `seq` carries.
    fn header(coll: &Collection, seq: u64) -> DumpHeader {
        let c = &coll.config;
        DumpHeader {
            collection: c.name.clone(),
            incarnation: c.incarnation,
            dimension: c.dimension,
            metric: c.distance,
            hnsw: c.hnsw,
            context_version: coll.context_version(),
            seq,
            shards: coll.scope().to_list(),
        }
    }

    /// The dump of `coll`, checked, brought up to date and checked against the records.
    fn load(&self, coll: &Collection) -> std::result::Result<(VectorIndex, u64, usize), Rejected> {
        let bytes = read_file(&self.path(&coll.config.name))?;
        let (header, index) = VectorIndex::from_dump(&bytes, &Self::header(coll, 0))?;
        drop(bytes);
        let seq = header.seq;
        // The dump's shards (cluster mode), so that the writes replayed onto it and
        // the check against the records cover what it holds.
        coll.set_scope(ShardScope::from_list(header.shards.as_deref()));
        let replayed = self.catch_up(coll, &index, seq)?;
        self.verify(coll, &index)?;
        Ok((index, seq, replayed))
    }

    /// Applies to `index` the collection's vector changes logged after `seq`.
    fn catch_up(
        &self,
        coll: &Collection,
        index: &VectorIndex,
        seq: u64,
    ) -> std::result::Result<usize, Rejected> {
        let unreadable =
            |e: crate::error::Error| Rejected::Unreadable(format!("the write log: {e}"));
        let last = self.storage.log().last_seq();
        if seq > last {
            return Err(Rejected::Mismatch(format!(
                "the dump reflects write {seq} but the log ends at {last} (records restored or lost since)"
            )));
        }
        if seq == last {
            return Ok(0);
        }
        let tail = self.tail().map_err(unreadable)?;
        match tail.first() {
            Some((first, _)) if *first <= seq + 1 => {}
            first => {
                return Err(Rejected::Stale(format!(
                    "the dump needs the writes after {seq}, the log holds them from {} on",
                    first.map_or(last + 1, |f| f.0)
                )))
            }
        }
        let (ids, _) = index.ids();
        let mut known: HashSet<u64> = ids.into_iter().collect();
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        for (at, batch) in tail.iter().filter(|(s, _)| *s > seq) {
            for op in batch.ops() {
                match self
                    .storage
                    .vector_change(&coll.config.name, op)
                    .map_err(unreadable)?
                {
                    Some(VectorChange::Put(id, rec)) => {
                        if !known.insert(id) {
                            return Err(Rejected::Mismatch(format!(
                                "chunk {id}'s vector changed after the dump (write {at})"
                            )));
                        }
                        puts.push((id, rec.vector));
                    }
                    Some(VectorChange::Delete(id)) => deletes.push(id),
                    Some(VectorChange::Context) => {
                        return Err(Rejected::Mismatch(format!(
                            "a new corpus context was stored after the dump (write {at})"
                        )))
                    }
                    Some(VectorChange::Dropped) => {
                        return Err(Rejected::Mismatch(format!(
                            "the collection was deleted after the dump (write {at})"
                        )))
                    }
                    None => {}
                }
            }
        }
        let items: Vec<(u64, &[f32])> = puts.iter().map(|(id, v)| (*id, v.as_slice())).collect();
        Ok(coll.insert_in_scope(index, &items) + coll.remove_in_scope(index, &deletes))
    }

    /// The retained log, read once.
    fn tail(&self) -> Result<Arc<LogTail>> {
        let mut tail = self.tail.lock().expect("lock");
        if let Some(t) = &*tail {
            return Ok(t.clone());
        }
        let read = Arc::new(self.storage.log().read_from(0)?);
        *tail = Some(read.clone());
        Ok(read)
    }

    /// The graph's live ids are exactly the stored documents' chunks, and sampled
    /// vectors are the stored ones.
    fn verify(&self, coll: &Collection, index: &VectorIndex) -> std::result::Result<(), Rejected> {
        let live = coll.live_chunks_in_scope();
        let (ids, dead) = index.ids();
        let graph_live: Vec<(usize, u64)> = ids
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, id)| !dead.contains(id))
            .collect();
        let distinct: HashSet<u64> = graph_live.iter().map(|(_, id)| *id).collect();
        if distinct.len() != graph_live.len() || distinct != live {
            return Err(Rejected::Disagrees(format!(
                "{} live chunks in the graph ({} distinct), {} in the stored documents",
                graph_live.len(),
                distinct.len(),
                live.len()
            )));
        }
        let step = graph_live.len().div_ceil(SAMPLED_VECTORS).max(1);
        let context = coll.context_version();
        for &(node, id) in graph_live.iter().step_by(step) {
            let stored = self
                .storage
                .get_vector(&coll.config.name, id)
                .map_err(|e| Rejected::Unreadable(e.to_string()))?;
            let same = stored.is_some_and(|rec| {
                rec.context == context
                    && index.stored_vector(node) == Some(index.stored_form(&rec.vector))
            });
            if !same {
                return Err(Rejected::Disagrees(format!(
                    "chunk {id}'s vector differs from the stored one"
                )));
            }
        }
        Ok(())
    }

    /// Writes `coll`'s dump now (see the module comment); false when the collection
    /// was deleted meanwhile.
    pub fn write(&self, coll: &Collection) -> Result<bool> {
        let _one_writer = coll.dump_lock.lock().expect("lock");
        self.write_holding_lock(coll)
    }

    /// [`GraphDumps::write`] by a caller that holds `coll.dump_lock` (a snapshot
    /// holds it until it has copied the file, so no newer dump replaces it first).
    pub(crate) fn write_holding_lock(&self, coll: &Collection) -> Result<bool> {
        let started = Instant::now();
        let (bytes, seq) = {
            let _writer = coll.lock_writes();
            if coll.is_deleted() {
                return Ok(false);
            }
            let seq = self.storage.log().last_seq();
            let bytes = coll.index().to_dump(&Self::header(coll, seq));
            coll.graph_changes.store(0, Ordering::SeqCst);
            (bytes, seq)
        };
        let locked = started.elapsed().as_secs_f64();
        let path = self.path(&coll.config.name);
        if let Err(e) = write_atomically(&path, &bytes) {
            coll.graph_changes.fetch_add(DIRTY, Ordering::SeqCst);
            return Err(e.into());
        }
        if coll.is_deleted() {
            // Deleted while the file was written: do not leave it behind.
            let _ = std::fs::remove_file(&path);
            return Ok(false);
        }
        tracing::info!(collection = %coll.config.name, seq, bytes = bytes.len(), locked_seconds = locked, seconds = started.elapsed().as_secs_f64(), "graph dump written");
        Ok(true)
    }

    /// [`GraphDumps::write`] on a thread of its own, unless one is running for
    /// `coll`; failures are logged (the dump is an optimisation, never needed).
    pub fn write_in_background(self: &Arc<Self>, coll: &Arc<Collection>) {
        if coll.dump_running.swap(true, Ordering::SeqCst) {
            return;
        }
        let (dumps, work) = (self.clone(), coll.clone());
        let spawned = std::thread::Builder::new()
            .name("engram-dump".into())
            .spawn(move || {
                let written = dumps.write(&work);
                // Let go of the records before saying this dump is done: a dropped
                // store waits for that, then its database may be opened again.
                drop(dumps);
                if let Err(e) = written {
                    tracing::error!(collection = %work.config.name, error = %e, "cannot write the graph dump; the next start-up may rebuild");
                }
                work.dump_running.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::error!(collection = %coll.config.name, error = %e, "cannot start a graph dump");
            coll.dump_running.store(false, Ordering::SeqCst);
        }
    }

    /// After a write: dumps in the background once enough changed (see
    /// [`DUMP_AFTER_BYTES`]).
    pub fn after_write(self: &Arc<Self>, coll: &Arc<Collection>) {
        let per_chunk = coll.config.dimension * 4 + 64;
        if coll
            .graph_changes
            .load(Ordering::SeqCst)
            .saturating_mul(per_chunk)
            >= DUMP_AFTER_BYTES
        {
            self.write_in_background(coll);
        }
    }

    /// Removes a deleted collection's dump (best effort: a dump left behind belongs
    /// to another incarnation and is never used).
    pub fn remove(&self, name: &str) {
        match std::fs::remove_file(self.path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(collection = %name, error = %e, "cannot remove the graph dump")
            }
        }
    }
}

/// What `Collection::graph_changes` is set to when its graph was swapped or rebuilt:
/// a dump is due whatever the count of changes.
pub const DIRTY: usize = usize::MAX / 4;

#[cfg(test)]
#[path = "graph_dump_tests.rs"]
mod tests;
