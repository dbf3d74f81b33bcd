//! The in-memory approximate nearest-neighbour index of one collection:
//! Engram's HNSW graph (`graph/`) on Engram's SIMD distance kernels.
//!
//! HNSW has no cheap delete, so removals are tombstones filtered out during the
//! search; the owner rebuilds the index when tombstones pile up. The graph is
//! derived data: RocksDB is the source of truth. At start-up the index is read
//! from its dump (`dump.rs`) and brought up to date from the write log, or rebuilt
//! from RocksDB when there is no sound dump (`crate::graph_dump` decides which).

use std::collections::HashSet;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use engram_kernels::PairKernel;

mod bytes;
mod codes;
pub mod dump;
mod graph;
mod memory;

pub use dump::{DumpHeader, Rejected};
pub use graph::filter_budget;
use graph::{Distance, Graph, QuantizedDistance};

/// How two vectors are compared. Scores returned by searches follow the metric:
/// cosine similarity and dot product (higher is nearer), euclidean distance
/// (lower is nearer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    #[default]
    Cosine,
    Dot,
    Euclidean,
}

impl Metric {
    /// Turns the graph's internal distance back into the score users see.
    fn score(self, distance: f32) -> f32 {
        match self {
            Metric::Cosine => 1.0 - distance,
            Metric::Dot => {
                if distance >= 1.0 {
                    1.0 - distance
                } else {
                    1.0 / distance - 1.0
                }
            }
            Metric::Euclidean => distance.sqrt(),
        }
    }
}

/// The graph's distance: monotone in the metric, lower is nearer. Cosine runs
/// on normalised vectors as 1 - dot; dot product is mapped through a positive
/// decreasing function of the dot; euclidean skips the square root, which does
/// not change the order. Holds the SIMD kernel resolved for this CPU, so the walk
/// calls it directly.
#[derive(Clone, Copy)]
struct GraphDistance {
    metric: Metric,
    kernel: PairKernel,
}

impl Distance for GraphDistance {
    #[inline(always)]
    fn between(&self, a: &[f32], b: &[f32]) -> f32 {
        let k = self.kernel.call(a, b);
        match self.metric {
            // The l2 kernel is the distance already.
            Metric::Euclidean => k,
            Metric::Cosine | Metric::Dot => self.metric.quantized_distance().of_dot(k, 0.0),
        }
    }
}

impl Metric {
    /// How the graph turns a dot product into this metric's distance (shared by the
    /// f32 and the int8 walk, so both order nodes alike).
    fn quantized_distance(self) -> QuantizedDistance {
        match self {
            Metric::Cosine => QuantizedDistance::OneMinusDot,
            Metric::Dot => QuantizedDistance::Dot,
            Metric::Euclidean => QuantizedDistance::L2Squared,
        }
    }

    fn graph_distance(self) -> GraphDistance {
        let kernel = match self {
            Metric::Cosine | Metric::Dot => PairKernel::dot(),
            Metric::Euclidean => PairKernel::l2_squared(),
        };
        GraphDistance {
            metric: self,
            kernel,
        }
    }
}

/// How the graph walk reads vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// f32 vectors only: the least memory (int8 adds a fifth to a quarter).
    None,
    /// int8 codes for the layer-0 walk (a quarter of the bytes, integer SIMD), exact
    /// f32 rescoring of the `ef` candidates it finds. Starts once the collection holds
    /// 1,000 vectors (the codes' range is learned from them). The default: the same
    /// recall as f32 at the same `ef` on both ANN benchmarks, 1.5-2x the queries
    /// per second (README, ANN benchmark).
    #[default]
    Int8,
}

/// Graph construction parameters (HNSW's M and ef_construction) and quantization;
/// fields left out take their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct IndexParams {
    /// Links per node; more links give higher recall for more memory and build time.
    #[schema(minimum = 2, maximum = 128)]
    pub m: usize,
    /// Search breadth while building; higher gives a better graph, built slower.
    #[schema(minimum = 1, maximum = 4096)]
    pub ef_construction: usize,
    pub quantization: Quantization,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            m: 16,
            ef_construction: 200,
            quantization: Quantization::Int8,
        }
    }
}

/// Vectors needed before int8 codes start: enough to learn their range.
const QUANTIZE_AFTER: usize = 1000;
/// A batch at least this large, and at least half the index, is followed by a
/// renumbering of the graph for memory locality ([`Graph::reorder`]): a bulk
/// load or the rebuild when a collection opens.
const REORDER_FROM: usize = 10_000;
/// Vectors inserted under one hold of the write lock: large enough for the
/// parallel build to keep every core busy, small enough that a search waits
/// well under a second behind a bulk insert.
const LOCK_CHUNK: usize = 1024;

