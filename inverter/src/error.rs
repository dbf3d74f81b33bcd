//! The one error type of the inverter crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller-supplied value is out of range or malformed (a 4xx for the server).
    #[error("{what}: {message}")]
    InvalidInput { what: String, message: String },
    /// The probe artifact is missing or unreadable.
    #[error("inverter artifact in {dir}: {reason}; build it with `engram train inverter`")]
    Artifact { dir: PathBuf, reason: String },
    /// The language-model prior failed to load or run.
    #[error("the language model failed: {0}")]
    Model(String),
    #[error("the encoder failed: {0}")]
    Encoder(#[from] engram_embedder::Error),
    #[error("linear algebra failed: {0}")]
    Solve(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The caller's progress callback asked to stop.
    #[error("the audit was cancelled; start it again to run it in full")]
    Cancelled,
}

impl Error {
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            message: message.into(),
        }
    }

    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
