//! Engram's own HNSW graph (Malkov & Yashunin): flat storage so the search hot
//! loop touches contiguous memory only: vectors in one `Vec<f32>`, layer-0 links
//! in fixed-size `u32` slots, a generation-stamped visited array reused across
//! queries. Distances come from the caller (Engram's SIMD kernels).

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

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

/// Marks visited nodes with a per-query generation, so clearing is free.
struct Visited {
    marks: Vec<u32>,
    generation: u32,
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

/// The graph. Node numbers are dense (0..n); the caller maps them to its ids.
pub struct Graph<D: Fn(&[f32], &[f32]) -> f32> {
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
}

impl<D: Fn(&[f32], &[f32]) -> f32> Graph<D> {
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
        }
    }

    /// Makes room for `n` more nodes.
    pub fn reserve(&mut self, n: usize) {
        self.vectors.reserve(n * self.dim);
        self.levels.reserve(n);
        self.links0.reserve(n * (self.m0 + 1));
        self.upper.reserve(n);
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    fn vector(&self, node: u32) -> &[f32] {
        let at = node as usize * self.dim;
        &self.vectors[at..at + self.dim]
    }

    /// Hints the CPU to load the start of a node's vector into cache (a no-op where
    /// there is no prefetch instruction); the hardware prefetcher follows the rest.
    #[inline(always)]
    fn prefetch(&self, node: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            let at = node as usize * self.dim;
            if at < self.vectors.len() {
                // SAFETY: prefetching is a hint and never faults; the address is in bounds.
                unsafe {
                    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                    _mm_prefetch::<_MM_HINT_T0>(self.vectors.as_ptr().add(at) as *const i8);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = node;
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

    /// Best-first search of one layer; returns up to `ef` nearest nodes the
    /// predicate accepts, nearest first. Rejected nodes are still walked through.
    fn search_layer(
        &self,
        query: &[f32],
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
                let links = self.links(c.1, level);
                // Ask for every neighbour's vector before the first distance, so the
                // memory loads overlap instead of stalling one after another.
                for &nb in links {
                    self.prefetch(nb);
                }
                for &nb in links {
                    if !visited.insert(nb) {
                        continue;
                    }
                    let d = (self.distance)(query, self.vector(nb));
                    let worst = results.peek().map_or(f32::INFINITY, |w| w.0);
                    if results.len() < ef || d < worst {
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
                .all(|&s| (self.distance)(v, self.vector(s)) > c.0)
            {
                kept.push(c.1);
            }
        }
        kept
    }

    /// Adds a vector; returns its node number.
    pub fn insert(&mut self, vector: &[f32]) -> u32 {
        assert_eq!(vector.len(), self.dim, "callers validate dimensions");
        let node = self.len() as u32;
        let level = self.random_level();
        self.vectors.extend_from_slice(vector);
        self.levels.push(level);
        self.links0.resize(self.links0.len() + self.m0 + 1, 0);
        self.upper.push(vec![0; level as usize * (self.m + 1)]);
        let Some(entry) = self.entry else {
            self.entry = Some(node);
            self.max_level = level;
            return node;
        };
        let query = self.vector(node).to_vec();
        let mut ep = vec![Near((self.distance)(&query, self.vector(entry)), entry)];
        for l in (level + 1..=self.max_level).rev() {
            ep = self.search_layer(&query, &ep, 1, l, None);
        }
        for l in (0..=level.min(self.max_level)).rev() {
            let found = self.search_layer(&query, &ep, self.ef_construction, l, None);
            let cap = if l == 0 { self.m0 } else { self.m };
            let neighbours = self.select(&found, self.m);
            self.set_links(node, l, &neighbours);
            for &nb in &neighbours {
                let mut links = self.links(nb, l).to_vec();
                if links.len() < cap {
                    links.push(node);
                } else {
                    let base = self.vector(nb);
                    let mut cands: Vec<Near> = links
                        .iter()
                        .chain(std::iter::once(&node))
                        .map(|&x| Near((self.distance)(base, self.vector(x)), x))
                        .collect();
                    cands.sort();
                    links = self.select(&cands, cap);
                }
                self.set_links(nb, l, &links);
            }
            ep = found;
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(node);
        }
        node
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
        let mut ep = vec![Near((self.distance)(query, self.vector(entry)), entry)];
        for l in (1..=self.max_level).rev() {
            ep = self.search_layer(query, &ep, 1, l, None);
        }
        let mut found = self.search_layer(query, &ep, ef.max(k), 0, keep);
        found.truncate(k);
        found.into_iter().map(|n| (n.1, n.0)).collect()
    }
}
