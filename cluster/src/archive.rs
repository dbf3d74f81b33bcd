//! A snapshot directory as one file, and back: what goes into the object store.
//!
//! Why a format of our own: the object store keeps objects, not trees, and one
//! object is all or nothing (its metadata is published after its last chunk, so a
//! half-uploaded snapshot has no name). The format is the smallest that does the
//! job, streamed both ways (a database does not fit in memory): a magic line, then
//! per file its relative path, its size and its bytes, then an empty path. Its
//! SHA-256, computed while it is written, goes into the object's metadata and is
//! checked again on download, before anything is unpacked.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

const MAGIC: &[u8] = b"ENGRAM-SNAPSHOT-1\n";
/// Longest relative path stored (RocksDB and dump file names are short).
const MAX_PATH: usize = 4096;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::Snapshot(format!("corrupt snapshot archive: {what}"))
}

fn io(e: std::io::Error) -> Error {
    Error::Snapshot(format!("snapshot archive: {e}"))
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The hex SHA-256 of `hash`.
pub fn hex(hash: Sha256) -> String {
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir`, by path relative to it, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                walk(root, &entry.path(), out)?;
            } else {
                out.push(entry.path().strip_prefix(root).expect("under root").into());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out).map_err(io)?;
    out.sort();
    Ok(out)
}

/// Packs the tree under `dir` into the file `to`; returns its size and hex SHA-256.
pub fn pack(dir: &Path, to: &Path) -> Result<(u64, String)> {
    let mut out = Hashing {
        inner: BufWriter::new(File::create(to).map_err(io)?),
        hash: Sha256::new(),
        bytes: 0,
    };
    out.write_all(MAGIC).map_err(io)?;
    for rel in files(dir)? {
        let name = rel
            .to_str()
            .ok_or_else(|| corrupt(format!("{} is not UTF-8", rel.display())))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        let mut file = File::open(dir.join(&rel)).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        out.write_all(&(name.len() as u32).to_le_bytes())
            .map_err(io)?;
        out.write_all(name.as_bytes()).map_err(io)?;
        out.write_all(&size.to_le_bytes()).map_err(io)?;
        let copied = std::io::copy(&mut (&mut file).take(size), &mut out).map_err(io)?;
        if copied != size {
            return Err(corrupt(format!("{name} shrank while it was packed")));
        }
    }
    out.write_all(&0u32.to_le_bytes()).map_err(io)?;
    out.flush().map_err(io)?;
    let Hashing { inner, hash, bytes } = out;
    inner
        .into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    Ok((bytes, hex(hash)))
}

/// A relative path of the archive, refused if it would leave the target directory.
fn safe_path(name: &str) -> Result<PathBuf> {
    let path = PathBuf::from(name);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    if name.is_empty() || !plain {
        return Err(corrupt(format!(
            "the path '{name}' is not a plain relative one"
        )));
    }
    Ok(path)
}

/// Unpacks the archive `from` into the new directory `dir`, syncing every file.
pub fn unpack(from: &Path, dir: &Path) -> Result<()> {
    let mut input = BufReader::new(File::open(from).map_err(io)?);
    let mut magic = vec![0; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| corrupt("too short"))?;
    if magic != MAGIC {
        return Err(corrupt("not an Engram snapshot"));
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    loop {
        let mut len = [0u8; 4];
        input
            .read_exact(&mut len)
            .map_err(|_| corrupt("truncated"))?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 {
            break;
        }
        if len > MAX_PATH {
            return Err(corrupt(format!("a path of {len} bytes")));
        }
        let mut name = vec![0; len];
        input
            .read_exact(&mut name)
            .map_err(|_| corrupt("truncated"))?;
        let name = String::from_utf8(name).map_err(|_| corrupt("a path not in UTF-8"))?;
        let target = dir.join(safe_path(&name)?);
        let mut size = [0u8; 8];
        input
            .read_exact(&mut size)
            .map_err(|_| corrupt("truncated"))?;
        let size = u64::from_le_bytes(size);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = File::create(&target).map_err(io)?;
        let copied = std::io::copy(&mut (&mut input).take(size), &mut file).map_err(io)?;
        if copied != size {
            return Err(corrupt(format!("{name} is truncated")));
        }
        file.sync_all().map_err(io)?;
    }
    let mut rest = [0u8; 1];
    if input.read(&mut rest).map_err(io)? != 0 {
        return Err(corrupt("bytes after the end"));
    }
    Ok(())
}

/// The hex SHA-256 of the file at `path`.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut hash = Hashing {
        inner: std::io::sink(),
        hash: Sha256::new(),
        bytes: 0,
    };
    std::io::copy(&mut File::open(path).map_err(io)?, &mut hash).map_err(io)?;
    Ok(hex(hash.hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_round_trips_and_damage_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("src");
        std::fs::create_dir_all(src.join("graphs")).unwrap();
        std::fs::write(src.join("CURRENT"), b"MANIFEST-000001\n").unwrap();
        std::fs::write(src.join("graphs/v.graph"), vec![7u8; 300_000]).unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        let file = root.path().join("a.snap");
        let (bytes, sha) = pack(&src, &file).unwrap();
        assert_eq!(bytes, std::fs::metadata(&file).unwrap().len());
        assert_eq!(sha, sha256_of(&file).unwrap());
        assert_eq!(sha.len(), 64);

        let out = root.path().join("out");
        unpack(&file, &out).unwrap();
        assert_eq!(files(&out).unwrap(), files(&src).unwrap());
        assert_eq!(
            std::fs::read(out.join("graphs/v.graph")).unwrap(),
            vec![7u8; 300_000]
        );

        // Truncated: refused, and the hash differs.
        let all = std::fs::read(&file).unwrap();
        let cut = root.path().join("cut.snap");
        std::fs::write(&cut, &all[..all.len() - 1000]).unwrap();
        assert_ne!(sha256_of(&cut).unwrap(), sha);
        let err = unpack(&cut, &root.path().join("cut")).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Not an archive at all.
        let junk = root.path().join("junk.snap");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(unpack(&junk, &root.path().join("junk")).is_err());
        // A path that climbs out of the target.
        assert!(safe_path("../etc/passwd").is_err());
        assert!(safe_path("/abs").is_err());
        assert!(safe_path("graphs/v.graph").is_ok());
    }
}
