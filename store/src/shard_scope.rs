//! Which of a collection's shards its in-memory graph holds.
//!
//! Why: in cluster mode every node stores every shard's records (README "Cluster
//! mode"), but the graph, the part that lives in memory and that queries walk, only
//! needs the shards placed on the node: the others are ranked by their own replicas.
//! So a node's graph follows its placement (`engram-cluster`'s planner asks
//! `Store::index_shards`), and memory and query work per node fall as nodes are added.
//! On one machine, and until the first placement, the scope is every shard.
//!
//! A chunk's shard is its id modulo the collection's shard count: cluster-mode writes
//! pick ids in their shard's residue class (`Store::shard_chunk_id`), so no lookup of
//! the owning document is needed on any path that inserts into the graph.

use std::collections::{BTreeSet, HashSet};

use crate::collection::Collection;
use crate::index::VectorIndex;

/// The shards whose vectors a graph holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ShardScope {
    /// Every shard (one machine, or a node placed on all of them).
    #[default]
    All,
    /// Only these shards.
    Only(BTreeSet<u32>),
}

impl ShardScope {
    /// The scope of `shards` out of `count`: [`ShardScope::All`] when they are all of
    /// them, so a node placed on every shard keeps the one-machine graph as it is.
    pub fn of(shards: &BTreeSet<u32>, count: u32) -> ShardScope {
        if (0..count).all(|s| shards.contains(&s)) {
            ShardScope::All
        } else {
            ShardScope::Only(shards.iter().copied().filter(|&s| s < count).collect())
        }
    }

    /// The shards it holds, of a collection of `count`.
    pub fn shards(&self, count: u32) -> BTreeSet<u32> {
        (0..count).filter(|&s| self.holds_shard(s)).collect()
    }

    /// Whether the graph holds shard `shard`.
    pub fn holds_shard(&self, shard: u32) -> bool {
        match self {
            ShardScope::All => true,
            ShardScope::Only(set) => set.contains(&shard),
        }
    }

    /// Whether the graph holds chunk `id` of a collection of `count` shards.
    pub fn holds_chunk(&self, id: u64, count: u32) -> bool {
        match self {
            ShardScope::All => true,
            ShardScope::Only(set) => {
                u32::try_from(id % u64::from(count.max(1))).is_ok_and(|s| set.contains(&s))
            }
        }
    }

    /// As a graph dump's header stores it (`None`: every shard).
    pub fn to_list(&self) -> Option<Vec<u32>> {
        match self {
            ShardScope::All => None,
            ShardScope::Only(set) => Some(set.iter().copied().collect()),
        }
    }

    /// From a graph dump's header.
    pub fn from_list(list: Option<&[u32]>) -> ShardScope {
        match list {
            None => ShardScope::All,
            Some(shards) => ShardScope::Only(shards.iter().copied().collect()),
        }
    }
}

impl Collection {
    /// Swaps in a graph built aside for `scope` (see [`Collection::swap_index`]).
    pub(crate) fn swap_scoped_index(&self, scope: ShardScope, index: VectorIndex) {
        *self.scope.write().expect("lock") = scope;
        self.swap_index(index);
    }

    /// The shards the graph holds (see `crate::shard_scope`).
    pub fn scope(&self) -> ShardScope {
        self.scope.read().expect("lock").clone()
    }

    /// Sets the scope of a graph read from a dump, before it is caught up.
    pub(crate) fn set_scope(&self, scope: ShardScope) {
        *self.scope.write().expect("lock") = scope;
    }

    /// The chunks of `items` whose shard the graph holds.
    pub(crate) fn in_scope<T: Copy>(&self, items: &[T], id: impl Fn(&T) -> u64) -> Vec<T> {
        let scope = self.scope.read().expect("lock");
        let shards = self.config.shards;
        items
            .iter()
            .filter(|t| scope.holds_chunk(id(t), shards))
            .copied()
            .collect()
    }

    /// Inserts the chunks of `items` the graph's scope holds into `index`.
    pub(crate) fn insert_in_scope(&self, index: &VectorIndex, items: &[(u64, &[f32])]) -> usize {
        let kept = self.in_scope(items, |(id, _)| *id);
        index.insert_batch(&kept);
        kept.len()
    }

    /// Tombstones in `index` the chunks of `ids` the graph's scope holds (the others
    /// were never inserted; a tombstone for them would be counted as a dead node).
    pub(crate) fn remove_in_scope(&self, index: &VectorIndex, ids: &[u64]) -> usize {
        let kept = self.in_scope(ids, |id| *id);
        index.remove(&kept);
        kept.len()
    }

    /// A new graph over those of `vectors` that `scope` holds.
    pub(crate) fn build_scoped_index(
        &self,
        scope: &ShardScope,
        vectors: &[(u64, Vec<f32>)],
    ) -> VectorIndex {
        let items: Vec<(u64, &[f32])> = vectors
            .iter()
            .filter(|(id, _)| scope.holds_chunk(*id, self.config.shards))
            .map(|(id, v)| (*id, v.as_slice()))
            .collect();
        let index = VectorIndex::new(
            self.config.dimension,
            self.config.distance,
            self.config.hnsw,
            items.len(),
        );
        index.insert_batch(&items);
        index
    }

    /// The live chunks whose shard the graph holds.
    pub fn live_chunks_in_scope(&self) -> HashSet<u64> {
        let scope = self.scope.read().expect("lock");
        let shards = self.config.shards;
        self.with_chunks(|chunks| {
            chunks
                .keys()
                .copied()
                .filter(|id| scope.holds_chunk(*id, shards))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &[u32]) -> BTreeSet<u32> {
        s.iter().copied().collect()
    }

    #[test]
    fn every_shard_is_all_and_chunks_follow_their_residue() {
        assert_eq!(ShardScope::of(&set(&[0, 1, 2, 3]), 4), ShardScope::All);
        let some = ShardScope::of(&set(&[1, 3, 9]), 4);
        assert_eq!(
            some,
            ShardScope::Only(set(&[1, 3])),
            "shards past the count dropped"
        );
        assert!(some.holds_shard(3) && !some.holds_shard(0));
        assert!(some.holds_chunk(5, 4) && some.holds_chunk(7, 4));
        assert!(!some.holds_chunk(8, 4) && !some.holds_chunk(2, 4));
        assert!(ShardScope::All.holds_chunk(8, 4));
        // One shard: every chunk is in shard 0.
        assert!(ShardScope::of(&set(&[0]), 1) == ShardScope::All);
    }

    #[test]
    fn the_dump_list_round_trips() {
        for scope in [ShardScope::All, ShardScope::Only(set(&[0, 5]))] {
            assert_eq!(ShardScope::from_list(scope.to_list().as_deref()), scope);
        }
    }
}