/// The most vectors a filtered search passes over with its predicate when the walk
/// stopped at its budget (the exact scan then scores at most [`filter_budget`] of
/// them): past this size, a selective filter's answer stays flagged incomplete.
/// About 100-200 ms of predicate calls at the limit, no vector read for a rejected one.
pub const SCAN_MAX_NODES: usize = 1 << 20;

/// The graph and the collection ids of its nodes (node n holds `ids[n]`).
struct Nodes {
    graph: Graph<GraphDistance>,
    ids: Vec<u64>,
}

/// One collection's HNSW graph plus its tombstones.
pub struct VectorIndex {
    metric: Metric,
    quantization: Quantization,
    nodes: RwLock<Nodes>,
    tombstones: RwLock<HashSet<u64>>,
}

impl VectorIndex {
    /// `capacity` is the expected number of vectors, reserved up front so a
    /// rebuild does not reallocate the flat arrays as it grows.
    pub fn new(dim: usize, metric: Metric, params: IndexParams, capacity: usize) -> Self {
        let m = params.m.clamp(2, 128);
        let mut graph = Graph::new(
            dim,
            m,
            params.ef_construction.max(m),
            metric.graph_distance(),
        );
        graph.reserve(capacity);
        VectorIndex {
            metric,
            quantization: params.quantization,
            nodes: RwLock::new(Nodes {
                graph,
                ids: Vec::with_capacity(capacity),
            }),
            tombstones: RwLock::new(HashSet::new()),
        }
    }

    /// Vectors as the graph stores them: cosine vectors normalised so the kernel
    /// is a plain dot product.
    fn prepare(&self, v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        if self.metric == Metric::Cosine {
            engram_kernels::normalize(&mut v);
        }
        v
    }

    /// Inserts vectors in chunks of [`LOCK_CHUNK`], taking the write lock per chunk
    /// so searches interleave with a long batch instead of waiting for all of it;
    /// within a chunk the graph searches for neighbours on every core.
    /// Callers validate that vectors are finite and of the right dimension.
    pub fn insert_batch(&self, items: &[(u64, &[f32])]) {
        for chunk in items.chunks(LOCK_CHUNK) {
            let prepared: Vec<Vec<f32>> = chunk.iter().map(|(_, v)| self.prepare(v)).collect();
            let vectors: Vec<&[f32]> = prepared.iter().map(Vec::as_slice).collect();
            let mut nodes = self.nodes.write().expect("index lock poisoned");
            nodes.graph.insert_many(&vectors);
            nodes.ids.extend(chunk.iter().map(|(id, _)| *id));
            if self.quantization == Quantization::Int8
                && nodes.ids.len() >= QUANTIZE_AFTER
                && !nodes.graph.is_quantized()
            {
                nodes.graph.quantize(self.metric.quantized_distance());
            }
        }
        let total = self.nodes.read().expect("index lock poisoned").ids.len();
        if items.len() >= REORDER_FROM && items.len() * 2 >= total {
            self.optimize();
        }
    }

    /// Renumbers the graph for memory locality ([`Graph::reorder`]); done after a
    /// bulk load on its own, results unchanged.
    pub fn optimize(&self) {
        let mut nodes = self.nodes.write().expect("index lock poisoned");
        let order = nodes.graph.reorder();
        nodes.ids = order.iter().map(|&old| nodes.ids[old as usize]).collect();
    }

    /// Bytes the index holds per vector (f32 vector, int8 codes when quantized,
    /// graph links), for the collection's info.
    pub fn bytes_per_vector(&self) -> f64 {
        self.nodes
            .read()
            .expect("index lock poisoned")
            .graph
            .bytes_per_node()
    }

    /// Whether searches walk int8 codes now.
    pub fn is_quantized(&self) -> bool {
        self.nodes
            .read()
            .expect("index lock poisoned")
            .graph
            .is_quantized()
    }

    /// Marks ids as deleted; they stay in the graph (as routing nodes) until the
    /// next rebuild but are never returned.
    pub fn remove(&self, ids: &[u64]) {
        let mut t = self.tombstones.write().expect("tombstone lock poisoned");
        for id in ids {
            t.insert(*id);
        }
    }

    /// Live (not deleted) vectors.
    pub fn len(&self) -> usize {
        let dead = self
            .tombstones
            .read()
            .expect("tombstone lock poisoned")
            .len();
        let all = self.nodes.read().expect("index lock poisoned").ids.len();
        all.saturating_sub(dead)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deleted vectors still in the graph: the owner rebuilds when this grows.
    pub fn tombstone_count(&self) -> usize {
        self.tombstones
            .read()
            .expect("tombstone lock poisoned")
            .len()
    }

    /// The k nearest live vectors as (id, score), best first.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        self.search_inner(query, k, ef, None).0
    }

