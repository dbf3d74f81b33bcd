//! Exact copies of one vector ("twins") and the ring that keeps them reachable.
//!
//! Twins are all at one distance from anything, so HNSW's neighbour heuristic cannot
//! tell them apart: with its "nearer to a kept neighbour than to the base" test a
//! twin kept as a neighbour covers every other candidate, and a node with a twin
//! kept that one link only. Groups of twins then closed into islands of a node or
//! two that walks could not leave or enter, and a k = 10 query got fewer than 10
//! hits. So the heuristic skips twins (they add nothing to routing), and each set
//! of twins is linked on a ring of its own instead: a node's first layer-0 link is
//! the next twin on its ring, kept there through every pruning, so reaching one
//! copy reaches them all, and a node's other links go to distinct vectors.

use super::{Distance, Graph, Near};

impl<D: Distance> Graph<D> {
    /// Whether `c`, found at distance `c.0` from the vector `base` (whose distance
    /// to itself is `own`), is an exact copy of it. The distance test rules out
    /// almost every candidate before the vectors are compared.
    pub(super) fn is_twin(&self, base: &[f32], own: f32, c: &Near) -> bool {
        c.0 == own && self.vector(c.1) == base
    }

    /// The node after `node` on its ring of twins: its first layer-0 link, when
    /// that link is a copy of it.
    pub(super) fn ring_next(&self, node: u32) -> Option<u32> {
        let first = *self.links(node, 0).first()?;
        (self.vector(first) == self.vector(node)).then_some(first)
    }

    /// Puts the new `node` on the ring of its twin `twin`, right after it (a ring of
    /// two when `twin` had none): the ring link goes first in both lists, the other
    /// links follow, pruned when the list is over capacity.
    pub(super) fn join_ring(&mut self, node: u32, twin: u32) {
        let next = self.ring_next(twin).unwrap_or(twin);
        let own: Vec<u32> = self.links(node, 0).to_vec();
        let links = self.with_ring(node, next, own);
        self.set_links(node, 0, &links);
        let skip = usize::from(self.ring_next(twin).is_some());
        let theirs: Vec<u32> = self.links(twin, 0)[skip..].to_vec();
        let links = self.with_ring(twin, node, theirs);
        self.set_links(twin, 0, &links);
    }

    /// `ring` followed by `others` (less any twin of `node`), pruned by the
    /// heuristic to the layer-0 capacity.
    fn with_ring(&self, node: u32, ring: u32, others: Vec<u32>) -> Vec<u32> {
        let mut links = vec![ring];
        if others.len() < self.m0 {
            let base = self.vector(node);
            links.extend(others.into_iter().filter(|&x| self.vector(x) != base));
        } else {
            links.extend(self.pruned(node, others, self.m0 - 1));
        }
        links
    }

    /// `links` of `node` cut to `cap` by the heuristic, nearest first.
    pub(super) fn pruned(&self, node: u32, links: Vec<u32>, cap: usize) -> Vec<u32> {
        let base = self.vector(node);
        let mut cands: Vec<Near> = links
            .iter()
            .map(|&x| Near(self.distance.between(base, self.vector(x)), x))
            .collect();
        cands.sort();
        self.select(node, &cands, cap)
    }
}
