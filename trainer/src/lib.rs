//! Graduating knowledge into weights: LoRA adapters for Engram's language model.
//!
//! Why a crate of its own: turning a collection's documents into adapter weights is a
//! pipeline (synthetic data, training, an evaluation gate) with its own failure modes
//! and files; the database calls it (`engram promote`, `POST
//! /collections/{name}/promote`) and serves what it registers, without knowing how.
//! The versioned store itself, the PEFT files and the manifests are the generator's
//! ([`engram_generator::adapters`]): serving needs them, training only writes them.
//!
//! - [`data`]: [`QaPair`], [`Sequence`], [`TrainableModel`] (SmolLM2 dequantized to F32
//!   with differentiable kernels; the generator's own llama, not a copy).
//! - [`train`](mod@train): [`TrainConfig`], [`train()`](train::train), checkpoints and resume
//!   ([`checkpoint`]), the loss curve; [`optim`]: AdamW with saveable state, schedule.
//! - [`prefix`]: prefix adapters (Cartridges): [`PrefixConfig`] in
//!   [`TrainConfig::prefix`] trains a KV prefix instead of LoRA pairs, same loop.
//! - [`distill`]: context distillation (teacher = base + rag prompt, student = base +
//!   adapter closed-book; KL to the teacher's top-k logits per answer position);
//!   [`token_weights`]: which answer tokens its loss weighs most.
//! - [`synth`]: synthetic training data (self-study QA, rephrasings, cloze).
//! - [`gate`]: closed-book accuracy and forgetting, and the [`GateDecision`].
//! - [`continuation`]: continued training from a stored version on changed
//!   documents ([`TrainConfig::continue_from`], the manifest's carried-over records).
//! - [`promote`]: the whole pipeline, [`promote::run`]: it writes the adapter's PEFT
//!   files and manifest and registers the version in an
//!   [`AdapterRegistry`](engram_generator::AdapterRegistry).
//!
//! # For the database (CLI `engram promote`, `POST /collections/{name}/promote`)
//!
//! ```text
//! let chat = GgufChatModel::load_default()?;          // the serving model (also writes data)
//! let trainable = TrainableModel::load_default()?;    // F32 copy for training (~0.6 GB)
//! let registry = AdapterRegistry::open(&root, trainable.llama().config())?
//!     .with_base_sha256(trainable.base_sha256());    // one per server, in an Arc
//! let report = promote::run(&documents, &held_out,
//!     Models { chat: &chat, trainable: &trainable }, &registry, &options,
//!     &mut |event| { bar.update(event); ControlFlow::Continue(()) })?;
//! println!("{}", report.summary_table());
//! // Answer API, weights mode: the collection's active adapter, None = base model.
//! let adapter = registry.active(collection)?;         // Option<Arc<LoraAdapter>>
//! GenerationRequest { messages, options, adapter: adapter.as_deref() }
//! ```
//!
//! Errors map to HTTP as: `InvalidConfig` 400, `Refused` 409, `NoData` 422,
//! `Cancelled` 499, the registry's errors (inside `Model`) as the generator's, the
//! rest 500.

pub mod checkpoint;
pub mod continuation;
pub mod data;
pub mod distill;
mod error;
pub mod gate;
pub mod lora;
pub mod optim;
pub mod prefix;
pub mod promote;
pub mod synth;
#[cfg(test)]
mod testing;
pub mod token_weights;
pub mod train;
pub mod util;

pub use data::{QaPair, Sequence, TrainableModel};
pub use error::{Error, Result};
pub use gate::{GateConfig, GateDecision, HeldOutQuestion};
pub use lora::{AdapterVars, LoraConfig};
pub use prefix::PrefixConfig;
pub use promote::{PromoteOptions, PromotionReport};
pub use train::{train, TrainConfig, TrainOutcome, TrainProgress};
