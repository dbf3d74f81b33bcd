//! Tiny random llama models for the mechanics tests (the real model is tested in
//! tests/smollm2.rs).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::quantized::GgmlDType;
use engram_generator::{
    ChatMessage, FinishReason, Generation, GenerationRequest, Kernels, LanguageModel, Llama,
    ModelInfo, Timing, Usage,
};

use crate::data::Sequence;
use crate::{LoraConfig, TrainConfig};

pub(crate) use engram_generator::testing::{max_diff, tiny_config};

/// A seeded random F32 model in differentiable mode: the same weights on every call.
pub(crate) fn tiny_model() -> Llama {
    let cfg = tiny_config();
    let weights = engram_generator::testing::seeded_weights(&cfg, 12345);
    engram_generator::testing::tiny_model(&cfg, &weights, GgmlDType::F32)
        .with_kernels(Kernels::Differentiable)
}

/// Question-answer-like sequences: a "prompt" then an "answer" that depends on it.
pub(crate) fn tiny_examples() -> Vec<Sequence> {
    (0..6u32)
        .map(|i| Sequence {
            tokens: vec![1, 3 + i, 5 + i, 2, 20 + i, 30 + (i % 3), 2],
            loss_from: 4,
            soft: None,
        })
        .collect()
}

/// Replay text.
pub(crate) fn tiny_replay() -> Vec<Sequence> {
    (0..3u32)
        .map(|i| Sequence {
            tokens: (0..10).map(|j| (i * 7 + j * 3) % 40).collect(),
            loss_from: 1,
            soft: None,
        })
        .collect()
}

/// A language model double that answers from a script: it lets parsing, filtering,
/// resume and scoring logic be tested without the real model (tested in
/// tests/smollm2.rs).
pub(crate) struct Scripted {
    info: ModelInfo,
    reply: String,
    /// Text every prompt must contain (the document, when one is expected).
    expect: Option<&'static str>,
    pub calls: AtomicUsize,
}

impl Scripted {
    pub fn new(reply: &str) -> Self {
        Self {
            info: ModelInfo {
                name: "scripted".into(),
                context_window: 4096,
                weights: "none".into(),
            },
            reply: reply.into(),
            expect: None,
            calls: AtomicUsize::new(0),
        }
    }

    /// Asserts that every prompt's first message contains `text`.
    pub fn expecting(mut self, text: &'static str) -> Self {
        self.expect = Some(text);
        self
    }
}

impl LanguageModel for Scripted {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn prompt_tokens(&self, messages: &[ChatMessage]) -> engram_generator::Result<usize> {
        Ok(messages.iter().map(|m| m.content.len()).sum())
    }
    fn generate(
        &self,
        request: &GenerationRequest<'_>,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> engram_generator::Result<Generation> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(text) = self.expect {
            assert!(
                request.messages[0].content.contains(text),
                "the prompt holds {text}"
            );
        }
        let _ = on_text(&self.reply);
        Ok(Generation {
            text: self.reply.clone(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            timing: Timing::default(),
        })
    }
}

/// A small training run for the tiny model: rank 4, 12 steps of 2 sequences,
/// checkpoints every 3 steps, some dropout and replay.
pub(crate) fn tiny_train_config() -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.1,
            ..Default::default()
        },
        learning_rate: 1e-2,
        warmup_steps: 2,
        steps: 12,
        grad_accum: 2,
        replay_ratio: 0.3,
        checkpoint_every: 3,
        seed: 7,
        ..Default::default()
    }
}
