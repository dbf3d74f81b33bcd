//! Text encoders for Engram: text in, unit vectors (and chunk spans) out.
//!
//! Why a crate of its own: embedding is the only machine-learning step on the insert and
//! query paths, it is the slow part of both, and its model files must be fetched and
//! verified before anything runs (by `engram-models`). Keeping it behind the small [`TextEncoder`] contract
//! (`encoder.rs`, read it first) lets the database, the CLI and the tests swap models or
//! stub them without knowing about candle or tokenizers.
//!
//! - The contract (`encoder.rs`): [`TextEncoder`], [`Chunk`].
//! - [`MiniLm`]: all-MiniLM-L6-v2 on candle, CPU, the default encoder (`"minilm"`).
//! - [`CorpusContext`] and [`ContextualEncoder`]: stage two, MiniLM conditioned on a
//!   collection's corpus (training-free variants, and the learned network of
//!   [`stage_two`], trained by [`stage_two_train`] on token states stage one computed
//!   once, [`states_corpus`]; measured by [`stage_two_eval`]; the weights, loss chart
//!   and manifest written by `stage_two_artifact.rs`).
//! - [`self_check`]: whether a collection's context beats stage one on pseudo-queries
//!   cut from its own documents ([`pseudo_queries`]; else the collection keeps stage one).
//! - [`vector_cache`]: the one file format for vectors kept between runs (token states
//!   here, the inverter's training embeddings).
//! - Model files come from the verified model cache, the `engram-models` crate
//!   (`engram models fetch`).
//! - [`encoder_by_name`]: what the database calls to load the encoder a collection names.

pub mod bert;
pub mod context;
pub mod contextual;
mod cpu_gemm;
mod cpu_ops;
mod encoder;
mod error;
mod minilm;
pub mod pseudo_queries;
pub mod self_check;
pub mod spectrum;
pub mod stage_two;
mod stage_two_artifact;
pub mod stage_two_eval;
pub mod stage_two_train;
pub mod states_corpus;
pub mod vector_cache;

use std::sync::Arc;

pub use context::{ContextOptions, CorpusContext, Variant};
pub use contextual::ContextualEncoder;
pub use encoder::{Chunk, Chunking, TextEncoder};
pub use error::{Error, Result};
pub use minilm::{MiniLm, Pooler, TokenWeights, WeightedMean, Window};
pub use self_check::{SelfCheck, SelfCheckOptions};
pub use stage_two::{StageTwo, StageTwoConfig};
pub use stage_two_artifact::{SavedTraining, TrainingRecord};

/// Names [`encoder_by_name`] accepts (listed in its error message).
pub const ENCODER_NAMES: &[&str] = &[
    minilm::NAME,
    "contextual",
    "contextual-center",
    "contextual-whiten",
    "contextual-idf",
    "contextual-idf-center",
    "contextual-idf-whiten",
    "contextual-learned",
];

/// The contextual variant a collection gets when it asks for plain `"contextual"`:
/// the best one on held-out retrieval (see README, "Contextual embeddings").
pub const DEFAULT_CONTEXTUAL: Variant = Variant::Learned;

/// What an embedder name in a collection config means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    /// Plain all-MiniLM-L6-v2.
    MiniLm,
    /// MiniLM conditioned on the collection's corpus context.
    Contextual(Variant),
}

impl EncoderKind {
    /// Parses `"minilm"`, `"contextual"` (the default variant) or
    /// `"contextual-<variant>"`; the error lists the valid names.
    pub fn parse(name: &str) -> Result<EncoderKind> {
        match name {
            minilm::NAME => Ok(EncoderKind::MiniLm),
            "contextual" => Ok(EncoderKind::Contextual(DEFAULT_CONTEXTUAL)),
            other => match other.strip_prefix(contextual::NAME_PREFIX) {
                Some(variant) => Variant::parse(variant).map(EncoderKind::Contextual),
                None => Err(Error::UnsupportedModel(other.to_string())),
            },
        }
    }

    /// The canonical name stored in collection configs.
    pub fn name(self) -> String {
        match self {
            EncoderKind::MiniLm => minilm::NAME.to_string(),
            EncoderKind::Contextual(v) => format!("{}{}", contextual::NAME_PREFIX, v.name()),
        }
    }
}

/// The process's one MiniLM, loaded (and fetched) on first use and shared by every
/// collection and every contextual encoder: 90 MB of weights are not worth copying.
pub fn shared_minilm() -> Result<Arc<MiniLm>> {
    static MODEL: std::sync::Mutex<Option<Arc<MiniLm>>> = std::sync::Mutex::new(None);
    let mut slot = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = slot.as_ref() {
        return Ok(m.clone());
    }
    let m = Arc::new(MiniLm::load_default()?);
    *slot = Some(m.clone());
    Ok(m)
}

/// Loads the encoder stored under `name` in a collection config, fetching its model
/// into the cache on first use. Contextual names are refused here: they need the
/// collection's context (see [`ContextualEncoder::new`]).
pub fn encoder_by_name(name: &str) -> Result<Arc<dyn TextEncoder>> {
    match EncoderKind::parse(name)? {
        EncoderKind::MiniLm => Ok(shared_minilm()?),
        EncoderKind::Contextual(_) => Err(Error::InvalidContext(format!(
            "'{name}' embeds with a collection's corpus context; create a collection with it"
        ))),
    }
}
