//! Engram's own HNSW graph (Malkov & Yashunin): flat storage so the search hot
//! loop touches contiguous memory only: vectors in one `Vec<f32>`, layer-0 links
//! in fixed-size `u32` slots, a generation-stamped visited array reused across
//! queries. Distances come from the caller (Engram's SIMD kernels).
//!
//! Optionally ([`Graph::quantize`]) every vector also gets int8 codes (Qdrant's
//! scalar quantization, `engram_kernels::quant`): the layer-0 walk of a search then
//! reads a quarter of the bytes and scores with integer SIMD, and the `ef` nodes it
//! finds are rescored with the exact f32 distance before the top k are returned.
//!
//! The graph's code is split by concern: this file holds the storage and its
//! accessors, `search.rs` the walks, `build.rs` insertion, `twins.rs` the ring that
//! links exact copies of a vector, `reorder.rs` the renumbering for locality,
//! `persist.rs` the graph as bytes.

use std::cmp::Ordering;

use engram_kernels::ScalarQuantizer;

pub use super::codes::QuantizedDistance;
use super::codes::{CodeRows, Quantized};
use super::memory::{advise_huge_pages, prefetch};

mod build;
mod persist;
mod reorder;
mod search;
mod twins;

pub use search::filter_budget;

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

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The vector stored for `node` (panics past [`Graph::len`]).
    pub fn vector_of(&self, node: u32) -> &[f32] {
        self.vector(node)
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
}

#[cfg(test)]
mod tests;
