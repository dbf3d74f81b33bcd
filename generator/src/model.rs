//! The contract between Engram and a language model: read this file first.
//!
//! Callers (the answer endpoint, `/v1/chat/completions`, the CLI, benchmarks) hold an
//! `Arc<dyn LanguageModel>` and know nothing of GGUF, candle or tokenizers, so a larger
//! GGUF or a GPU backend is one more implementation, not a change to them. A model is
//! immutable once loaded and generation takes `&self` (each call owns its KV cache), so
//! one loaded model serves concurrent requests.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::chat::ChatMessage;
use crate::error::{Error, Result};
use crate::lora::LoraAdapter;

/// What a loaded model is, for callers that must plan around it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Human name, reported with every answer.
    pub name: String,
    /// Most tokens (prompt plus answer) one call can hold: refuse prompts that do not fit.
    pub context_window: usize,
    /// Storage of the weights actually used ("q8_0", "f32" ...).
    pub weights: String,
}

/// How to generate. Defaults: greedy, 256 tokens at most.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationOptions {
    /// Most tokens to generate (also cut by what is left of the context window).
    pub max_tokens: usize,
    /// 0 picks the most likely token every time (greedy, deterministic); higher values
    /// sample, flatter as it grows. At most 2.
    pub temperature: f64,
    /// Nucleus sampling: sample only among the most likely tokens whose probabilities
    /// add up to `top_p` (0 < top_p <= 1; 1 disables it). Ignored when greedy.
    pub top_p: f64,
    /// Seed of the sampler: the same seed, options and prompt give the same answer.
    pub seed: u64,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl GenerationOptions {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 {
            return Err(Error::InvalidOptions(
                "max_tokens must be at least 1".into(),
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(Error::InvalidOptions(format!(
                "temperature must be between 0 (greedy) and 2, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidOptions(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// One generation call.
#[derive(Debug, Clone, Copy)]
pub struct GenerationRequest<'a> {
    /// The conversation; the model's default system prompt is added when it has none.
    pub messages: &'a [ChatMessage],
    /// Sampling and length.
    pub options: &'a GenerationOptions,
    /// LoRA adapter applied on top of the base weights for this call only.
    pub adapter: Option<&'a LoraAdapter>,
    /// Stops the call from outside (a client gone, a deadline passed); None runs it to
    /// its end.
    pub interrupt: Option<&'a Interrupt>,
}

/// A way to stop a generation from another thread: a cancel flag (a server sets it when
/// the client goes away) and an optional deadline. The model checks it before every
/// prompt chunk and after every token, so a call stops within one forward pass.
#[derive(Debug, Default)]
pub struct Interrupt {
    cancelled: AtomicBool,
    deadline: Option<Instant>,
}

impl Interrupt {
    /// Not cancelled; times out at `deadline` if there is one.
    pub fn new(deadline: Option<Instant>) -> Self {
        Self {
            cancelled: AtomicBool::new(false),
            deadline,
        }
    }

    /// Asks the generation to stop ([`FinishReason::Cancelled`]).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Why the generation must stop now, if it must: cancelled, or past its deadline.
    pub fn check(&self) -> Option<FinishReason> {
        if self.cancelled.load(Ordering::Relaxed) {
            Some(FinishReason::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(FinishReason::Deadline)
        } else {
            None
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn (`<|im_end|>` or end of text).
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The caller's callback or [`Interrupt::cancel`] asked to stop (a client went away).
    Cancelled,
    /// The request's [`Interrupt`] deadline passed: the text is what was generated by then.
    Deadline,
}

/// Token counts, as OpenAI reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the stop token not counted).
    pub completion_tokens: usize,
}

/// Where the time went.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timing {
    /// Processing the prompt (and choosing the first token), milliseconds.
    pub prefill_ms: f64,
    /// Generating the rest, milliseconds.
    pub decode_ms: f64,
    /// Decode speed: forward passes after the prompt per second of `decode_ms`
    /// (0 when the answer was a single token).
    pub decode_tokens_per_s: f64,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The answer (the concatenation of every streamed piece).
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Timing.
    pub timing: Timing,
}

/// A chat language model. Object safe: callers hold `Arc<dyn LanguageModel>`.
pub trait LanguageModel: Send + Sync {
    /// Name, context window and weight storage.
    fn info(&self) -> &ModelInfo;

    /// Tokens the prompt for `messages` takes (template and default system prompt
    /// included): what a caller compares with the window before sending a corpus.
    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<usize>;

    /// Generates an answer, calling `on_text` with each new piece of text as soon as it
    /// is complete UTF-8 (pieces concatenate to `Generation::text`). Returning
    /// `ControlFlow::Break` from `on_text` stops generation (`FinishReason::Cancelled`),
    /// and so does the request's [`Interrupt`] (cancelled, or `Deadline`), even while the
    /// prompt is being processed (then with no text).
    /// Fails with [`Error::PromptTooLong`] when the prompt leaves no room in the window.
    fn generate(
        &self,
        request: &GenerationRequest<'_>,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation>;

    /// Generates without streaming.
    fn complete(&self, request: &GenerationRequest<'_>) -> Result<Generation> {
        self.generate(request, &mut |_| ControlFlow::Continue(()))
    }
}
