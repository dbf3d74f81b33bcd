//! Synthetic training data from a collection's documents.
//!
//! Why: a model does not learn facts from one pass over a passage; it learns them from
//! many question-answer pairs and restatements of it (the "self-study" recipe). Three
//! strategies, each selectable:
//! - [`Strategy::SelfQa`]: the language model, with the document in its context, writes
//!   question-answer pairs about it (`self_qa.rs`).
//! - [`Strategy::Rephrase`]: the model restates the document; trained as plain text.
//! - [`Strategy::Cloze`]: deterministic fill-in-the-blank questions over names, numbers
//!   and dates found by rules (`cloze.rs`), no model needed.
//! - [`Strategy::PersonQa`]: deterministic "who / whose / first or last name of the
//!   person who" questions about the people sentences are about (`person_qa.rs`).
//!
//! Pairs whose answer is not supported by the document (a word of the answer missing
//! from it) are dropped ([`supported`]). Output is appended to a JSONL file one document
//! and strategy at a time, each block closed by a `done` marker written in the same
//! write: a rerun after a crash skips finished blocks and redoes the unfinished one.
//! Randomness (sampling seeds) is derived from the seed and the document id.

mod cloze;
mod jsonl;
mod person_qa;
mod self_qa;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use engram_generator::LanguageModel;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use cloze::cloze_questions;
pub use person_qa::person_questions;
pub use self_qa::{parse_pairs, rephrase, self_qa};

/// A document of the collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Its id in the collection (recorded in the manifest).
    pub id: String,
    /// Its text.
    pub text: String,
    /// Its write sequence in the collection when the text was read (0: unknown),
    /// recorded in the manifest so a later change of the document marks the adapter
    /// stale for it.
    #[serde(default)]
    pub seq: u64,
}

/// A way of making training data from a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Question-answer pairs written by the language model.
    SelfQa,
    /// Restatements written by the language model (plain-text training).
    Rephrase,
    /// Rule-based fill-in-the-blank questions over names, numbers and dates.
    Cloze,
    /// Rule-based questions about the people sentences are about.
    PersonQa,
}

impl Strategy {
    /// Its name in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::SelfQa => "self_qa",
            Strategy::Rephrase => "rephrase",
            Strategy::Cloze => "cloze",
            Strategy::PersonQa => "person_qa",
        }
    }

    /// Parses `self_qa`, `rephrase` or `cloze`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Strategy::SelfQa,
            Strategy::Rephrase,
            Strategy::Cloze,
            Strategy::PersonQa,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// What one synthetic item teaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    /// A question and its answer (trained in ChatML, loss on the answer).
    Qa {
        /// The question.
        question: String,
        /// The answer.
        answer: String,
    },
    /// Text trained as plain language modelling.
    Text {
        /// The text.
        text: String,
    },
}

/// One synthetic training item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthItem {
    /// The document it was made from.
    pub doc_id: String,
    /// How.
    pub strategy: Strategy,
    /// What.
    #[serde(flatten)]
    pub content: Content,
}

/// How much data to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Strategies to run, in order.
    pub strategies: Vec<Strategy>,
    /// Model calls per document for self-QA (each asks for several pairs).
    pub self_qa_rounds: usize,
    /// Restatements per document.
    pub rephrasings: usize,
    /// Cloze questions per document, at most.
    pub cloze_per_doc: usize,
    /// Person questions per document, at most.
    pub person_per_doc: usize,
    /// Sampling temperature of the model calls.
    pub temperature: f64,
    /// Documents longer than this many characters are cut (the prompt must fit).
    pub max_doc_chars: usize,
    /// Seed of sampling and selection.
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            strategies: vec![Strategy::Cloze, Strategy::PersonQa, Strategy::SelfQa],
            self_qa_rounds: 2,
            rephrasings: 1,
            cloze_per_doc: 8,
            person_per_doc: 12,
            temperature: 0.7,
            max_doc_chars: 4000,
            seed: 0,
        }
    }
}

/// Reported after each document and strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthProgress {
    /// Blocks (document x strategy) finished, including those of an earlier run.
    pub done: usize,
    /// Blocks in all.
    pub total: usize,
    /// The document just finished.
    pub doc_id: String,
    /// Its strategy.
    pub strategy: Strategy,
    /// Items kept for it.
    pub kept: usize,
}

