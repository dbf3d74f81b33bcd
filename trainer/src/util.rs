//! Small file helpers shared by checkpoints, the registry and the outputs.

use std::path::Path;

use crate::error::{Error, Result};

/// Writes `path` atomically: `write` fills a temporary file in the same directory, which
/// is synced and renamed over `path`, so a crash leaves the old file or the new one.
pub(crate) fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    write(tmp.path())?;
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into", path, e.error))?;
    Ok(())
}

/// Writes a JSON value atomically (also the database's promotion statuses).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::corrupt("JSON", path, e))?;
    write_atomic(path, |tmp| {
        std::fs::write(tmp, &json).map_err(|e| Error::io("writing", tmp, e))
    })
}

/// Reads a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    kind: &'static str,
) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(kind, path, e))
}

/// splitmix64: a seeded, well-mixed hash (data order and dropout seeds per step).
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
