//! Engram's own HNSW graph (Malkov & Yashunin): flat storage so the search hot
//! loop touches contiguous memory only: vectors in one `Vec<f32>`, layer-0 links
//! in fixed-size `u32` slots, a generation-stamped visited array reused across
//! queries. Distances come from the caller (Engram's SIMD kernels).
//!
//! Optionally ([`Graph::quantize`]) every vector also gets int8 codes (Qdrant's
//! scalar quantization, `engram_kernels::quant`): the layer-0 walk of a search then
//! reads a quarter of the bytes and scores with integer SIMD, and the `ef` nodes it
//! finds are rescored with the exact f32 distance before the top k are returned.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use engram_kernels::ScalarQuantizer;
use rayon::prelude::*;

/// Below this many nodes, [`Graph::insert_many`] inserts one at a time: batches
/// would be too small to be worth the threads, and too large a share of the graph.
const PARALLEL_FROM: usize = 2_000;
/// A parallel batch is at most `1 / BATCH_SHARE` of the graph it joins (2%).
const BATCH_SHARE: usize = 50;

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

/// Cache lines asked for per prefetch: small vectors whole, large ones their
/// start (the hardware prefetcher follows a sequential run).
const PREFETCH_LINES: usize = 4;

/// Hints the CPU to load the cache lines `data` spans, at most [`PREFETCH_LINES`]
/// of them (a no-op for `None` or where there is no prefetch instruction). Counted
/// from the line the data starts in, so an unaligned row's last line is not missed.
#[inline(always)]
fn prefetch<T>(data: Option<&[T]>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(data) = data {
        let start = data.as_ptr() as usize;
        let first_line = start & !63;
        let end = (start + std::mem::size_of_val(data)).min(first_line + PREFETCH_LINES * 64);
        for line in (first_line..end).step_by(64) {
            // SAFETY: prefetching is a hint and never faults, whatever the address.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Buffers smaller than this keep ordinary pages.
const HUGE_PAGES_FROM: usize = 4 << 20;

/// Asks Linux to back a large buffer with transparent huge pages (where they are
/// enabled in `madvise` mode, the default of many distributions). A search touches
/// a few hundred vectors spread over the whole graph; with 4 KiB pages nearly every
/// one of them also misses the TLB, with 2 MiB pages few do. Advice only: failure
/// changes nothing, and memory already touched is collapsed later by the kernel.
fn advise_huge_pages<T>(buffer: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let bytes = buffer.capacity() * std::mem::size_of::<T>();
        if bytes < HUGE_PAGES_FROM {
            return;
        }
        let start = buffer.as_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let len = (start + bytes).saturating_sub(aligned) / PAGE * PAGE;
        // SAFETY: the range lies inside the buffer's allocation (rounded inwards to
        // whole pages); MADV_HUGEPAGE changes how pages are backed, never contents.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

/// Marks visited nodes with a per-query generation, so clearing is free. Marks
/// are `u16` so the array of a large graph stays in the L2 cache (half the bytes
/// of `u32`); the generation wraps every 65,535 searches, when it is cleared.
struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// True the first time a node is seen in this query.
    fn insert(&mut self, node: u32) -> bool {
        let m = &mut self.marks[node as usize];
        if *m == self.generation {
            false
        } else {
            *m = self.generation;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), generation: 0 }) };
}

/// One cache line of int8 codes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CodeLine([i8; 64]);

/// A stored vector as the quantized walk reads it.
struct CodeRow<'a> {
    codes: &'a [i8],
    /// The quantizer's correction term of these codes.
    correction: f32,
    /// The exact squared norm of the vector.
    norm: f32,
}