/// Counts per strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StrategyCounts {
    /// Items the strategy produced.
    pub generated: usize,
    /// Items that passed the support filter.
    pub kept: usize,
}

/// What synthesis produced (this run and earlier runs on the same file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthReport {
    /// Every kept item.
    pub items: Vec<SynthItem>,
    /// Counts per strategy name.
    pub counts: BTreeMap<String, StrategyCounts>,
    /// Blocks skipped because an earlier run finished them.
    pub resumed_blocks: usize,
}

/// Lower-case alphanumeric words.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// True when every word of `answer` occurs in `document` (and the answer has one): the
/// filter that drops pairs whose answer the model made up.
pub fn supported(answer: &str, document: &str) -> bool {
    let doc: std::collections::HashSet<String> = words(document).into_iter().collect();
    let ans = words(answer);
    !ans.is_empty() && ans.iter().all(|w| doc.contains(w))
}

/// Stable 64-bit hash of a string (FNV-1a): seeds per document, and ids that must
/// stay the same across runs.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Makes synthetic data for `documents` with `model` (used by the model-based
/// strategies only), appending to the JSONL file `out` and skipping what an earlier run
/// already wrote there. `progress` returning `Break` stops after the current block.
pub fn synthesize(
    documents: &[Document],
    model: &dyn LanguageModel,
    cfg: &SynthConfig,
    out: &Path,
    progress: &mut dyn FnMut(&SynthProgress) -> ControlFlow<()>,
) -> Result<SynthReport> {
    if cfg.strategies.is_empty() {
        return Err(Error::InvalidConfig(
            "no synthetic-data strategy selected".into(),
        ));
    }
    let mut file = jsonl::Journal::open(out)?;
    let mut report = SynthReport::default();
    let total = documents.len() * cfg.strategies.len();
    let mut done = 0;
    for doc in documents {
        let text: String = doc.text.chars().take(cfg.max_doc_chars).collect();
        for &strategy in &cfg.strategies {
            let counts = report.counts.entry(strategy.name().into()).or_default();
            if let Some((items, generated)) = file.finished(&doc.id, strategy) {
                counts.generated += generated;
                counts.kept += items.len();
                report.items.extend(items.iter().cloned());
                report.resumed_blocks += 1;
                done += 1;
                continue;
            }
            let seed = cfg.seed ^ hash_str(&doc.id) ^ ((strategy as u64) << 56);
            let produced: Vec<Content> = match strategy {
                Strategy::Cloze => cloze_questions(&text, cfg.cloze_per_doc, seed),
                Strategy::PersonQa => person_questions(&text, cfg.person_per_doc, seed),
                Strategy::SelfQa => {
                    self_qa(model, &text, cfg.self_qa_rounds, cfg.temperature, seed)?
                }
                Strategy::Rephrase => {
                    rephrase(model, &text, cfg.rephrasings, cfg.temperature, seed)?
                }
            };
            let generated = produced.len();
            let mut seen = std::collections::HashSet::new();
            let kept: Vec<SynthItem> = produced
                .into_iter()
                .filter(|c| match c {
                    Content::Qa { question, answer } => {
                        supported(answer, &text) && seen.insert(question.to_lowercase())
                    }
                    Content::Text { text } => text.chars().count() >= 40,
                })
                .map(|content| SynthItem {
                    doc_id: doc.id.clone(),
                    strategy,
                    content,
                })
                .collect();
            file.append_block(&doc.id, strategy, &kept, generated)?;
            counts.generated += generated;
            counts.kept += kept.len();
            done += 1;
            let update = SynthProgress {
                done,
                total,
                doc_id: doc.id.clone(),
                strategy,
                kept: kept.len(),
            };
            report.items.extend(kept);
            if progress(&update).is_break() {
                return Ok(report);
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;

/// The items of a synthetic-data journal (what `engram synth show` prints), in the
/// order they were written; a torn last line is ignored. Read-only.
pub fn read_journal(path: &Path) -> Result<Vec<SynthItem>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut items = Vec::new();
    for line in bytes[..complete].split(|&b| b == b'\n') {
        #[derive(Deserialize)]
        struct Tagged {
            #[serde(rename = "type")]
            kind: String,
        }
        let Ok(tag) = serde_json::from_slice::<Tagged>(line) else {
            continue;
        };
        if tag.kind == "item" {
            if let Ok(item) = serde_json::from_slice::<SynthItem>(line) {
                items.push(item);
            }
        }
    }
    Ok(items)
}
