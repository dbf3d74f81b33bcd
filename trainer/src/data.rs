//! Training examples as token sequences, and the trainable model that tokenizes them.
//!
//! Why a loss boundary per sequence: a question-answer pair is trained in the ChatML
//! form the model answers in (`<|im_start|>user ... <|im_end|>\n<|im_start|>assistant\n`,
//! then the answer and `<|im_end|>`), with the loss only on the answer and its end marker, so the
//! adapter learns the facts, not to predict questions. Replay text (general passages that
//! limit forgetting) is trained as plain language modelling, loss on every token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engram_generator::{ChatMessage, GgufChatModel, Llama};
use serde::{Deserialize, Serialize};

use crate::distill::SoftTargets;
use crate::error::Result;

/// A question with its answer (synthetic or gold), as trained and evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaPair {
    /// The question, as a user would ask it (closed-book: no document in the prompt).
    pub question: String,
    /// The short answer the model should give.
    pub answer: String,
}

/// A token sequence with its loss boundary: tokens at positions `>= loss_from` are
/// predicted (trained on); earlier ones are context only. `loss_from >= 1`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sequence {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// First position whose token is a training target.
    pub loss_from: usize,
    /// A distilled example's teacher distributions at the targets: trained with the KL
    /// loss instead of cross-entropy on `tokens` (see [`crate::distill`]).
    pub soft: Option<Arc<SoftTargets>>,
}

impl Sequence {
    /// Tokens that carry a loss.
    pub fn target_count(&self) -> usize {
        self.tokens.len().saturating_sub(self.loss_from.max(1))
    }
}

/// The model to train: SmolLM2 (or any llama chat GGUF) with every matrix dequantized to
/// F32 and differentiable kernels (see `GgufChatModel::load_for_training`), plus the
/// tokenizer and chat template that turn pairs and texts into [`Sequence`]s.
pub struct TrainableModel {
    chat: GgufChatModel,
    path: PathBuf,
    sha256: String,
}

impl TrainableModel {
    /// Loads the GGUF at `path` for training and fingerprints it (sha256, for manifests).
    pub fn load(path: &Path) -> Result<Self> {
        let chat = GgufChatModel::load_for_training(path)?;
        Ok(Self {
            chat,
            path: path.to_path_buf(),
            sha256: sha256_file(path)?,
        })
    }

    /// The default model (SmolLM2-135M-Instruct from the model cache).
    pub fn load_default() -> Result<Self> {
        Self::load(&GgufChatModel::default_path()?)
    }

    /// The network in training mode.
    pub fn llama(&self) -> &Llama {
        self.chat.llama()
    }

    /// The whole chat model (tokenizer, template, generation).
    pub fn chat(&self) -> &GgufChatModel {
        &self.chat
    }

    /// The GGUF file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sha256 (lower-case hex) of the GGUF file: adapters record it so that one is never
    /// applied to a different base.
    pub fn base_sha256(&self) -> &str {
        &self.sha256
    }

    /// A pair in ChatML (default system prompt, user question, assistant answer,
    /// `<|im_end|>`), loss on the answer and the end marker. None when it does not fit
    /// in `max_len` tokens.
    pub fn encode_pair(&self, pair: &QaPair, max_len: usize) -> Result<Option<Sequence>> {
        let prompt = self
            .chat
            .template()
            .encode(&[ChatMessage::user(&pair.question)], self.chat.tokenizer())?;
        let mut tokens = prompt.clone();
        tokens.extend(self.chat.tokenizer().encode(pair.answer.trim())?);
        let end = self.chat.tokenizer().special("<|im_end|>").unwrap_or(0);
        tokens.push(end);
        if tokens.len() > max_len || tokens.len() == prompt.len() + 1 {
            return Ok(None);
        }
        Ok(Some(Sequence {
            tokens,
            loss_from: prompt.len(),
            soft: None,
        }))
    }

    /// Plain text cut into windows of at most `max_len` tokens, loss on every token
    /// after the first (replay and rephrased documents).
    pub fn encode_text(&self, text: &str, max_len: usize) -> Result<Vec<Sequence>> {
        let ids = self.chat.tokenizer().encode(text)?;
        Ok(windows(&ids, max_len))
    }
}

/// `ids` cut into windows of at most `max_len` (>= 2) tokens, loss from position 1.
pub fn windows(ids: &[u32], max_len: usize) -> Vec<Sequence> {
    ids.chunks(max_len.max(2))
        .filter(|c| c.len() >= 2)
        .map(|c| Sequence {
            tokens: c.to_vec(),
            loss_from: 1,
            soft: None,
        })
        .collect()
}

/// Lower-case hex sha256 of a file (the model cache's checksum).
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(engram_models::sha256_file(path).map_err(engram_generator::Error::from)?)
}

/// General text (32 Wikipedia passages from the end of Quoref, CC BY-SA) that no user
/// collection is expected to hold: replayed during training to limit forgetting, and
/// the text on which forgetting is measured. Returns (replay, forgetting) texts,
/// disjoint: 24 and 8 passages.
pub fn general_text() -> (Vec<String>, Vec<String>) {
    #[derive(Deserialize)]
    struct Row {
        text: String,
    }
    let mut texts: Vec<String> = include_str!("../data/general.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<Row>(l).ok())
        .map(|r| r.text)
        .collect();
    let eval = texts.split_off(texts.len().saturating_sub(8));
    (texts, eval)
}

#[cfg(test)]
mod general_text_tests {
    #[test]
    fn general_text_is_bundled_and_split_disjointly() {
        let (replay, eval) = super::general_text();
        assert_eq!((replay.len(), eval.len()), (24, 8));
        assert!(replay.iter().all(|t| !eval.contains(t) && t.len() > 200));
    }
}
