//! The one error type of the crate. Every message says what went wrong *and* what to
//! do about it, because these errors end up in front of people running `engram`.

use std::path::PathBuf;

/// Everything that can go wrong while loading an encoder or embedding text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent text with nothing to embed (the HTTP layer maps this to 400).
    #[error("text {index} is empty or whitespace only (or has no tokens): send text with some words in it")]
    EmptyText {
        /// Position of the offending text in the batch.
        index: usize,
    },

    /// No encoder of that name exists.
    #[error("unknown embedding model '{0}': use one of {known}", known = crate::ENCODER_NAMES.join(", "))]
    UnsupportedModel(String),

    /// A stored corpus context is damaged or from another format, or cannot be built
    /// from the given sample. The message says which and what to do.
    #[error("corpus context: {0}")]
    InvalidContext(String),

    /// The model could not be fetched into the cache or failed its checks there (the
    /// message carries the fix).
    #[error(transparent)]
    ModelCache(#[from] engram_models::Error),

    /// Files of a model folder are missing or malformed.
    #[error("model files in {dir} are unusable ({reason}): delete that folder and run `engram models fetch`")]
    InvalidModel {
        /// The model folder.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What we were doing ("creating", "reading", ...).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The tokenizer failed on some input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A tensor operation failed (shape bug or out of memory).
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
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
