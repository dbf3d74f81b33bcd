//! Adding nodes: the HNSW level draw, the neighbour search and heuristic, linking
//! (one at a time and in parallel batches).

use std::collections::hash_map::{Entry, HashMap};

use rayon::prelude::*;

use super::{Distance, Graph, Near};

/// What a new node links to: its neighbours on each of its levels (index = level)
/// and, when the search found an exact copy of it, that twin (whose ring it joins).
struct Chosen {
    levels: Vec<Vec<u32>>,
    twin: Option<u32>,
}

/// Below this many nodes, [`Graph::insert_many`] inserts one at a time: batches
/// would be too small to be worth the threads, and too large a share of the graph.
const PARALLEL_FROM: usize = 2_000;
/// A parallel batch is at most `1 / BATCH_SHARE` of the graph it joins (2%).
const BATCH_SHARE: usize = 50;

impl<D: Distance> Graph<D> {
    fn random_level(&mut self) -> u8 {
        // xorshift64*: deterministic, so a rebuilt graph is the same graph.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(15) as u8
    }

    /// The HNSW neighbour heuristic: keep a candidate only if it is nearer to the
    /// base than to every neighbour already kept, which spreads links out. Exact
    /// copies of the base are left out: they are linked on their ring (`twins.rs`).
    pub(super) fn select(&self, base: u32, sorted: &[Near], limit: usize) -> Vec<u32> {
        let b = self.vector(base);
        let own = self.distance.between(b, b);
        let mut kept: Vec<u32> = Vec::with_capacity(limit);
        for c in sorted {
            if kept.len() == limit {
                break;
            }
            if self.is_twin(b, own, c) {
                continue;
            }
            let v = self.vector(c.1);
            if kept
                .iter()
                .all(|&s| self.distance.between(v, self.vector(s)) > c.0)
            {
                kept.push(c.1);
            }
        }
        kept
    }

    /// Adds a vector; returns its node number.
    pub fn insert(&mut self, vector: &[f32]) -> u32 {
        let level = self.random_level();
        let node = self.append(vector, level);
        let Some(entry) = self.entry else {
            self.entry = Some(node);
            self.max_level = level;
            return node;
        };
        let chosen = self.neighbours_of(node, entry);
        self.link(&[(node, chosen)]);
        self.raise_entry(node);
        node
    }

    /// Adds many vectors (node numbers follow on from [`Graph::len`]), searching for
    /// their neighbours on every rayon thread.
    ///
    /// The vectors join in batches of at most [`BATCH_SHARE`] of the graph: a batch's
    /// nodes search the graph as it was before the batch, in parallel, then their
    /// links and the reverse links (pruned per target node, also in parallel) are
    /// written at once. Nodes of one batch do not see each other, which the small
    /// batch share makes harmless (later nodes link them); a node that would become
    /// the new top of the hierarchy joins alone, as in [`Graph::insert`], so the
    /// upper layers stay connected. The result does not depend on the thread count.
    pub fn insert_many(&mut self, vectors: &[&[f32]]) {
        let mut rest = vectors;
        while let Some((&first, tail)) = rest.split_first() {
            if self.len() < PARALLEL_FROM {
                self.insert(first);
                rest = tail;
                continue;
            }
            let take = (self.len() / BATCH_SHARE).clamp(1, rest.len());
            let (batch, tail) = rest.split_at(take);
            let levels: Vec<u8> = batch.iter().map(|_| self.random_level()).collect();
            let start = self.len() as u32;
            for (v, &level) in batch.iter().zip(&levels) {
                self.append(v, level);
            }
            // The first node that would raise the top level, and those after it,
            // join one by one.
            let together = levels
                .iter()
                .position(|&l| l > self.max_level)
                .unwrap_or(batch.len());
            let entry = self.entry.expect("the graph is not empty here");
            let chosen: Vec<(u32, Chosen)> = (start..start + together as u32)
                .into_par_iter()
                .map(|node| (node, self.neighbours_of(node, entry)))
                .collect();
            self.link(&chosen);
            for node in start + together as u32..start + batch.len() as u32 {
                let entry = self.entry.expect("the graph is not empty here");
                let chosen = self.neighbours_of(node, entry);
                self.link(&[(node, chosen)]);
                self.raise_entry(node);
            }
            rest = tail;
        }
    }

