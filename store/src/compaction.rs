//! Rebuilding a collection's graph without its tombstones, off the request path.
//!
//! Why: HNSW deletes are tombstones, and once they outnumber live vectors every search
//! walks mostly dead nodes. Rebuilding takes seconds to minutes for a large collection;
//! done inside the write that crossed the threshold, it held the collection's write
//! lock (stalling every other write) and could fail a write that was already stored.
//! So a write only starts a compaction ([`start`]); a background thread builds the new
//! graph aside from the vectors in storage while queries and writes go on with the old
//! one, then, under the write lock, adds the chunks written meanwhile, tombstones the
//! ones deleted meanwhile, and swaps the graph in. The graph is derived data: a crash
//! or a failure midway loses nothing, and the next write tries again.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::collection::Collection;
use crate::error::Result;
use crate::graph_dump::GraphDumps;
use crate::shard_scope::ShardScope;
use crate::storage::Storage;

/// Starts a background compaction of `coll` when tombstones dominate its graph and
/// none is running. Never fails: a compaction that cannot start or finish is
/// logged, and the collection keeps its current graph until a later write retries.
pub fn start(storage: &Arc<Storage>, dumps: &Arc<GraphDumps>, coll: &Arc<Collection>) {
    if !coll.needs_compaction() || coll.compacting.swap(true, Ordering::SeqCst) {
        return;
    }
    let (storage, dumps, work) = (storage.clone(), dumps.clone(), coll.clone());
    let spawned = std::thread::Builder::new()
        .name("engram-compact".into())
        .spawn(move || {
            match compact(&storage, &work, || {}) {
                // The compacted graph replaces the dump's (still full of tombstones).
                Ok(true) => dumps.write_in_background(&work),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(collection = %work.config.name, error = %e, "compaction failed; the next write retries");
                }
            }
            work.compacting.store(false, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        tracing::error!(collection = %coll.config.name, error = %e, "cannot start a compaction");
        coll.compacting.store(false, Ordering::SeqCst);
    }
}

/// Builds a graph of `coll`'s live vectors aside and swaps it in (see the module
/// comment); `before_swap` runs between the build and the final catch-up (tests
/// write there). Returns false when there was nothing to swap: the collection was
/// deleted, or a new corpus context swapped in its own fresh graph meanwhile.
pub fn compact(storage: &Storage, coll: &Collection, before_swap: impl FnOnce()) -> Result<bool> {
    rebuild(storage, coll, coll.scope(), before_swap)
}

/// [`compact`] into a graph of the shards `scope` holds, which becomes the
/// collection's scope at the swap: how a cluster node's graph follows its placement
/// (`crate::shard_scope`). The same aside-build and catch-up serve both, so a
/// change of shards never holds the write lock for longer than a compaction does.
pub fn rebuild(
    storage: &Storage,
    coll: &Collection,
    scope: ShardScope,
    before_swap: impl FnOnce(),
) -> Result<bool> {
    let name = &coll.config.name;
    let shards = coll.config.shards;
    let started = std::time::Instant::now();
    let in_scope = |ids: HashSet<u64>| -> HashSet<u64> {
        ids.into_iter()
            .filter(|id| scope.holds_chunk(*id, shards))
            .collect()
    };
    // Chunks live when the build starts are committed, and a chunk's vector never
    // changes under its id except by a new context (checked before the swap).
    let (live, context) = {
        let _writer = coll.lock_writes();
        (in_scope(coll.live_chunks()), coll.context_version())
    };
    let dead = coll.index().tombstone_count();
    let mut vectors = Vec::with_capacity(live.len());
    storage.scan_vectors(name, |id, rec| {
        if live.contains(&id) {
            vectors.push((id, rec.vector));
        }
        Ok(())
    })?;
    drop(live);
    let index = coll.build_scoped_index(&scope, &vectors);
    let built: HashSet<u64> = vectors.into_iter().map(|(id, _)| id).collect();
    before_swap();

    let _writer = coll.lock_writes();
    if coll.is_deleted() || coll.context_version() != context {
        return Ok(false);
    }
    let now = in_scope(coll.live_chunks());
    let mut added = Vec::new();
    for id in now.difference(&built) {
        if let Some(rec) = storage.get_vector(name, *id)? {
            added.push((*id, rec.vector));
        }
    }
    let items: Vec<(u64, &[f32])> = added.iter().map(|(id, v)| (*id, v.as_slice())).collect();
    index.insert_batch(&items);
    let gone: Vec<u64> = built.difference(&now).copied().collect();
    index.remove(&gone);
    let held = scope.to_list().map_or(shards as usize, |s| s.len());
    coll.swap_scoped_index(scope, index);
    tracing::info!(
        collection = %name,
        dead,
        shards = held,
        caught_up = added.len() + gone.len(),
        seconds = started.elapsed().as_secs_f64(),
        "compacted the index"
    );
    Ok(true)
}