/// int8 code rows, each starting on its own cache line, with the two per-vector
/// terms of the score after the codes: a row of up to 56 dimensions (GloVe-50) is
/// one memory load in the walk, where packed codes straddle two lines most of the
/// time and terms in arrays of their own cost a miss of their own. (Terms first
/// measured slower at 784 dimensions: every 64-byte load of the codes then
/// straddles two lines.)
struct CodeRows {
    dim: usize,
    /// Cache lines per row.
    stride: usize,
    lines: Vec<CodeLine>,
}

/// Bytes after a row's codes: its correction and its squared norm.
const ROW_TERMS: usize = 8;

impl CodeRows {
    fn new(dim: usize, capacity: usize) -> Self {
        let stride = (dim + ROW_TERMS).div_ceil(64);
        CodeRows {
            dim,
            stride,
            lines: Vec::with_capacity(capacity * stride),
        }
    }

    fn push(&mut self, codes: &[i8], correction: f32, norm: f32) {
        debug_assert_eq!(codes.len(), self.dim);
        let mut row = vec![0i8; self.stride * 64];
        row[..self.dim].copy_from_slice(codes);
        let terms = correction
            .to_le_bytes()
            .into_iter()
            .chain(norm.to_le_bytes());
        for (slot, byte) in row[self.dim..self.dim + ROW_TERMS].iter_mut().zip(terms) {
            *slot = byte as i8;
        }
        for chunk in row.chunks_exact(64) {
            let mut line = CodeLine([0; 64]);
            line.0.copy_from_slice(chunk);
            self.lines.push(line);
        }
    }

    /// The whole row, codes and terms, as bytes.
    #[inline(always)]
    fn bytes(&self, node: u32) -> &[i8] {
        let lines = &self.lines[node as usize * self.stride..][..self.stride];
        // SAFETY: `CodeLine` is `repr(C)` over `[i8; 64]` with no padding (its size
        // is its alignment), so `stride` consecutive lines are `stride * 64`
        // contiguous, initialised `i8`s.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<i8>(), self.stride * 64) }
    }

    #[inline(always)]
    fn row(&self, node: u32) -> CodeRow<'_> {
        let bytes = self.bytes(node);
        let term = |at: usize| f32::from_le_bytes(std::array::from_fn(|k| bytes[at + k] as u8));
        CodeRow {
            codes: &bytes[..self.dim],
            correction: term(self.dim),
            norm: term(self.dim + 4),
        }
    }

    /// The bytes the walk reads of a row (for prefetching).
    #[inline(always)]
    fn used(&self, node: u32) -> &[i8] {
        &self.bytes(node)[..self.dim + ROW_TERMS]
    }

    fn reserve(&mut self, rows: usize) {
        self.lines.reserve(rows * self.stride);
    }

    /// Rows in the order `old_of_new` gives.
    fn permuted(&self, old_of_new: &[u32]) -> Self {
        let mut lines = Vec::with_capacity(self.lines.capacity());
        for &old in old_of_new {
            lines.extend_from_slice(&self.lines[old as usize * self.stride..][..self.stride]);
        }
        CodeRows { lines, ..*self }
    }
}

/// How an approximate dot product becomes the graph's distance in the quantized walk
/// (it must order nodes as the caller's f32 distance does, so that one calls
/// [`QuantizedDistance::of_dot`] too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizedDistance {
    /// `1 - dot` (cosine on unit vectors).
    OneMinusDot,
    /// Decreasing in the dot product (inner-product search).
    Dot,
    /// `|a|² + |b|² - 2 dot` (squared euclidean), with exact norms.
    L2Squared,
}

impl QuantizedDistance {
    /// The distance of two vectors from their dot product; `norms` is `|a|² + |b|²`,
    /// which only `L2Squared` reads.
    #[inline(always)]
    pub fn of_dot(self, dot: f32, norms: f32) -> f32 {
        match self {
            QuantizedDistance::OneMinusDot => (1.0 - dot).max(0.0),
            QuantizedDistance::Dot if dot <= 0.0 => 1.0 - dot,
            QuantizedDistance::Dot => 1.0 / (1.0 + dot),
            QuantizedDistance::L2Squared => (norms - 2.0 * dot).max(0.0),
        }
    }
}

