//! The one file format for vectors computed once and read back on re-runs: the
//! inverter's training embeddings (one vector per text, `engram train inverter
//! --embeddings-cache`) and stage one's token states (one vector per token of every
//! window, [`crate::states_corpus`], `--states-cache`).
//!
//! Why not safetensors, as corpus contexts are stored: a cache of token states is
//! several GB held as one `Vec` per window. This format is written block by block
//! and read a few rows at a time, so neither direction holds a second copy of it.
//!
//! Layout, little-endian: the magic `EVC1`; the key (u32 byte length, then UTF-8);
//! `dim` (u32); the index (u64 length, then u32 words the caller lays out, such as
//! spans and token ids; empty for one vector per text); the rows (u64 count, then
//! `count * dim` f32).
//!
//! A file is read back only under the key it was written with (callers key it by
//! what the vectors were computed from). Anything else is a miss, not an error: a
//! missing file, another key, a file cut short, or a cache in either of the two
//! formats Engram wrote before this one. The caller computes the vectors again and
//! overwrites the file; these are caches.

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"EVC1";

/// Writes `blocks` (each a whole number of `dim`-wide rows, back to back) and
/// `index` to `path` under `key`.
pub fn write(path: &Path, key: &str, dim: usize, index: &[u32], blocks: &[&[f32]]) -> Result<()> {
    let values: usize = blocks.iter().map(|b| b.len()).sum();
    let rows = values.checked_div(dim).unwrap_or(0);
    debug_assert_eq!(rows * dim, values, "blocks hold whole rows");
    let io = |e| Error::io("writing", path, e);
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&(key.len() as u32).to_le_bytes())
        .map_err(io)?;
    out.write_all(key.as_bytes()).map_err(io)?;
    out.write_all(&(dim as u32).to_le_bytes()).map_err(io)?;
    out.write_all(&(index.len() as u64).to_le_bytes())
        .map_err(io)?;
    for word in index {
        out.write_all(&word.to_le_bytes()).map_err(io)?;
    }
    out.write_all(&(rows as u64).to_le_bytes()).map_err(io)?;
    for x in blocks.iter().flat_map(|b| b.iter()) {
        out.write_all(&x.to_le_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)
}

/// A cache file opened under its key: the index at once, the rows on demand.
pub struct CacheReader {
    path: PathBuf,
    file: BufReader<File>,
    dim: usize,
    index: Vec<u32>,
    rows: usize,
}

/// What the header promises: `dim`, the index and the number of rows.
type Header = (usize, Vec<u32>, usize);

impl CacheReader {
    /// Opens `path` when it holds a complete cache written under `key`; `None` for a
    /// miss (see the module docs). Only a file that cannot be read is an error.
    pub fn open(path: &Path, key: &str) -> Result<Option<CacheReader>> {
        let io = |e| Error::io("reading", path, e);
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        let mut file = BufReader::new(file);
        let header = match read_header(&mut file, key, len) {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => None,
            other => other.map_err(io)?,
        };
        Ok(header.map(|(dim, index, rows)| CacheReader {
            path: path.to_path_buf(),
            file,
            dim,
            index,
            rows,
        }))
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The caller's index words, as written.
    pub fn index(&self) -> &[u32] {
        &self.index
    }

    /// Number of rows in the file.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The next `n` rows, row-major (`n * dim` values).
    pub fn read_rows(&mut self, n: usize) -> Result<Vec<f32>> {
        let mut bytes = vec![0u8; n * self.dim * 4];
        self.file
            .read_exact(&mut bytes)
            .map_err(|e| Error::io("reading", &self.path, e))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// The header, when it is `key`'s and the file's `len` is exactly what it promises.
fn read_header(file: &mut impl Read, key: &str, len: u64) -> std::io::Result<Option<Header>> {
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)?;
    if &magic != MAGIC || read_u32(file)? as usize != key.len() {
        return Ok(None);
    }
    let mut stored = vec![0u8; key.len()];
    file.read_exact(&mut stored)?;
    let dim = read_u32(file)? as u64;
    let index_len = read_u64(file)?;
    // Magic, key length and key, dim, index length, row count: then the index and rows.
    let fixed = 4 + 4 + key.len() as u64 + 4 + 8 + 8;
    let index_end = index_len.checked_mul(4).and_then(|b| b.checked_add(fixed));
    let Some(index_end) = index_end.filter(|&end| end <= len && stored == key.as_bytes()) else {
        return Ok(None);
    };
    let index = (0..index_len)
        .map(|_| read_u32(file))
        .collect::<std::io::Result<Vec<u32>>>()?;
    let rows = read_u64(file)?;
    let total = rows
        .checked_mul(dim * 4)
        .and_then(|b| b.checked_add(index_end));
    Ok((total == Some(len)).then_some((dim as usize, index, rows as usize)))
}

fn read_u32(file: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    file.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(file: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    file.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_reads_back_under_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.bin");
        let (first, second) = ([1.0f32, 2.0, 3.0, 4.0], [5.0f32, 6.0]);
        write(&path, "key", 2, &[7, 8, 9], &[&first, &second]).unwrap();
        let mut file = CacheReader::open(&path, "key").unwrap().unwrap();
        assert_eq!((file.dim(), file.rows()), (2, 3));
        assert_eq!(file.index(), [7, 8, 9]);
        assert_eq!(file.read_rows(2).unwrap(), first);
        assert_eq!(file.read_rows(1).unwrap(), second);
        assert!(file.read_rows(1).is_err(), "no fourth row");
        assert!(CacheReader::open(&path, "other").unwrap().is_none());
        assert!(CacheReader::open(&dir.path().join("none.bin"), "key")
            .unwrap()
            .is_none());
    }

    #[test]
    fn short_foreign_and_older_files_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.bin");
        write(&path, "key", 2, &[], &[&[1.0, 2.0, 3.0, 4.0]]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let longer = [bytes.as_slice(), &[0]].concat();
        // Cut inside the rows, cut inside the header, and a byte too many.
        for damaged in [&bytes[..bytes.len() - 4], &bytes[..6], longer.as_slice()] {
            std::fs::write(&path, damaged).unwrap();
            assert!(CacheReader::open(&path, "key").unwrap().is_none());
        }
        // The states cache (`EST1`) and the inverter's (a 64-byte digest first) of
        // earlier versions.
        for old in [&b"EST1\x02\0\0\0"[..], &[b'a'; 80][..]] {
            std::fs::write(&path, old).unwrap();
            assert!(CacheReader::open(&path, "key").unwrap().is_none());
        }
    }
}
