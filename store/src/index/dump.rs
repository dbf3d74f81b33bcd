//! The vector index on disk: one file per collection that holds its whole graph (the
//! arrays of `graph/persist.rs`), the collection id of every node, and the tombstones,
//! so a start-up reads it back in a second or two instead of rebuilding the graph.
//!
//! Layout: the magic `ENGRAMGR`, the format version (u32 LE), a JSON header (u32 LE
//! length, then [`DumpHeader`]: what the graph was built for and the write-log
//! sequence number it reflects), the body, and a CRC32 of everything before it.
//! A file is written whole to a temporary name, synced, then renamed over the old one
//! and its directory synced ([`write_atomically`]): a crash leaves the old dump or
//! the new one, never a mix. Reading rejects, with the reason, a file of another
//! format version, a damaged one (checksum, sizes, links out of range), and one built
//! for something else (another incarnation of the collection, dimension, metric,
//! graph parameters, corpus context): see [`Rejected`].

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::bytes::{Reader, Writer};
use super::graph::Graph;
use super::{IndexParams, Metric, Nodes, VectorIndex};

/// The version of the layout this build writes and reads; any other is rejected.
/// 2: graphs built since duplicate vectors are linked on a ring (`graph/twins.rs`);
/// a version-1 dump may hold islands of copies, so it is rebuilt once.
pub const FORMAT_VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"ENGRAMGR";

/// What a dump was built for, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpHeader {
    pub collection: String,
    /// The collection's incarnation (a re-created collection of the same name differs).
    pub incarnation: u64,
    pub dimension: usize,
    pub metric: Metric,
    pub hnsw: IndexParams,
    /// The corpus context the vectors were embedded with (0: none).
    pub context_version: u64,
    /// The write-log sequence number the graph reflects: every batch of the collection
    /// up to it is in the graph, none after it.
    pub seq: u64,
    /// The shards whose vectors the graph holds (`crate::shard_scope`); absent: all.
    /// Not compared with the collection: a start-up takes the dump's and the cluster
    /// planner moves it on from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<u32>>,
}

/// Why a dump was not used (the start-up then rebuilds the graph and logs this).
#[derive(Debug, Clone, PartialEq)]
pub enum Rejected {
    /// No dump file.
    Missing,
    /// The file could not be read.
    Unreadable(String),
    /// Written by another format version.
    Version(u32),
    /// Damaged: bad magic, checksum, sizes or contents.
    Corrupt(String),
    /// Built for something else than the collection as it is now.
    Mismatch(String),
    /// The write log no longer holds every write after the dump's sequence number.
    Stale(String),
    /// Brought up to date, it still disagrees with the records (RocksDB wins).
    Disagrees(String),
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::Missing => write!(f, "missing: no graph dump"),
            Rejected::Unreadable(e) => write!(f, "unreadable: {e}"),
            Rejected::Version(v) => write!(
                f,
                "wrong version: format {v}, this build reads {FORMAT_VERSION}"
            ),
            Rejected::Corrupt(e) => write!(f, "corrupt: {e}"),
            Rejected::Mismatch(e) => write!(f, "mismatched: {e}"),
            Rejected::Stale(e) => write!(f, "stale: {e}"),
            Rejected::Disagrees(e) => write!(f, "disagrees with the records: {e}"),
        }
    }
}

impl VectorIndex {
    /// The index as a dump's bytes, header and checksum included. Holds the index's
    /// read locks while it copies the arrays (memory speed); callers hold the
    /// collection's write lock too, so the copy matches `header.seq` exactly.
    pub fn to_dump(&self, header: &DumpHeader) -> Vec<u8> {
        let tombstones = self.tombstones.read().expect("tombstone lock poisoned");
        let nodes = self.nodes.read().expect("index lock poisoned");
        let graph_bytes = nodes.graph.len() as f64 * nodes.graph.bytes_per_node();
        let mut out = Writer::with_capacity(graph_bytes as usize + nodes.ids.len() * 8 + 4096);
        out.bytes(MAGIC);
        out.u32(FORMAT_VERSION);
        let json = serde_json::to_vec(header).expect("headers serialise");
        out.u32(json.len() as u32);
        out.bytes(&json);
        nodes.graph.write(&mut out);
        out.u64(nodes.ids.len() as u64);
        out.u64s(&nodes.ids);
        let mut dead: Vec<u64> = tombstones.iter().copied().collect();
        dead.sort_unstable();
        out.u64(dead.len() as u64);
        out.u64s(&dead);
        let crc = crc32fast::hash(&out.0);
        out.u32(crc);
        out.0
    }

