//! The language model of Engram: a chat model that answers from context (full or
//! retrieved) or from adapter weights.
//!
//! Why a crate of its own: generation is the slowest step of an answer and the only one
//! that needs a tokenizer, a sampler and a KV cache; keeping it behind the small
//! [`LanguageModel`] contract (`model.rs`, read it first) lets the server, the CLI and
//! the benchmarks call it without knowing about GGUF or candle, and lets a larger model
//! or a GPU backend be added as one more implementation.
//!
//! - The contract (`model.rs`): [`LanguageModel`], [`GenerationRequest`],
//!   [`GenerationOptions`], [`Interrupt`], [`Generation`] with [`Usage`] and [`Timing`].
//! - [`GgufChatModel`] (`gguf_chat.rs`): SmolLM2-135M-Instruct from its pinned GGUF, the
//!   default model ([`GgufChatModel::load_default`]).
//! - [`llama`]: the network, our own model file on candle's `QMatMul` (per-call KV cache,
//!   adapter hooks, fast or differentiable kernels).
//! - [`lora`]: [`LoraAdapter`], deltas applied unmerged on top of the quantized weights.
//! - [`prefix`]: [`KvPrefix`], a prefix adapter's trained keys and values (Cartridges),
//!   seeded into each call's KV cache; carried by a [`LoraAdapter::prefix_only`].
//! - [`adapters`]: the [`AdapterRegistry`] of named, versioned adapters per collection
//!   (hot-swappable active one), their PEFT files and manifests: what serving needs.
//! - [`gguf`]: reading GGUF files and the cached Q8_0 conversion that makes them fast.
//! - [`tokenizer`], [`chat`], [`stream`]: byte-level BPE from GGUF metadata, the ChatML
//!   prompt, UTF-8-safe streaming.

pub mod adapters;
pub mod chat;
mod error;
pub mod gguf;
mod gguf_chat;
mod kv_cache;
mod linear;
pub mod llama;
pub mod lora;
mod model;
pub mod prefix;
pub mod stream;
/// Tiny random models for tests here and in the trainer (no model files needed).
#[doc(hidden)]
pub mod testing;
pub mod tokenizer;

pub use adapters::{AdapterRegistry, AdapterVersion, RegistryError};
pub use chat::{ChatMessage, Role};
pub use error::{Error, Result};
pub use gguf_chat::{GgufChatModel, LoadOptions};
pub use kv_cache::KvCache;
pub use llama::{Kernels, Llama, LlamaConfig};
pub use lora::{AdapterKind, LoraAdapter, LoraTarget};
pub use model::{
    FinishReason, Generation, GenerationOptions, GenerationRequest, Interrupt, LanguageModel,
    ModelInfo, Timing, Usage,
};
pub use prefix::KvPrefix;
