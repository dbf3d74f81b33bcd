//! Renumbering the graph's nodes for memory locality.

use super::{Distance, Graph};

impl<D: Distance> Graph<D> {
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
}