/// A query as the quantized walk scores it.
struct QueryCodes {
    codes: Vec<i8>,
    correction: f32,
    norm: f32,
}

/// int8 codes of every node, with the per-vector terms their scores need.
struct Quantized {
    quantizer: ScalarQuantizer,
    kind: QuantizedDistance,
    codes: CodeRows,
}

impl Quantized {
    fn push(&mut self, v: &[f32]) {
        let codes = self.quantizer.quantize(v);
        let correction = self.quantizer.correction(&codes);
        self.codes
            .push(&codes, correction, engram_kernels::dot(v, v));
    }

    /// What the walk needs of a query: its codes, their correction, its exact norm.
    fn encode(&self, query: &[f32]) -> QueryCodes {
        let codes = self.quantizer.quantize(query);
        QueryCodes {
            correction: self.quantizer.correction(&codes),
            codes,
            norm: engram_kernels::dot(query, query),
        }
    }

    /// The walk's distance from an encoded query to `node`.
    #[inline]
    fn distance(&self, q: &QueryCodes, node: u32) -> f32 {
        let row = self.codes.row(node);
        let dot = self
            .quantizer
            .dot(&q.codes, q.correction, row.codes, row.correction);
        self.kind.of_dot(dot, q.norm + row.norm)
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
        let quant = self.quantized.as_ref().map_or(0, |q| q.codes.stride * 64);
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
            advise_huge_pages(&q.codes.lines);
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
        self.walk(exact, false, entry, ef, level, keep)
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
    /// distances, nearest first), else exact throughout.
    fn search_layer0(
        &self,
        query: &[f32],
        entry: &[Near],
        ef: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Near> {
        let Some(q) = &self.quantized else {
            return self.search_layer(query, entry, ef, 0, keep);
        };
        let encoded = q.encode(query);
        let approx = |n: u32| q.distance(&encoded, n);
        let mut found = self.walk(approx, true, entry, ef, 0, keep);
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
        found
    }

    /// Best-first search of one layer by `distance` (to the query); returns up to
    /// `ef` nearest nodes the predicate accepts, nearest first. Rejected nodes are
    /// still walked through.
    fn walk(
        &self,
        distance: impl Fn(u32) -> f32,
        codes: bool,
        entry: &[Near],
        ef: usize,
        level: u8,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Near> {
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            visited.reset(self.len());
            let mut candidates: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
            let accepts = |n: u32| keep.is_none_or(|k| k(n));
            let mut fresh: Vec<u32> = Vec::with_capacity(self.m0);
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
            results.into_sorted_vec()
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
        let codes = self
            .quantized
            .as_ref()
            .map_or(0, |q| q.codes.lines.capacity());
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
                self.search_layer0(query, &ep, self.ef_construction, None)
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

    /// The `k` nearest accepted nodes with their distances, nearest first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32)> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let ep = self.descend(query, entry, 1);
        let mut found = self.search_layer0(query, &ep, ef.max(k), keep);
        found.truncate(k);
        found.into_iter().map(|n| (n.1, n.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    fn points(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
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

    #[test]
    fn code_rows_keep_codes_and_terms_on_cache_line_boundaries() {
        for dim in [1, 50, 56, 57, 64, 384] {
            let mut rows = CodeRows::new(dim, 3);
            assert_eq!(rows.stride, (dim + ROW_TERMS).div_ceil(64));
            let codes: Vec<Vec<i8>> = (0..3)
                .map(|r| {
                    (0..dim)
                        .map(|i| ((i * 7 + r * 13) % 256) as u8 as i8)
                        .collect()
                })
                .collect();
            for (r, c) in codes.iter().enumerate() {
                rows.push(c, -1.5 * r as f32, 0.25 + r as f32);
            }
            for (r, c) in codes.iter().enumerate() {
                let row = rows.row(r as u32);
                assert_eq!(row.codes, &c[..], "dim {dim} row {r}");
                assert_eq!(row.correction, -1.5 * r as f32);
                assert_eq!(row.norm, 0.25 + r as f32);
                assert_eq!(row.codes.as_ptr() as usize % 64, 0, "row starts a line");
            }
            let back = rows.permuted(&[2, 0, 1]);
            assert_eq!(back.row(0).codes, &codes[2][..]);
            assert_eq!(back.row(1).norm, 0.25);
            assert_eq!(back.row(2).correction, -1.5);
        }
    }

    type L2Graph = Graph<fn(&[f32], &[f32]) -> f32>;

    fn recall(graph: &L2Graph, data: &[Vec<f32>]) -> f64 {
        let queries = points(100, data[0].len(), 99);
        let mut hits = 0;
        for q in &queries {
            let mut exact: Vec<(f32, usize)> = data
                .iter()
                .enumerate()
                .map(|(i, v)| (l2(q, v), i))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let got = graph.search(q, 10, 40, None);
            hits += exact[..10]
                .iter()
                .filter(|(_, i)| got.iter().any(|g| g.0 as usize == *i))
                .count();
        }
        hits as f64 / 1000.0
    }

    fn graph(dim: usize) -> L2Graph {
        Graph::new(dim, 16, 100, l2 as fn(&[f32], &[f32]) -> f32)
    }

    #[test]
    fn the_parallel_build_matches_the_serial_one_in_recall_and_is_deterministic() {
        let data = points(8000, 12, 5);
        let views: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let mut serial = graph(12);
        for v in &views {
            serial.insert(v);
        }
        let build = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut g = graph(12);
            // Two calls: the second joins a graph already past PARALLEL_FROM.
            pool.install(|| {
                g.insert_many(&views[..3000]);
                g.insert_many(&views[3000..]);
            });
            g
        };
        let (one, two) = (build(1), build(2));
        assert_eq!(two.len(), data.len());
        assert_eq!(one.links0, two.links0, "the thread count changed the graph");
        assert_eq!(one.upper, two.upper);
        let (r_serial, r_parallel) = (recall(&serial, &data), recall(&two, &data));
        assert!(r_serial > 0.9, "serial recall {r_serial}");
        assert!(
            r_parallel > r_serial - 0.02,
            "parallel recall {r_parallel} vs serial {r_serial}"
        );
        // Every node is reachable: each one finds itself.
        for (i, v) in data.iter().enumerate().step_by(97) {
            assert_eq!(two.search(v, 1, 40, None)[0].0 as usize, i);
        }
    }

    #[test]
    fn reordering_renumbers_nodes_without_changing_any_result() {
        let data = points(3000, 8, 3);
        let mut g = graph(8);
        for v in &data {
            g.insert(v);
        }
        g.quantize(QuantizedDistance::L2Squared);
        let queries = points(50, 8, 4);
        let before: Vec<Vec<(u32, f32)>> =
            queries.iter().map(|q| g.search(q, 10, 40, None)).collect();
        let old_of_new = g.reorder();
        let mut seen = old_of_new.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..3000).collect::<Vec<u32>>(), "not a permutation");
        assert_ne!(
            old_of_new, seen,
            "breadth-first order is not the insertion order"
        );
        for (q, want) in queries.iter().zip(&before) {
            let got: Vec<(u32, f32)> = g
                .search(q, 10, 40, None)
                .into_iter()
                .map(|(n, d)| (old_of_new[n as usize], d))
                .collect();
            assert_eq!(&got, want);
        }
        // Inserting after a reorder still works and finds the new node.
        let extra = points(1, 8, 77).remove(0);
        let node = g.insert(&extra);
        assert_eq!(g.search(&extra, 1, 40, None)[0].0, node);
    }
}