    /// The index in `bytes`, when it is a sound dump built for `expected` (whose
    /// `seq` and `shards` are ignored); returns the dump's header with it.
    pub fn from_dump(bytes: &[u8], expected: &DumpHeader) -> Result<(DumpHeader, Self), Rejected> {
        let corrupt = |e: String| Rejected::Corrupt(e);
        let mut r = Reader::new(bytes);
        if r.take(8, "magic").map_err(corrupt)? != MAGIC {
            return Err(Rejected::Corrupt("not a graph dump (bad magic)".into()));
        }
        let version = r.u32("format version").map_err(corrupt)?;
        if version != FORMAT_VERSION {
            return Err(Rejected::Version(version));
        }
        let (body, sum) = bytes
            .split_at_checked(bytes.len().saturating_sub(4))
            .filter(|(b, _)| b.len() >= 16)
            .ok_or_else(|| Rejected::Corrupt("cut short before its checksum".into()))?;
        let stored = u32::from_le_bytes(sum.try_into().expect("4 bytes"));
        if crc32fast::hash(body) != stored {
            return Err(Rejected::Corrupt("checksum mismatch".into()));
        }
        let len = u32::from_le_bytes(body[12..16].try_into().expect("4 bytes")) as usize;
        let mut r = Reader::new(&body[16..]);
        let header: DumpHeader = serde_json::from_slice(r.take(len, "header").map_err(corrupt)?)
            .map_err(|e| Rejected::Corrupt(format!("unreadable header: {e}")))?;
        mismatch(expected, &header)?;
        let graph = Graph::read(&mut r, header.metric.graph_distance()).map_err(corrupt)?;
        let n = r.count(8, "id count").map_err(corrupt)?;
        let ids = r.u64s(n, "ids").map_err(corrupt)?;
        let dead = r.count(8, "tombstone count").map_err(corrupt)?;
        let tombstones: HashSet<u64> = r
            .u64s(dead, "tombstones")
            .map_err(corrupt)?
            .into_iter()
            .collect();
        if !r.is_empty() || ids.len() != graph.len() || graph.dim() != header.dimension {
            return Err(Rejected::Corrupt(format!(
                "{} ids for {} nodes of {} dimensions, {} bytes left over",
                ids.len(),
                graph.len(),
                graph.dim(),
                bytes.len()
            )));
        }
        let index = VectorIndex {
            metric: header.metric,
            quantization: header.hnsw.quantization,
            nodes: RwLock::new(Nodes { graph, ids }),
            tombstones: RwLock::new(tombstones),
        };
        Ok((header, index))
    }

    /// Every node's collection id and whether it is a tombstone, in node order (the
    /// dump's loader checks them against the records).
    pub fn ids(&self) -> (Vec<u64>, HashSet<u64>) {
        let tombstones = self.tombstones.read().expect("tombstone lock poisoned");
        let nodes = self.nodes.read().expect("index lock poisoned");
        (nodes.ids.clone(), tombstones.clone())
    }

    /// The vector stored for node `n` as the graph holds it (normalised for cosine).
    pub fn stored_vector(&self, node: usize) -> Option<Vec<f32>> {
        let nodes = self.nodes.read().expect("index lock poisoned");
        (node < nodes.ids.len()).then(|| nodes.graph.vector_of(node as u32).to_vec())
    }

    /// `v` as the graph would store it (see [`VectorIndex::stored_vector`]).
    pub fn stored_form(&self, v: &[f32]) -> Vec<f32> {
        self.prepare(v)
    }
}

/// Says what differs when `found` was built for something else than `expected`.
fn mismatch(expected: &DumpHeader, found: &DumpHeader) -> Result<(), Rejected> {
    let same = DumpHeader {
        seq: expected.seq,
        shards: expected.shards.clone(),
        ..found.clone()
    };
    if &same == expected {
        return Ok(());
    }
    let e = serde_json::to_value(expected).expect("headers serialise");
    let f = serde_json::to_value(found).expect("headers serialise");
    let what: Vec<String> = e
        .as_object()
        .expect("an object")
        .iter()
        .filter(|(k, v)| *k != "seq" && *k != "shards" && f.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("{k} is {} in the dump, {v} now", f[k.as_str()]))
        .collect();
    Err(Rejected::Mismatch(what.join(", ")))
}

/// Reads a dump file whole; a missing one is [`Rejected::Missing`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, Rejected> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Rejected::Missing,
        _ => Rejected::Unreadable(format!("{}: {e}", path.display())),
    })
}

/// Writes `bytes` to `path` so that a crash at any point leaves the old file or the
/// new one: to `path.tmp` first, synced, renamed over `path`, the directory synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("graph.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
#[path = "dump_tests.rs"]
mod tests;