    /// Like `search`, keeping only ids the predicate accepts. The predicate runs
    /// inside the graph walk, so a selective filter still yields k results when
    /// enough matching vectors are reachable within [`filter_budget`] visited nodes.
    /// When the walk stops at that budget the filter is selective, so every accepted
    /// vector is scored instead (see [`SCAN_MAX_NODES`]); so too when the walk ran out
    /// of nodes it could reach, short of `ef`, before it had visited all. The flag is
    /// true only when that was not possible either: matches may be missing.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> (Vec<(u64, f32)>, bool) {
        self.search_inner(query, k, ef, Some(keep))
    }

    fn search_inner(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(u64) -> bool>,
    ) -> (Vec<(u64, f32)>, bool) {
        if k == 0 {
            return (Vec::new(), false);
        }
        let q = self.prepare(query);
        let tombstones = self.tombstones.read().expect("tombstone lock poisoned");
        let nodes = self.nodes.read().expect("index lock poisoned");
        let ids = &nodes.ids;
        let accept = |n: u32| {
            let id = ids[n as usize];
            !tombstones.contains(&id) && keep.is_none_or(|f| f(id))
        };
        let filtered = !tombstones.is_empty() || keep.is_some();
        let (mut found, mut cut) =
            nodes
                .graph
                .search_bounded(&q, k, ef, if filtered { Some(&accept) } else { None });
        if cut && ids.len() <= SCAN_MAX_NODES {
            if let Some(all) = nodes.graph.scan(&q, k, filter_budget(ef), &accept) {
                (found, cut) = (all, false);
            }
        }
        let found = found
            .into_iter()
            .map(|(n, d)| (ids[n as usize], self.metric.score(d)))
            .collect();
        (found, cut)
    }
}

