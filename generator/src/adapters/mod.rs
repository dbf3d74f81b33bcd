//! LoRA adapters where serving needs them: named, versioned objects per collection in
//! a registry, one active version per collection, swapped without dropping requests.
//!
//! Why here and not in the trainer: answering with an adapter means loading the active
//! one and handing it to [`crate::LanguageModel::generate`]; a server that only answers
//! should need the model crate, not the training pipeline. The trainer writes adapters
//! ([`peft::save`], [`Manifest::save`]) and registers them ([`AdapterRegistry::register`]).
//!
//! - [`registry`]: [`AdapterRegistry`] (register, list, activate, rollback, deactivate,
//!   delete, the active adapter as an `Arc`) and [`AdapterVersion`].
//! - [`peft`]: the adapter files in PEFT's format (`adapter_model.safetensors`,
//!   `adapter_config.json`), readable by Hugging Face `peft`; [`peft_prefix`]: the same
//!   for prefix adapters (PEFT's prefix tuning, `prompt_embeddings`).
//! - [`manifest`]: what a version was made from (base model sha256, documents, metrics).
//! - [`files`]: atomic writes and JSON files.
//! - [`RegistryError`] (`error.rs`): not found, refused, bad name, unreadable file.
//!
//! On disk (under the database's `<data>/adapters`): `<collection>/v0001/` (PEFT files,
//! `manifest.json`, loss curve) and `<collection>/state.json`.

mod error;
pub mod files;
pub mod manifest;
pub mod peft;
pub mod peft_prefix;
pub mod registry;

pub use error::RegistryError;
pub use manifest::{BaseModel, Manifest};
pub use registry::{AdapterRegistry, AdapterVersion};
