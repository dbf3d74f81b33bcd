//! The one error type of the crate. Messages say what went wrong and what to do: they
//! reach people through `engram promote` and the HTTP API.

use std::path::PathBuf;

/// Everything that can go wrong while making, training, judging or storing an adapter
/// (the registry's own errors arrive as `Model`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The language model failed (loading, tokenizing, generating, adapter shapes).
    #[error(transparent)]
    Model(#[from] engram_generator::Error),

    /// A tensor operation failed (shape bug or out of memory).
    #[error("training computation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// A configuration value is out of range (the HTTP layer maps this to 400).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// There is nothing to train on or evaluate.
    #[error("no data: {0}")]
    NoData(String),

    /// A file-system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What we were doing ("writing", "renaming", ...).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A stored file (checkpoint, JSONL) is unreadable.
    #[error("{} is not a valid {kind}: {reason}", path.display())]
    Corrupt {
        /// What the file should be ("checkpoint", "adapter_config.json", ...).
        kind: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The caller's progress callback asked to stop (a client went away, Ctrl-C).
    #[error("cancelled during {0}; run again to resume from the last checkpoint")]
    Cancelled(&'static str),

    /// An operation is refused, e.g. resuming from a checkpoint of another training run
    /// (the HTTP layer maps this to 409). The adapter registry's refusals are the
    /// generator's (`Model`).
    #[error("refused: {0}")]
    Refused(String),
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

    /// A `Corrupt` error.
    pub(crate) fn corrupt(
        kind: &'static str,
        path: impl Into<PathBuf>,
        reason: impl ToString,
    ) -> Self {
        Error::Corrupt {
            kind,
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