/// Reproducible points in [0, 1)^dim for the index's tests (xorshift, no crate).
#[cfg(test)]
pub(crate) fn test_points(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect())
            .collect()
    }

    fn brute_force(data: &[Vec<f32>], q: &[f32], k: usize, metric: Metric) -> Vec<u64> {
        let mut scored: Vec<(u64, f32)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let d = metric
                    .graph_distance()
                    .between(&normalized(v, metric), &normalized(q, metric));
                (i as u64, d)
            })
            .collect();
        scored.sort_by(|a, b| a.1.total_cmp(&b.1));
        scored.into_iter().take(k).map(|(i, _)| i).collect()
    }

    fn indexed(data: &[Vec<f32>], metric: Metric) -> VectorIndex {
        indexed_with(data, metric, IndexParams::default())
    }

    fn indexed_with(data: &[Vec<f32>], metric: Metric, params: IndexParams) -> VectorIndex {
        let index = VectorIndex::new(data[0].len(), metric, params, data.len());
        let items: Vec<(u64, &[f32])> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64, v.as_slice()))
            .collect();
        index.insert_batch(&items);
        index
    }

    fn normalized(v: &[f32], metric: Metric) -> Vec<f32> {
        let mut v = v.to_vec();
        if metric == Metric::Cosine {
            engram_kernels::normalize(&mut v);
        }
        v
    }

    #[test]
    fn recall_is_high_for_every_metric() {
        for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
            let data = random_vectors(2000, 24, 7);
            let index = indexed(&data, metric);
            let queries = random_vectors(50, 24, 8);
            let mut hits = 0;
            for q in &queries {
                let truth = brute_force(&data, q, 10, metric);
                let got: Vec<u64> = index.search(q, 10, 100).into_iter().map(|h| h.0).collect();
                hits += truth.iter().filter(|t| got.contains(t)).count();
            }
            let recall = hits as f64 / (queries.len() * 10) as f64;
            assert!(recall > 0.9, "{metric:?} recall {recall}");
        }
    }

    #[test]
    fn scores_follow_the_metric() {
        let index = VectorIndex::new(2, Metric::Dot, IndexParams::default(), 4);
        index.insert_batch(&[(1, &[2.0, 0.0]), (2, &[-1.0, 0.0]), (3, &[0.5, 0.0])]);
        let hits = index.search(&[1.0, 0.0], 3, 10);
        let ids: Vec<u64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert!((hits[0].1 - 2.0).abs() < 1e-5, "{hits:?}");
        assert!((hits[2].1 + 1.0).abs() < 1e-5, "{hits:?}");

        let index = VectorIndex::new(2, Metric::Euclidean, IndexParams::default(), 4);
        index.insert_batch(&[(1, &[3.0, 4.0])]);
        let hits = index.search(&[0.0, 0.0], 1, 10);
        assert!((hits[0].1 - 5.0).abs() < 1e-5);
    }

    #[test]
    fn int8_walk_with_rescoring_keeps_recall_and_exact_scores() {
        for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
            let data = random_vectors(3000, 32, 11);
            let params = IndexParams {
                quantization: Quantization::Int8,
                ..IndexParams::default()
            };
            let index = indexed_with(&data, metric, params);
            assert!(index.is_quantized());
            let f32_only = IndexParams {
                quantization: Quantization::None,
                ..IndexParams::default()
            };
            let plain = indexed_with(&data, metric, f32_only);
            assert!(!plain.is_quantized());
            assert!(index.bytes_per_vector() > plain.bytes_per_vector() + 32.0);
            let queries = random_vectors(50, 32, 12);
            let mut hits = 0;
            for q in &queries {
                let truth = brute_force(&data, q, 10, metric);
                let got = index.search(q, 10, 100);
                // Rescored: the scores are the exact ones, best first.
                let exact = plain.search(q, 1, 400);
                if got[0].0 == exact[0].0 {
                    assert!((got[0].1 - exact[0].1).abs() < 1e-4, "{metric:?}");
                }
                hits += truth
                    .iter()
                    .filter(|t| got.iter().any(|h| h.0 == **t))
                    .count();
            }
            let recall = hits as f64 / (queries.len() * 10) as f64;
            assert!(recall > 0.9, "{metric:?} int8 recall {recall}");
        }
        // Below 1,000 vectors there is no range to learn yet.
        let small = VectorIndex::new(
            4,
            Metric::Cosine,
            IndexParams {
                quantization: Quantization::Int8,
                ..IndexParams::default()
            },
            10,
        );
        small.insert_batch(&[(1, &[1.0, 0.0, 0.0, 0.0])]);
        assert!(!small.is_quantized());
    }

    #[test]
    fn a_bulk_load_is_reordered_and_still_maps_nodes_to_their_ids() {
        let data = random_vectors(REORDER_FROM + 500, 8, 21);
        let index = indexed(&data, Metric::Euclidean);
        for (i, v) in data.iter().enumerate().step_by(101) {
            assert_eq!(index.search(v, 1, 40)[0].0, i as u64);
        }
    }

    #[test]
    fn tombstones_and_filters_hide_vectors() {
        let data = random_vectors(300, 8, 1);
        let index = indexed(&data, Metric::Cosine);
        let top = index.search(&data[5], 1, 50);
        assert_eq!(top[0].0, 5);
        index.remove(&[5]);
        assert_eq!(index.len(), 299);
        assert!(index.search(&data[5], 10, 50).iter().all(|h| h.0 != 5));
        let (even, cut) = index.search_filtered(&data[5], 10, 100, &|id| id % 2 == 0);
        assert!(!cut, "half the vectors match: no need for the budget");
        assert_eq!(even.len(), 10);
        assert!(even.iter().all(|h| h.0 % 2 == 0));
    }

    #[test]
    fn a_filter_that_matches_nothing_stops_at_its_visit_budget() {
        let n = filter_budget(16) * 2;
        let data = random_vectors(n, 4, 3);
        let index = indexed(&data, Metric::Cosine);
        let checked = std::cell::Cell::new(0usize);
        let nothing = |_: u64| {
            checked.set(checked.get() + 1);
            false
        };
        let (found, cut) = index.search_filtered(&data[0], 10, 16, &nothing);
        assert!(
            found.is_empty() && !cut,
            "no match, and the scan after the walk proved it"
        );
        // The walk stops at its budget (the last expansion may add one node's links,
        // 2 * m at layer 0, past it), then the scan asks each node once.
        let most = filter_budget(16) + 2 * IndexParams::default().m + 1 + n;
        assert!(
            checked.get() <= most && checked.get() < n / 2 + 100 + n,
            "asked about {} nodes for {n}, bound {most}",
            checked.get()
        );
    }

    #[test]
    fn a_selective_filter_finds_every_match_the_walk_cannot_reach() {
        let n = filter_budget(16) * 2;
        let data = random_vectors(n, 4, 5);
        let index = indexed(&data, Metric::Euclidean);
        // The three vectors farthest from the query: the walk starts near it.
        let q = &data[0];
        let dist = |v: &[f32]| v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
        let mut by_distance: Vec<u64> = (0..n as u64).collect();
        by_distance.sort_by(|a, b| dist(&data[*a as usize]).total_cmp(&dist(&data[*b as usize])));
        let far: Vec<u64> = by_distance[n - 3..].to_vec();
        let (found, cut) = index.search_filtered(q, 10, 16, &|id| far.contains(&id));
        assert!(!cut, "complete");
        let got: Vec<u64> = found.iter().map(|h| h.0).collect();
        assert_eq!(
            got,
            vec![far[0], far[1], far[2]],
            "all three, nearest first"
        );
        // More matches than the scan may score: the walk's answer stands, flagged.
        let graph_nodes = index.nodes.read().unwrap();
        let all = |_: u32| true;
        assert!(graph_nodes.graph.scan(q, 10, n - 1, &all).is_none());
        assert_eq!(graph_nodes.graph.scan(q, 10, n, &all).unwrap().len(), 10);
    }
}
