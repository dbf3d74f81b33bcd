//! The graph as bytes, for the index's dump (`index/dump.rs`): every array as it is
//! in memory (vectors, levels, layer-0 slots, upper-layer slots, int8 rows), plus the
//! entry point and the level generator's state, so a graph read back is the same
//! graph: the same search results, and the same graph after the same inserts.
//!
//! Reading checks what would make a search index out of bounds (sizes, link counts
//! and targets, levels, the entry point): the file's checksum catches damage, these
//! checks keep a file that passes it by accident from turning into a panic.

use super::{Distance, Graph};
use crate::index::bytes::{ReadResult, Reader, Writer};
use crate::index::codes::Quantized;

/// Levels a node can have (see `Graph::random_level`).
const MAX_LEVEL: u8 = 15;

impl<D: Distance> Graph<D> {
    /// Appends the graph to `out`.
    pub fn write(&self, out: &mut Writer) {
        for x in [self.dim, self.m, self.ef_construction, self.len()] {
            out.u64(x as u64);
        }
        out.u64(self.rng);
        out.u64(self.entry.map_or(u64::MAX, u64::from));
        out.u8(self.max_level);
        out.f32s(&self.vectors);
        out.bytes(&self.levels);
        out.u32s(&self.links0);
        for up in &self.upper {
            out.u32s(up);
        }
        match &self.quantized {
            None => out.u8(0),
            Some(q) => {
                out.u8(1);
                q.write(out);
            }
        }
    }

    /// A graph as [`Graph::write`] wrote it, measuring with `distance`.
    pub fn read(r: &mut Reader<'_>, distance: D) -> ReadResult<Self> {
        let dim = r.u64("dimension")? as usize;
        let m = r.u64("m")? as usize;
        let ef_construction = r.u64("ef_construction")? as usize;
        if !(1..=1 << 16).contains(&dim) || !(2..=128).contains(&m) {
            return Err(format!("dimension {dim} or m {m} out of range"));
        }
        let mut g = Graph::new(dim, m, ef_construction, distance);
        let n = r.count(dim * 4, "node count")?;
        g.rng = r.u64("level generator")?;
        let entry = r.u64("entry point")?;
        g.max_level = r.u8("top level")?;
        g.vectors = r.f32s(n * dim, "vectors")?;
        g.levels = r.take(n, "levels")?.to_vec();
        g.links0 = r.u32s(n * (g.m0 + 1), "layer-0 links")?;
        g.upper = Vec::with_capacity(n);
        for &level in &g.levels {
            if level > MAX_LEVEL {
                return Err(format!("a node has level {level}"));
            }
            g.upper
                .push(r.u32s(level as usize * (m + 1), "upper-layer links")?);
        }
        g.entry = match entry {
            u64::MAX if n == 0 => None,
            e if e < n as u64 && g.levels[e as usize] == g.max_level => Some(e as u32),
            e => return Err(format!("entry point {e} is not a top node of {n}")),
        };
        g.quantized = match r.u8("quantization flag")? {
            0 => None,
            1 => Some(Quantized::read(dim, n, r)?),
            f => return Err(format!("unknown quantization flag {f}")),
        };
        g.check_links()?;
        g.advise_huge_pages();
        Ok(g)
    }

    /// Every link slot holds a count within its capacity and targets that exist.
    fn check_links(&self) -> ReadResult<()> {
        let n = self.len() as u32;
        let check = |slots: &[u32], cap: usize| -> ReadResult<()> {
            for row in slots.chunks_exact(cap + 1) {
                let count = row[0] as usize;
                if count > cap || row[1..1 + count].iter().any(|&t| t >= n) {
                    return Err("a link slot is out of range".into());
                }
            }
            Ok(())
        };
        check(&self.links0, self.m0)?;
        self.upper.iter().try_for_each(|up| check(up, self.m))
    }
}
