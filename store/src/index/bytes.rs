//! Little-endian encoding of the index's flat arrays for its dump (`dump.rs`): a
//! writer that appends, and a reader that says what was cut short instead of
//! panicking, since a dump is read back from a disk that may have damaged it.

/// Appends values to a byte buffer.
#[derive(Default)]
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn with_capacity(bytes: usize) -> Self {
        Writer(Vec::with_capacity(bytes))
    }

    pub(super) fn u8(&mut self, x: u8) {
        self.0.push(x);
    }

    pub(super) fn u32(&mut self, x: u32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }

    pub(super) fn u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }

    pub(super) fn f32(&mut self, x: f32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    pub(super) fn u32s(&mut self, xs: &[u32]) {
        self.0.reserve(xs.len() * 4);
        for x in xs {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }

    pub(super) fn u64s(&mut self, xs: &[u64]) {
        self.0.reserve(xs.len() * 8);
        for x in xs {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }

    pub(super) fn f32s(&mut self, xs: &[f32]) {
        self.0.reserve(xs.len() * 4);
        for x in xs {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Takes values off the front of a byte slice; every error names what it was reading.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

pub(super) type ReadResult<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(super) fn take(&mut self, n: usize, what: &str) -> ReadResult<&'a [u8]> {
        let (head, rest) = self
            .bytes
            .split_at_checked(n)
            .ok_or_else(|| format!("cut short in {what}"))?;
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> ReadResult<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    pub(super) fn u8(&mut self, what: &str) -> ReadResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(super) fn u32(&mut self, what: &str) -> ReadResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &str) -> ReadResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(super) fn f32(&mut self, what: &str) -> ReadResult<f32> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    /// A count that is about to size an allocation of `unit`-byte items: refused when
    /// the rest of the input could not hold that many, so a damaged count cannot ask
    /// for terabytes.
    pub(super) fn count(&mut self, unit: usize, what: &str) -> ReadResult<usize> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).map_err(|_| format!("{what}: {n} is too large"))?;
        if n.saturating_mul(unit) > self.bytes.len() {
            return Err(format!(
                "{what}: {n} items do not fit in the {} bytes left",
                self.bytes.len()
            ));
        }
        Ok(n)
    }

    pub(super) fn u32s(&mut self, n: usize, what: &str) -> ReadResult<Vec<u32>> {
        let b = self.take(n.checked_mul(4).ok_or(what)?, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    pub(super) fn u64s(&mut self, n: usize, what: &str) -> ReadResult<Vec<u64>> {
        let b = self.take(n.checked_mul(8).ok_or(what)?, what)?;
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    pub(super) fn f32s(&mut self, n: usize, what: &str) -> ReadResult<Vec<f32>> {
        let b = self.take(n.checked_mul(4).ok_or(what)?, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}
