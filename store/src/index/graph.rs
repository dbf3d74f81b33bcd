//! Engram's own HNSW graph (Malkov & Yashunin): flat storage so the search hot
//! loop touches contiguous memory only: vectors in one `Vec<f32>`, layer-0 links
//! in fixed-size `u32` slots, a generation-stamped visited array reused across
//! queries. Distances come from the caller (Engram's SIMD kernels).
//!
//! Optionally ([`Graph::quantize`]) every vector also gets int8 codes (Qdrant's
//! scalar quantization, `engram_kernels::quant`): the layer-0 walk of a search then
//! reads a quarter of the bytes and scores with integer SIMD, and the `ef` nodes it
//! finds are rescored with the exact f32 distance before the top k are returned.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use engram_kernels::ScalarQuantizer;
use rayon::prelude::*;

pub use super::codes::QuantizedDistance;
use super::codes::{CodeRows, Quantized};
use super::memory::{advise_huge_pages, prefetch, VISITED};

/// Below this many nodes, [`Graph::insert_many`] inserts one at a time: batches
/// would be too small to be worth the threads, and too large a share of the graph.
const PARALLEL_FROM: usize = 2_000;
/// A parallel batch is at most `1 / BATCH_SHARE` of the graph it joins (2%).
const BATCH_SHARE: usize = 50;

/// Nodes a filtered walk may visit per unit of `ef` before it gives up (and at least
/// [`FILTER_MIN_VISITS`]): a filter that matches nothing (or only nodes the walk cannot
/// reach) would otherwise walk the whole graph on every query.
pub const FILTER_VISITS_PER_EF: usize = 64;
/// The least a filtered walk visits before it may give up.
pub const FILTER_MIN_VISITS: usize = 8_192;

/// How many nodes a filtered walk of breadth `ef` visits at most.
pub fn filter_budget(ef: usize) -> usize {
    ef.saturating_mul(FILTER_VISITS_PER_EF)
        .max(FILTER_MIN_VISITS)
}

/// A (distance, node) pair ordered by distance (ties by node, for determinism).
#[derive(Clone, Copy, PartialEq)]
struct Near(f32, u32);

impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// The graph's distance between two vectors: lower is nearer. A trait rather than
/// `Fn` so the index can hold a resolved SIMD kernel and the walk call it inline;
/// any `Fn(&[f32], &[f32]) -> f32` is one too.
pub trait Distance: Sync {
    fn between(&self, a: &[f32], b: &[f32]) -> f32;
}

impl<F: Fn(&[f32], &[f32]) -> f32 + Sync> Distance for F {
    #[inline(always)]
    fn between(&self, a: &[f32], b: &[f32]) -> f32 {
        self(a, b)
    }
}

/// The graph. Node numbers are dense (0..n); the caller maps them to its ids.
pub struct Graph<D: Distance> {
    dim: usize,
    m: usize,
    m0: usize,
    ef_construction: usize,
    level_mult: f64,
    distance: D,
    vectors: Vec<f32>,
    levels: Vec<u8>,
    /// n * (m0 + 1) slots: a count, then the neighbours.
    links0: Vec<u32>,
    /// Per node, its levels 1..=level as `level * (m + 1)` slots (count, neighbours).
    upper: Vec<Vec<u32>>,
    entry: Option<u32>,
    max_level: u8,
    rng: u64,
    quantized: Option<Quantized>,
}

impl<D: Distance> Graph<D> {
    pub fn new(dim: usize, m: usize, ef_construction: usize, distance: D) -> Self {
        let m = m.max(2);
        Graph {
            dim,
            m,
            m0: 2 * m,
            ef_construction: ef_construction.max(m),
            level_mult: 1.0 / (m as f64).ln(),
            distance,
            vectors: Vec::new(),
            levels: Vec::new(),
            links0: Vec::new(),
            upper: Vec::new(),
            entry: None,
            max_level: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            quantized: None,
        }
    }

    /// Adds int8 codes for every node (and every later one), with the range learned
    /// from the vectors now in the graph (the range with the least squared error on
    /// them, [`ScalarQuantizer::fit`]), and
    /// makes searches walk layer 0 on them. False (and nothing changes) when the
    /// graph is empty or already quantized.
    pub fn quantize(&mut self, kind: QuantizedDistance) -> bool {
        if self.quantized.is_some() || self.is_empty() {
            return false;
        }
        let Ok(quantizer) = ScalarQuantizer::fit(self.vectors.chunks(self.dim)) else {
            return false;
        };
        let mut q = Quantized {
            quantizer,
            kind,
            codes: CodeRows::new(self.dim, self.len()),
        };
        for v in self.vectors.chunks(self.dim) {
            q.push(v);
        }
        self.quantized = Some(q);
        self.advise_huge_pages();
        true
    }

