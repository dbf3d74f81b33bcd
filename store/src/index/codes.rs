//! int8 codes of the graph's vectors (Qdrant's scalar quantization,
//! `engram_kernels::quant`), laid out so the quantized walk reads one cache line per
//! node where it can.

use engram_kernels::ScalarQuantizer;

use super::bytes::{ReadResult, Reader, Writer};

/// One cache line of int8 codes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CodeLine([i8; 64]);

/// A stored vector as the quantized walk reads it.
pub(super) struct CodeRow<'a> {
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
pub(super) struct CodeRows {
    dim: usize,
    /// Cache lines per row.
    stride: usize,
    lines: Vec<CodeLine>,
}

/// Bytes after a row's codes: its correction and its squared norm.
const ROW_TERMS: usize = 8;

impl CodeRows {
    pub(super) fn new(dim: usize, capacity: usize) -> Self {
        let stride = (dim + ROW_TERMS).div_ceil(64);
        CodeRows {
            dim,
            stride,
            lines: Vec::with_capacity(capacity * stride),
        }
    }

    pub(super) fn push(&mut self, codes: &[i8], correction: f32, norm: f32) {
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
    pub(super) fn bytes(&self, node: u32) -> &[i8] {
        let lines = &self.lines[node as usize * self.stride..][..self.stride];
        // SAFETY: `CodeLine` is `repr(C)` over `[i8; 64]` with no padding (its size
        // is its alignment), so `stride` consecutive lines are `stride * 64`
        // contiguous, initialised `i8`s.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<i8>(), self.stride * 64) }
    }

    #[inline(always)]
    pub(super) fn row(&self, node: u32) -> CodeRow<'_> {
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
    pub(super) fn used(&self, node: u32) -> &[i8] {
        &self.bytes(node)[..self.dim + ROW_TERMS]
    }

    /// Bytes one row takes (whole cache lines).
    pub(super) fn row_bytes(&self) -> usize {
        self.stride * 64
    }

    /// Lines the buffer has room for.
    pub(super) fn capacity(&self) -> usize {
        self.lines.capacity()
    }

    pub(super) fn advise_huge_pages(&self) {
        super::memory::advise_huge_pages(&self.lines);
    }

    pub(super) fn reserve(&mut self, rows: usize) {
        self.lines.reserve(rows * self.stride);
    }

    /// Rows in the order `old_of_new` gives.
    pub(super) fn permuted(&self, old_of_new: &[u32]) -> Self {
        let mut lines = Vec::with_capacity(self.lines.capacity());
        for &old in old_of_new {
            lines.extend_from_slice(&self.lines[old as usize * self.stride..][..self.stride]);
        }
        CodeRows { lines, ..*self }
    }
}

impl CodeRows {
    /// The rows' bytes, for the index's dump.
    pub(super) fn write(&self, out: &mut Writer) {
        out.0.reserve(self.lines.len() * 64);
        for line in &self.lines {
            out.bytes(&line.0.map(|b| b as u8));
        }
    }

    /// `rows` rows of `dim` codes as [`CodeRows::write`] wrote them.
    pub(super) fn read(dim: usize, rows: usize, r: &mut Reader<'_>) -> ReadResult<Self> {
        let mut out = CodeRows::new(dim, rows);
        let bytes = r.take(rows * out.stride * 64, "int8 codes")?;
        out.lines.extend(
            bytes
                .chunks_exact(64)
                .map(|c| CodeLine(std::array::from_fn(|k| c[k] as i8))),
        );
        Ok(out)
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

impl QuantizedDistance {
    const ALL: [QuantizedDistance; 3] = [
        QuantizedDistance::OneMinusDot,
        QuantizedDistance::Dot,
        QuantizedDistance::L2Squared,
    ];

    fn tag(self) -> u8 {
        Self::ALL.iter().position(|k| *k == self).expect("listed") as u8
    }
}

/// A query as the quantized walk scores it.
pub(super) struct QueryCodes {
    codes: Vec<i8>,
    correction: f32,
    norm: f32,
}

/// int8 codes of every node, with the per-vector terms their scores need.
pub(super) struct Quantized {
    pub(super) quantizer: ScalarQuantizer,
    pub(super) kind: QuantizedDistance,
    pub(super) codes: CodeRows,
}

impl Quantized {
    pub(super) fn push(&mut self, v: &[f32]) {
        let codes = self.quantizer.quantize(v);
        let correction = self.quantizer.correction(&codes);
        self.codes
            .push(&codes, correction, engram_kernels::dot(v, v));
    }

    /// The quantizer (kind, lowest value, step) and every row, for the index's dump.
    pub(super) fn write(&self, out: &mut Writer) {
        out.u8(self.kind.tag());
        out.f32(self.quantizer.min());
        out.f32(self.quantizer.scale());
        self.codes.write(out);
    }

    /// What [`Quantized::write`] wrote, for `rows` vectors of `dim` dimensions.
    pub(super) fn read(dim: usize, rows: usize, r: &mut Reader<'_>) -> ReadResult<Self> {
        let tag = r.u8("quantizer kind")?;
        let kind = *QuantizedDistance::ALL
            .get(tag as usize)
            .ok_or_else(|| format!("unknown quantizer kind {tag}"))?;
        let (min, scale) = (r.f32("quantizer")?, r.f32("quantizer")?);
        let quantizer = ScalarQuantizer::from_parts(min, scale).map_err(|e| e.to_string())?;
        Ok(Quantized {
            quantizer,
            kind,
            codes: CodeRows::read(dim, rows, r)?,
        })
    }

    /// What the walk needs of a query: its codes, their correction, its exact norm.
    pub(super) fn encode(&self, query: &[f32]) -> QueryCodes {
        let codes = self.quantizer.quantize(query);
        QueryCodes {
            correction: self.quantizer.correction(&codes),
            codes,
            norm: engram_kernels::dot(query, query),
        }
    }

    /// The walk's distance from an encoded query to `node`.
    #[inline(always)]
    pub(super) fn distance(&self, q: &QueryCodes, node: u32) -> f32 {
        let row = self.codes.row(node);
        let dot = self
            .quantizer
            .dot(&q.codes, q.correction, row.codes, row.correction);
        self.kind.of_dot(dot, q.norm + row.norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
