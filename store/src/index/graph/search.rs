//! Searching the graph: best-first walks of one layer (exact, or on the int8 codes
//! with exact rescoring), the descent through the upper layers, and the bounded
//! filtered walk.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Distance, Graph, Near};
use crate::index::memory::VISITED;

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

impl<D: Distance> Graph<D> {
    /// Best-first search of one layer with the exact distance to `query`.
    pub(super) fn search_layer(
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
    pub(super) fn descend(&self, query: &[f32], entry: u32, down_to: u8) -> Vec<Near> {
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
    /// distances, nearest first), else exact throughout. The flag as in [`Graph::walk`].
    pub(super) fn search_layer0(
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
    /// still walked through, up to [`filter_budget`] visited nodes. The flag says the
    /// walk ended with fewer than `ef` accepted nodes while some it did not visit
    /// might be accepted: it stopped at that budget, or (layer 0) it ran out of links
    /// to follow before it visited every node. Callers then scan, or say so.
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
            // Out of candidates short of `ef` accepted nodes, with nodes never
            // visited: those cannot be reached from here, and may be accepted ones.
            let stranded = level == 0 && results.len() < ef && seen < self.len();
            (results.into_sorted_vec(), cut || stranded)
        })
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

    /// Like [`Graph::search`]; the flag is true when the walk found fewer than `ef`
    /// accepted nodes and stopped at its visit budget ([`filter_budget`]) or ran out
    /// of reachable nodes before it visited all: accepted nodes may have been missed.
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

    /// Every node `keep` accepts, scored with the exact distance: the `k` nearest,
    /// nearest first, or `None` as soon as more than `most` are accepted. Why: a filter
    /// selective enough to stop the walk at its budget matches few nodes, and one pass
    /// of the predicate (no vector read for a rejected node) plus at most `most`
    /// distances finds every one of them, where the walk can only reach some.
    pub fn scan(
        &self,
        query: &[f32],
        k: usize,
        most: usize,
        keep: &dyn Fn(u32) -> bool,
    ) -> Option<Vec<(u32, f32)>> {
        let mut found = Vec::new();
        for n in 0..self.len() as u32 {
            if keep(n) {
                if found.len() == most {
                    return None;
                }
                found.push(Near(self.distance.between(query, self.vector(n)), n));
            }
        }
        found.sort_unstable();
        found.truncate(k);
        Some(found.into_iter().map(|n| (n.1, n.0)).collect())
    }
}
