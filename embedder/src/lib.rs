//! Text encoders for Engram: text in, unit vectors (and chunk spans) out.
//!
//! Why a crate of its own: embedding is the only machine-learning step on the insert and
//! query paths, it is the slow part of both, and its model files must be fetched and
//! verified before anything runs. Keeping it behind the small [`TextEncoder`] contract
//! (`encoder.rs`, read it first) lets the database, the CLI and the tests swap models or
//! stub them without knowing about candle or tokenizers.
//!
//! - The contract (`encoder.rs`): [`TextEncoder`], [`Chunk`].
//! - [`MiniLm`]: all-MiniLM-L6-v2 on candle, CPU, the default encoder (`"minilm"`).
//! - [`models`]: the verified model cache (`engram models fetch`).
//! - [`encoder_by_name`]: what the database calls to load the encoder a collection names.

pub mod bert;
pub mod context;
mod contextual;
mod cpu_ops;
mod encoder;
mod error;
mod minilm;
pub mod models;

use std::sync::Arc;

pub use context::{ContextOptions, CorpusContext, Variant};
pub use contextual::ContextualEncoder;
pub use encoder::{Chunk, Chunking, TextEncoder};
pub use error::{Error, Result};
pub use minilm::{MiniLm, TokenWeights};

/// Names [`encoder_by_name`] accepts (listed in its error message).
pub const ENCODER_NAMES: &[&str] = &[
    minilm::NAME,
    "contextual-center",
    "contextual-whiten",
    "contextual-idf",
    "contextual-idf-center",
    "contextual-idf-whiten",
];

/// Loads the encoder stored under `name` in a collection config, fetching its model
/// into the cache on first use. Slow (hundreds of milliseconds): callers keep the `Arc`.
pub fn encoder_by_name(name: &str) -> Result<Arc<dyn TextEncoder>> {
    match name {
        minilm::NAME => Ok(Arc::new(MiniLm::load_default()?)),
        other => Err(Error::UnsupportedModel(other.to_string())),
    }
}
