//! Atomic file writes and JSON files: what the registry, the PEFT writer and the
//! manifest share (and the trainer, for its checkpoints and outputs).
//!
//! Why atomic: the registry's state file says which adapter answers use; a crash in the
//! middle of rewriting it must leave the old file or the new one, never half of one.

use std::path::Path;

use crate::adapters::RegistryError;
use crate::error::{Error, Result};

/// Writes `path` atomically: `write` fills a temporary file in the same directory, which
/// is synced and renamed over `path`, so a crash leaves the old file or the new one.
/// Generic over the caller's error type, so that `write` may fail with its own errors.
pub fn write_atomic<E: From<Error>>(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
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

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json =
        serde_json::to_vec_pretty(value).map_err(|e| RegistryError::corrupt("JSON", path, e))?;
    write_atomic(path, |tmp| {
        std::fs::write(tmp, &json).map_err(|e| Error::io("writing", tmp, e))
    })
}

/// Reads a JSON file; `corrupt` makes the caller's error for one that does not parse
/// (each caller knows what the file is and what to do about a broken one).
pub fn read_json<T: serde::de::DeserializeOwned, E: From<Error>>(
    path: &Path,
    corrupt: impl FnOnce(serde_json::Error) -> E,
) -> std::result::Result<T, E> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_slice(&bytes).map_err(corrupt)
}
