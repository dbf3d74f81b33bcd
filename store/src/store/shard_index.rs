//! Cluster mode: a node's graph holds the shards placed on it (`crate::shard_scope`),
//! and whole-collection queries go through the cluster's scatter/gather.
//!
//! Why the planner, not the follower, moves the graph: placement changes when nodes
//! join or leave (seconds apart, decided from heartbeats), while the follower applies
//! every shard's records in the log's order on every node. Keeping the records whole
//! and rebuilding only the graph, aside and off the applier's path, means a newly
//! placed shard needs no transfer from another node: its records are already here.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Store;
use crate::collection::{shard_of, Collection};
use crate::error::Result;
use crate::replica::ScatterQueries;
use crate::shard_scope::ShardScope;

/// What [`Store::index_shards`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescoped {
    /// The graph already held exactly those shards.
    Unchanged,
    /// A graph of those shards was built and swapped in.
    Rebuilt,
    /// A compaction or another rebuild of the graph is running, or a corpus context
    /// was installed during the build: ask again later.
    Busy,
}

impl Store {
    /// Makes collection `name`'s graph hold the vectors of `shards` alone (all of them
    /// when `shards` covers every shard), built aside from the records like a
    /// compaction, then swapped in; the new graph is dumped in the background, so a
    /// restart comes back with it. Blocks for the build (seconds to minutes for a large
    /// collection): callers run it off any request's path.
    pub fn index_shards(&self, name: &str, shards: &BTreeSet<u32>) -> Result<Rescoped> {
        let coll = self.collection(name)?;
        let scope = ShardScope::of(shards, coll.config.shards);
        if coll.scope() == scope {
            return Ok(Rescoped::Unchanged);
        }
        if coll.compacting.swap(true, Ordering::SeqCst) {
            return Ok(Rescoped::Busy);
        }
        let rebuilt = crate::compaction::rebuild(&self.storage, &coll, scope, || {});
        coll.compacting.store(false, Ordering::SeqCst);
        if !rebuilt? {
            return Ok(Rescoped::Busy);
        }
        self.dumps.write_in_background(&coll);
        Ok(Rescoped::Rebuilt)
    }

    /// The shards collection `name`'s graph holds.
    pub fn indexed_shards(&self, name: &str) -> Result<ShardScope> {
        Ok(self.collection(name)?.scope())
    }

    /// From now on [`Store::query`] asks `scatter` (cluster mode; set once).
    pub fn attach_scatter(&self, scatter: Arc<dyn ScatterQueries>) {
        let _ = self.scatter.set(scatter);
    }

    /// The cluster's scatter/gather, once attached.
    pub(super) fn scatter(&self) -> Option<&Arc<dyn ScatterQueries>> {
        self.scatter.get()
    }

    /// Where a read of document `id` of `coll` goes: the scatter and the document's
    /// shard when this node's graph does not hold that shard (its records are read by
    /// the nodes placed on it, as `forwards` sends its writes there); None: here.
    pub(super) fn read_elsewhere(
        &self,
        coll: &Collection,
        id: &str,
    ) -> Option<(&Arc<dyn ScatterQueries>, u32)> {
        let scatter = self.scatter()?;
        let shard = shard_of(id, coll.config.shards);
        (!coll.scope().holds_shard(shard)).then_some((scatter, shard))
    }
}
