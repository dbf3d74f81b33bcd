//! Request and response types of the application's operations beyond the store's
//! (answers). The store's own types are re-exported from `engram_store::api`, so the
//! REST API and the CLI speak one language.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use engram_store::api::*;

/// How an answer gets its knowledge (see `POST /collections/{name}/answer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnswerMode {
    /// Every document of the collection in the prompt: simple, but its cost grows
    /// with the corpus and it stops at the model's window (422 beyond it).
    Context,
    /// The top-k retrieved passages in the prompt, cited as sources.
    Rag,
    /// The collection's active adapter and no context at all (409 without one).
    Weights,
    /// The active adapter and the top-k passages: what the adapter adds to rag.
    #[serde(rename = "weights_rag")]
    WeightsRag,
    /// Weights when an active adapter covers the collection, else rag (the default).
    #[default]
    Auto,
    /// The base model alone, no documents and no adapter: the baseline the other
    /// modes are measured against.
    None,
}

impl AnswerMode {
    /// Every mode, as the API spells them.
    pub const ALL: [AnswerMode; 6] = [
        AnswerMode::Context,
        AnswerMode::Rag,
        AnswerMode::Weights,
        AnswerMode::WeightsRag,
        AnswerMode::Auto,
        AnswerMode::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnswerMode::Context => "context",
            AnswerMode::Rag => "rag",
            AnswerMode::Weights => "weights",
            AnswerMode::WeightsRag => "weights_rag",
            AnswerMode::Auto => "auto",
            AnswerMode::None => "none",
        }
    }

    /// Parses the API spelling; the error lists the valid ones.
    pub fn parse(s: &str) -> std::result::Result<AnswerMode, String> {
        AnswerMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown answer mode '{s}'; use context, rag, weights, weights_rag, auto or none")
            })
    }
}

impl std::str::FromStr for AnswerMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        AnswerMode::parse(s)
    }
}

/// `POST /collections/{name}/answer`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    #[schema(value_type = engram_store::api::VisibleText)]
    pub question: String,
    /// context, rag, weights, auto (default) or none.
    #[serde(default)]
    pub mode: AnswerMode,
    /// Rag: passages retrieved into the prompt (default 3, at most 16).
    #[schema(minimum = 1, maximum = 16)]
    pub k: Option<usize>,
    /// Rag: how passages are found: vector, keyword or hybrid (the default: best
    /// on Quoref, see README).
    pub retrieval: Option<QueryMode>,
    /// Most tokens to generate (default 128; at most `[generation] max_tokens`, 2,048
    /// by default).
    #[schema(minimum = 1, maximum = 2048)]
    pub max_tokens: Option<usize>,
    /// 0 (default) is greedy and deterministic; up to 2.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, (0, 1]; default 1.
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Sampler seed (default 0).
    #[serde(default, deserialize_with = "int64_seed")]
    pub seed: Option<u64>,
    /// Server-sent events: `token` events with `{"text"}` as the answer grows, then
    /// one `done` event holding the whole response (or an `error` event).
    #[serde(default)]
    pub stream: bool,
}

/// A passage an answer was given in its prompt.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct AnswerSource {
    /// The document's id.
    pub id: String,
    /// The retrieval score (see `Hit::score`).
    pub score: f32,
    /// The passage as the model saw it (the best chunk widened to about 1,500 characters).
    pub text: String,
}

/// `GET /collections/{name}`: the store's account of a collection and, once it
/// has been promoted, its active adapter.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CollectionView {
    #[serde(flatten)]
    pub info: CollectionInfo,
    /// The active adapter (`weights` and `auto` answers use it), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub adapter: Option<ActiveAdapter>,
}

/// A collection's active adapter and how current its knowledge is.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ActiveAdapter {
    pub version: u32,
    /// Learned documents written or deleted since its promotion (absent for an
    /// adapter whose promotion recorded no write sequences).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub staleness: Option<crate::engine::staleness::Staleness>,
}

/// The adapter a `weights` answer used.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct AdapterRef {
    pub name: String,
    pub version: u32,
}

/// Where an answer's time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
pub struct AnswerTiming {
    /// Finding the passages (rag) or reading the documents (context).
    pub retrieve_ms: f64,
    /// Processing the prompt.
    pub prefill_ms: f64,
    /// Generating the answer after its first token.
    pub decode_ms: f64,
    pub decode_tokens_per_s: f64,
}

/// Token counts of an answer.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
pub struct AnswerUsage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct AnswerResponse {
    pub answer: String,
    /// The mode that answered (auto resolves to weights or rag).
    pub mode_used: AnswerMode,
    /// The language model's name.
    pub model: String,
    /// Rag: the passages in the prompt, best first. Empty in the other modes.
    pub sources: Vec<AnswerSource>,
    /// Weights: the adapter applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterRef>,
    /// `auto`: why it chose the mode it did (no adapter; the adapter's knowledge of
    /// the retrieved documents is current; or stale, so rag answered).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mode_reason: Option<String>,
    /// "stop" (the model ended its answer), "length" (max_tokens or the window) or
    /// "cancelled" (the client went away).
    pub finish_reason: String,
    pub usage: AnswerUsage,
    pub timing: AnswerTiming,
}

/// Reads a seed of at most `i64::MAX`: the spec says int64 (what most clients'
/// integer is), so a larger one is refused, not silently taken.
pub fn int64_seed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match <Option<u64> as serde::Deserialize>::deserialize(d)? {
        Some(s) if s > i64::MAX as u64 => Err(serde::de::Error::custom(format!(
            "seed {s} is above {}, the largest int64",
            i64::MAX
        ))),
        seed => Ok(seed),
    }
}