    /// Whether searches walk int8 codes.
    pub fn is_quantized(&self) -> bool {
        self.quantized.is_some()
    }

    /// Bytes held per node: the f32 vector, its int8 codes and their two terms when
    /// quantized, the layer-0 link slots and (on average) the upper layers' slots.
    pub fn bytes_per_node(&self) -> f64 {
        let n = self.len().max(1) as f64;
        let upper: usize = self.upper.iter().map(|u| u.len() * 4).sum();
        let quant = self.quantized.as_ref().map_or(0, |q| q.codes.row_bytes());
        (self.dim * 4 + quant + (self.m0 + 1) * 4 + 1) as f64 + upper as f64 / n
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Makes room for `n` more nodes.
    pub fn reserve(&mut self, n: usize) {
        self.vectors.reserve(n * self.dim);
        self.levels.reserve(n);
        self.links0.reserve(n * (self.m0 + 1));
        self.upper.reserve(n);
        if let Some(q) = &mut self.quantized {
            q.codes.reserve(n);
        }
        self.advise_huge_pages();
    }

    /// Asks for 2 MiB pages behind the big arrays the walk reads at random (see
    /// [`advise_huge_pages`]); called whenever one of them was reallocated.
    fn advise_huge_pages(&self) {
        advise_huge_pages(&self.vectors);
        advise_huge_pages(&self.links0);
        if let Some(q) = &self.quantized {
            q.codes.advise_huge_pages();
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    fn vector(&self, node: u32) -> &[f32] {
        let at = node as usize * self.dim;
        &self.vectors[at..at + self.dim]
    }

    /// Hints the CPU to load a node's vector (its codes, when `codes`) into cache.
    #[inline(always)]
    fn prefetch(&self, node: u32, codes: bool) {
        let at = node as usize * self.dim;
        match (&self.quantized, codes) {
            (Some(q), true) => prefetch(Some(q.codes.used(node))),
            _ => prefetch(self.vectors.get(at..at + self.dim)),
        }
    }

    /// Hints the CPU to load a node's link slots on `level`.
    #[inline(always)]
    fn prefetch_links(&self, node: u32, level: u8) {
        if level == 0 {
            let at = node as usize * (self.m0 + 1);
            prefetch(self.links0.get(at..at + self.m0 + 1));
        }
    }

    fn links(&self, node: u32, level: u8) -> &[u32] {
        let slots = if level == 0 {
            let at = node as usize * (self.m0 + 1);
            &self.links0[at..at + self.m0 + 1]
        } else {
            let at = (level as usize - 1) * (self.m + 1);
            &self.upper[node as usize][at..at + self.m + 1]
        };
        &slots[1..1 + slots[0] as usize]
    }

    fn set_links(&mut self, node: u32, level: u8, to: &[u32]) {
        let (slots, cap) = if level == 0 {
            let at = node as usize * (self.m0 + 1);
            (&mut self.links0[at..at + self.m0 + 1], self.m0)
        } else {
            let at = (level as usize - 1) * (self.m + 1);
            (&mut self.upper[node as usize][at..at + self.m + 1], self.m)
        };
        let n = to.len().min(cap);
        slots[0] = n as u32;
        slots[1..1 + n].copy_from_slice(&to[..n]);
    }

    fn random_level(&mut self) -> u8 {
        // xorshift64*: deterministic, so a rebuilt graph is the same graph.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(15) as u8
    }

    /// Best-first search of one layer with the exact distance to `query`.
    fn search_layer(
        &self,
        query: &[f32],
        entry: &[Near],
        ef: usize,
        level: u8,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Near> {
        let exact = |n: u32| self.distance.between(query, self.vector(n));
        self.walk(exact, false, entry, ef, level, keep).0
    }

    /// From `entry` down through the levels from the top to `down_to`, keeping the
    /// nearest node found on each (ef = 1): where a search or an insertion starts
    /// its wide search.
    fn descend(&self, query: &[f32], entry: u32, down_to: u8) -> Vec<Near> {
        let mut ep = vec![Near(
            self.distance.between(query, self.vector(entry)),
            entry,
        )];
        for l in (down_to..=self.max_level).rev() {
            ep = self.search_layer(query, &ep, 1, l, None);
        }
        ep
    }

    /// Layer 0's search: on the int8 codes when the graph is quantized, with what
    /// the walk found rescored by the exact distance (so callers always get exact
    /// distances, nearest first), else exact throughout. The flag is true when a
    /// filtered walk stopped at its visit budget ([`filter_budget`]).
    fn search_layer0(
        &self,
        query: &[f32],
        entry: &[Near],
        ef: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> (Vec<Near>, bool) {
        let Some(q) = &self.quantized else {
            let exact = |n: u32| self.distance.between(query, self.vector(n));
            return self.walk(exact, false, entry, ef, 0, keep);
        };
        let encoded = q.encode(query);
        let approx = |n: u32| q.distance(&encoded, n);
        let (mut found, cut) = self.walk(approx, true, entry, ef, 0, keep);
        // The found vectors are scattered: ask for them a few rescores ahead.
        const AHEAD: usize = 8;
        for &Near(_, n) in found.iter().take(AHEAD) {
            self.prefetch(n, false);
        }
        for i in 0..found.len() {
            if let Some(&Near(_, n)) = found.get(i + AHEAD) {
                self.prefetch(n, false);
            }
            let n = &mut found[i];
            n.0 = self.distance.between(query, self.vector(n.1));
        }
        found.sort();
        (found, cut)
    }

    /// Best-first search of one layer by `distance` (to the query); returns up to
    /// `ef` nearest nodes the predicate accepts, nearest first. Rejected nodes are
    /// still walked through, up to [`filter_budget`] visited nodes: the flag says the
    /// walk stopped there, with fewer than `ef` accepted nodes it could still find.
    fn walk(
        &self,
        distance: impl Fn(u32) -> f32,
        codes: bool,
        entry: &[Near],
        ef: usize,
        level: u8,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> (Vec<Near>, bool) {
        let budget = keep.map_or(usize::MAX, |_| filter_budget(ef));
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            visited.reset(self.len());
            let mut candidates: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
            let accepts = |n: u32| keep.is_none_or(|k| k(n));
            let mut fresh: Vec<u32> = Vec::with_capacity(self.m0);
            let (mut seen, mut cut) = (entry.len(), false);
            for e in entry {
                visited.insert(e.1);
                candidates.push(Reverse(*e));
                if accepts(e.1) {
                    results.push(*e);
                }
            }
            while let Some(Reverse(c)) = candidates.pop() {
                if results.len() >= ef && c.0 > results.peek().expect("non-empty").0 {
                    break;
                }
                if seen >= budget {
                    cut = true;
                    break;
                }
                // Mark the unvisited neighbours first, then ask for all their vectors
                // (and the next candidate's links) before the first distance, so the
                // memory loads overlap instead of stalling one after another.
                fresh.clear();
                fresh.extend(
                    self.links(c.1, level)
                        .iter()
                        .copied()
                        .filter(|&nb| visited.insert(nb)),
                );
                seen += fresh.len();
                for &nb in &fresh {
                    self.prefetch(nb, codes);
                }
                if let Some(Reverse(next)) = candidates.peek() {
                    self.prefetch_links(next.1, level);
                }
                for &nb in &fresh {
                    let d = distance(nb);
                    let worst = results.peek().map_or(f32::INFINITY, |w| w.0);
                    if results.len() < ef || d < worst {
                        // A node good enough to queue is usually expanded a few
                        // steps later: ask for its links now, while there is time.
                        self.prefetch_links(nb, level);
                        candidates.push(Reverse(Near(d, nb)));
                        if accepts(nb) {
                            results.push(Near(d, nb));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            (results.into_sorted_vec(), cut)
        })
    }

    /// The HNSW neighbour heuristic: keep a candidate only if it is nearer to the
    /// base than to every neighbour already kept, which spreads links out.
    fn select(&self, sorted: &[Near], limit: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(limit);
        for c in sorted {
            if kept.len() == limit {
                break;
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
            let chosen: Vec<(u32, Vec<Vec<u32>>)> = (start..start + together as u32)
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

    /// Renumbers the nodes in breadth-first order of layer 0 from the entry point,
    /// so a node's neighbours mostly sit a few rows away from it in every array:
    /// the walk then touches fewer pages and cache lines (nodes never reached come
    /// last, in their old order). Returns the old number of each new node, for the
    /// caller's own per-node data. Search results do not change, only their speed.
    pub fn reorder(&mut self) -> Vec<u32> {
        let n = self.len();
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let mut new_of_old = vec![u32::MAX; n];
        let mut old_of_new: Vec<u32> = Vec::with_capacity(n);
        let mut visit = |old: u32, order: &mut Vec<u32>| {
            if new_of_old[old as usize] == u32::MAX {
                new_of_old[old as usize] = order.len() as u32;
                order.push(old);
            }
        };
        visit(entry, &mut old_of_new);
        let mut next = 0;
        for start in 0..n as u32 {
            visit(start, &mut old_of_new);
            while next < old_of_new.len() {
                let node = old_of_new[next];
                next += 1;
                for &nb in self.links(node, 0) {
                    visit(nb, &mut old_of_new);
                }
            }
        }
        let renumber = |links: &mut [u32], count: usize| {
            for l in &mut links[1..1 + count] {
                *l = new_of_old[*l as usize];
            }
        };
        let row = self.m0 + 1;
        let mut vectors = Vec::with_capacity(self.vectors.capacity());
        let mut links0 = Vec::with_capacity(self.links0.capacity());
        let mut levels = Vec::with_capacity(self.levels.capacity());
        let mut upper = Vec::with_capacity(self.upper.capacity());
        for &old in &old_of_new {
            let old = old as usize;
            vectors.extend_from_slice(&self.vectors[old * self.dim..(old + 1) * self.dim]);
            let at = links0.len();
            links0.extend_from_slice(&self.links0[old * row..(old + 1) * row]);
            let count = links0[at] as usize;
            renumber(&mut links0[at..at + row], count);
            levels.push(self.levels[old]);
            let mut up = std::mem::take(&mut self.upper[old]);
            for slots in up.chunks_mut(self.m + 1) {
                let count = slots[0] as usize;
                renumber(slots, count);
            }
            upper.push(up);
        }
        if let Some(q) = &mut self.quantized {
            q.codes = q.codes.permuted(&old_of_new);
        }
        (self.vectors, self.links0, self.levels, self.upper) = (vectors, links0, levels, upper);
        self.entry = Some(new_of_old[entry as usize]);
        self.advise_huge_pages();
        old_of_new
    }

    /// Stores a new node's vector (and codes) with empty links.
    fn append(&mut self, vector: &[f32], level: u8) -> u32 {
        assert_eq!(vector.len(), self.dim, "callers validate dimensions");
        let node = self.len() as u32;
        let before = self.capacities();
        self.vectors.extend_from_slice(vector);
        self.levels.push(level);
        if let Some(q) = &mut self.quantized {
            q.push(vector);
        }
        self.links0.resize(self.links0.len() + self.m0 + 1, 0);
        self.upper.push(vec![0; level as usize * (self.m + 1)]);
        if self.capacities() != before {
            self.advise_huge_pages();
        }
        node
    }

    fn capacities(&self) -> (usize, usize, usize) {
        let codes = self.quantized.as_ref().map_or(0, |q| q.codes.capacity());
        (self.vectors.capacity(), self.links0.capacity(), codes)
    }

    /// The neighbours `node` should link to on each of its levels (index = level),
    /// found by searching the graph from `entry`; reads only.
    fn neighbours_of(&self, node: u32, entry: u32) -> Vec<Vec<u32>> {
        let query = self.vector(node);
        let level = self.levels[node as usize];
        let mut ep = self.descend(query, entry, level + 1);
        let top = level.min(self.max_level);
        let mut chosen = vec![Vec::new(); top as usize + 1];
        for l in (0..=top).rev() {
            let found = if l == 0 {
                self.search_layer0(query, &ep, self.ef_construction, None).0
            } else {
                self.search_layer(query, &ep, self.ef_construction, l, None)
            };
            chosen[l as usize] = self.select(&found, self.m);
            ep = found;
        }
        chosen
    }

    /// Writes new nodes' links and the links back to them, each target's list
    /// merged and, when over capacity, pruned by the heuristic (in parallel).
    fn link(&mut self, chosen: &[(u32, Vec<Vec<u32>>)]) {
        let mut back: Vec<(u8, u32, u32)> = Vec::new();
        for (node, levels) in chosen {
            for (l, neighbours) in levels.iter().enumerate() {
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
    }

    /// `target`'s links on `level` with `new` added, pruned to capacity.
    fn merged_links(&self, target: u32, level: u8, new: impl Iterator<Item = u32>) -> Vec<u32> {
        let cap = if level == 0 { self.m0 } else { self.m };
        let mut links = self.links(target, level).to_vec();
        links.extend(new);
        if links.len() <= cap {
            return links;
        }
        let base = self.vector(target);
        let mut cands: Vec<Near> = links
            .iter()
            .map(|&x| Near(self.distance.between(base, self.vector(x)), x))
            .collect();
        cands.sort();
        self.select(&cands, cap)
    }

    /// Makes `node` the entry point when it is above the current top level.
    fn raise_entry(&mut self, node: u32) {
        let level = self.levels[node as usize];
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(node);
        }
    }

    /// The `k` nearest accepted nodes with their distances, nearest first (the
    /// graph's tests call it; the index calls [`Graph::search_bounded`]).
    #[cfg(test)]
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32)> {
        self.search_bounded(query, k, ef, keep).0
    }

    /// Like [`Graph::search`]; the flag is true when a filtered walk stopped at its
    /// visit budget ([`filter_budget`]), so accepted nodes may have been missed.
    pub fn search_bounded(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> (Vec<(u32, f32)>, bool) {
        let Some(entry) = self.entry else {
            return (Vec::new(), false);
        };
        let ep = self.descend(query, entry, 1);
        let (mut found, cut) = self.search_layer0(query, &ep, ef.max(k), keep);
        found.truncate(k);
        (found.into_iter().map(|n| (n.1, n.0)).collect(), cut)
    }
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
