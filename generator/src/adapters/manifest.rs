//! What an adapter was made from, stored beside its PEFT files as `manifest.json`.
//!
//! Why: an adapter is only valid on the exact base weights it was trained on (the
//! sha256 is checked before it is served), and a person deciding whether to keep,
//! activate or roll back a version needs to see which documents, which data strategy
//! and which seed produced it and what the gate measured.
//!
//! It lives with the registry, not the trainer, because serving reads it (the base-model
//! check, the version listing); the trainer only fills it in. The training configuration
//! is kept as the JSON the trainer wrote, so serving needs no training types.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::adapters::files::{read_json, write_json};
use crate::adapters::RegistryError;
use crate::error::Result;

/// File name of the manifest inside an adapter directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The base model an adapter belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    /// Name (GGUF `general.name` or file name).
    pub name: String,
    /// sha256 of the GGUF file.
    pub sha256: String,
}

/// Provenance and metrics of one adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The collection whose documents were learned.
    pub collection: String,
    /// The cluster of the collection (a topic group of documents), when one was chosen.
    pub cluster: Option<String>,
    /// Ids of the documents learned.
    pub document_ids: Vec<String>,
    /// Each learned document's write sequence when its text was read for training: a
    /// later write or delete of the document makes the adapter stale for it (the
    /// database compares with the document's current sequence). Empty for adapters
    /// made before it was recorded.
    #[serde(default)]
    pub document_seqs: BTreeMap<String, u64>,
    /// The version this one's training started from (continued training on the
    /// documents changed since that version learned them), None when trained from
    /// scratch. Its learned documents are carried over, with the retrained ones' new
    /// sequences, into `document_ids` and `document_seqs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continued_from: Option<u32>,
    /// The base model.
    pub base_model: BaseModel,
    /// Synthetic-data strategies used ("self_qa", "rephrase", "cloze").
    pub data_strategy: Vec<String>,
    /// Training pairs / texts after filtering, per strategy.
    pub data_counts: BTreeMap<String, usize>,
    /// Seed of synthesis and training.
    pub seed: u64,
    /// The training configuration (the trainer's `TrainConfig`, as JSON).
    pub train: serde_json::Value,
    /// Measurements (final loss, accuracy, perplexity, tokens/s...).
    pub metrics: BTreeMap<String, f64>,
    /// Seconds since the Unix epoch when it was made.
    pub created_unix: u64,
}

impl Manifest {
    /// Writes `manifest.json` into `dir`, atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(MANIFEST_FILE), self)
    }

    /// Reads `manifest.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        read_json(&path, |e| {
            RegistryError::corrupt("adapter manifest", &path, e)
        })
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
