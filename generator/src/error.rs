//! The one error type of the crate. Messages say what went wrong and what to do, because
//! they reach people through the answer endpoint and the CLI.

use std::path::PathBuf;

/// Everything that can go wrong while loading a language model, loading or storing its
/// adapters, or generating text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The prompt alone fills the model's context window (the HTTP layer maps this to 422).
    #[error("the prompt has {prompt_tokens} tokens but the model's context window is {context_window} tokens (and at least one must be left for the answer): shorten the prompt, use rag mode to send only the retrieved passages, or use a model with a larger window")]
    PromptTooLong {
        /// Tokens of the rendered chat prompt, with an active prefix adapter's positions.
        prompt_tokens: usize,
        /// The model's context window.
        context_window: usize,
    },

    /// A generation option is out of range (the HTTP layer maps this to 400).
    #[error("invalid generation option: {0}")]
    InvalidOptions(String),

    /// A LoRA adapter does not fit the model it is applied to.
    #[error("adapter '{adapter}' does not fit this model: {reason}")]
    AdapterMismatch {
        /// The adapter's name.
        adapter: String,
        /// What does not fit.
        reason: String,
    },

    /// The adapter registry has no such version, refuses an operation, or finds a stored
    /// file unreadable.
    #[error(transparent)]
    Registry(#[from] crate::adapters::RegistryError),

    /// The model file could not be fetched into the cache.
    #[error(transparent)]
    ModelCache(#[from] engram_models::Error),

    /// A GGUF file is missing a tensor or a metadata key, or holds something unexpected.
    #[error("{} is not a usable model file ({reason}): delete it and run `engram models fetch`", path.display())]
    InvalidModel {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What we were doing ("opening", "writing", ...).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The tokenizer failed (should not happen with byte-level BPE; reported, not panicked).
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

    /// An `InvalidModel` error for `path`.
    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidModel {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