    /// The neighbours `node` should link to on each of its levels, and a twin of it
    /// if there is one, found by searching the graph from `entry`; reads only.
    fn neighbours_of(&self, node: u32, entry: u32) -> Chosen {
        let query = self.vector(node);
        let level = self.levels[node as usize];
        let mut ep = self.descend(query, entry, level + 1);
        let top = level.min(self.max_level);
        let mut levels = vec![Vec::new(); top as usize + 1];
        let mut twin = None;
        for l in (0..=top).rev() {
            let found = if l == 0 {
                self.search_layer0(query, &ep, self.ef_construction, None).0
            } else {
                self.search_layer(query, &ep, self.ef_construction, l, None)
            };
            levels[l as usize] = self.select(node, &found, self.m);
            if l == 0 {
                let own = self.distance.between(query, query);
                twin = found
                    .iter()
                    .find(|c| self.is_twin(query, own, c))
                    .map(|c| c.1);
            }
            ep = found;
        }
        Chosen { levels, twin }
    }

    /// Writes new nodes' links and the links back to them, each target's list
    /// merged and, when over capacity, pruned by the heuristic (in parallel); then
    /// puts each new node that has a twin on its ring (in node order).
    fn link(&mut self, chosen: &[(u32, Chosen)]) {
        let mut back: Vec<(u8, u32, u32)> = Vec::new();
        for (node, c) in chosen {
            for (l, neighbours) in c.levels.iter().enumerate() {
                self.set_links(*node, l as u8, neighbours);
                back.extend(neighbours.iter().map(|&nb| (l as u8, nb, *node)));
            }
        }
        back.sort_unstable();
        let groups: Vec<&[(u8, u32, u32)]> =
            back.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).collect();
        let merge = |g: &&[(u8, u32, u32)]| {
            let (level, target) = (g[0].0, g[0].1);
            (
                level,
                target,
                self.merged_links(target, level, g.iter().map(|x| x.2)),
            )
        };
        let merged: Vec<(u8, u32, Vec<u32>)> = if groups.len() > 1 {
            groups.par_iter().map(merge).collect()
        } else {
            groups.iter().map(merge).collect()
        };
        for (level, target, links) in merged {
            self.set_links(target, level, &links);
        }
        // Copies within one batch did not see each other: the first one found is
        // the twin of the rest.
        let mut first: HashMap<Vec<u32>, u32> = HashMap::new();
        for (node, c) in chosen {
            let twin = c.twin.or_else(|| {
                if chosen.len() == 1 {
                    return None;
                }
                // `+ 0.0` makes -0.0 and 0.0 (equal vectors) one key.
                let key = self.vector(*node).iter().map(|x| (x + 0.0).to_bits());
                match first.entry(key.collect()) {
                    Entry::Occupied(e) => Some(*e.get()),
                    Entry::Vacant(e) => {
                        e.insert(*node);
                        None
                    }
                }
            });
            if let Some(twin) = twin {
                self.join_ring(*node, twin);
            }
        }
    }

    /// `target`'s links on `level` with `new` added, pruned to capacity; its ring
    /// link (layer 0) stays first.
    fn merged_links(&self, target: u32, level: u8, new: impl Iterator<Item = u32>) -> Vec<u32> {
        let cap = if level == 0 { self.m0 } else { self.m };
        let mut links = self.links(target, level).to_vec();
        links.extend(new);
        if links.len() <= cap {
            return links;
        }
        match (level == 0).then(|| self.ring_next(target)).flatten() {
            Some(ring) => {
                let rest = self.pruned(target, links.split_off(1), cap - 1);
                std::iter::once(ring).chain(rest).collect()
            }
            None => self.pruned(target, links, cap),
        }
    }

    /// Makes `node` the entry point when it is above the current top level.
    fn raise_entry(&mut self, node: u32) {
        let level = self.levels[node as usize];
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(node);
        }
    }
}
