//! [`GgufChatModel`]: a llama-architecture chat GGUF on candle's CPU backend, the
//! [`LanguageModel`] Engram ships (SmolLM2-135M-Instruct by default).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use engram_models::ModelId;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{Error, Result};
use crate::gguf::{self, GgufFile};
use crate::kv_cache::KvCache;
use crate::llama::{Kernels, Llama};
use crate::lora::LoraAdapter;
use crate::model::{
    FinishReason, Generation, GenerationOptions, GenerationRequest, Interrupt, LanguageModel,
    ModelInfo, Timing, Usage,
};
use crate::stream::Utf8Stream;
use crate::tokenizer::GgufTokenizer;

/// How to hold the weights in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Convert the matrices to this type once (cached next to the file); None keeps the
    /// file's own types.
    pub weights: Option<GgmlDType>,
    /// Also keep dense copies of the block matrices in this type for prompt processing
    /// (see [`Llama::with_dense_prefill`]); None uses the quantized weights throughout.
    pub dense_prefill: Option<DType>,
    /// Pad Q8_0 matrices for candle's AVX-512 VNNI kernel (see
    /// [`Llama::with_vnni_padding`]); ignored on CPUs without it.
    pub vnni_padding: bool,
}

impl Default for LoadOptions {
    /// Q8_0 for decoding (candle has SIMD kernels for it; the pinned file's Q4_1 has
    /// none) plus F32 copies for prompt processing: measured fastest on both phases,
    /// at the price of memory (peak RSS 0.94 GB for SmolLM2-135M, 0.51 GB without the
    /// F32 copies). See the
    /// generator benchmark in benches/README.md for the numbers.
    fn default() -> Self {
        Self {
            weights: Some(GgmlDType::Q8_0),
            dense_prefill: Some(DType::F32),
            vnni_padding: true,
        }
    }
}

/// A chat model read from a GGUF file: weights, tokenizer and template from one file.
pub struct GgufChatModel {
    info: ModelInfo,
    model: Llama,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    /// Tokens that end the answer: `<|im_end|>`, the end-of-text token and the GGUF's eos.
    stop_ids: Vec<u32>,
}

impl GgufChatModel {
    /// SmolLM2-135M-Instruct from the model cache (fetched on first use), default options.
    pub fn load_default() -> Result<Self> {
        Self::load(&Self::default_path()?, LoadOptions::default())
    }

    /// The path of the default model's GGUF file in the model cache (fetched on first
    /// use): what adapters are trained for and what manifests fingerprint.
    pub fn default_path() -> Result<PathBuf> {
        let dir = engram_models::ensure(ModelId::SmolLm2_135mInstruct)?;
        let file = ModelId::SmolLm2_135mInstruct
            .spec()
            .file_names()
            .next()
            .unwrap_or_default();
        Ok(dir.join(file))
    }

    /// Loads a llama-architecture chat GGUF.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Self> {
        let device = Device::Cpu;
        let file = match options.weights {
            Some(format) => gguf::read_as(path, format, &device)?,
            None => GgufFile::read(path, &device)?,
        };
        Self::from_file(file, options)
    }

    /// Loads a GGUF for training LoRA adapters: every matrix dequantized to F32 in memory
    /// (exact: dequantization only expands the stored values; nothing is cached on disk)
    /// and the differentiable kernels ([`Kernels::Differentiable`]), so gradients flow
    /// through the frozen weights into the adapter. Quantized matmuls have no backward
    /// pass in candle, which is why the inference model cannot be trained as it is.
    pub fn load_for_training(path: &Path) -> Result<Self> {
        let device = Device::Cpu;
        let mut file = GgufFile::read(path, &device)?;
        file.requantize(GgmlDType::F32, &device)?;
        let mut model = Self::from_file(
            file,
            LoadOptions {
                weights: Some(GgmlDType::F32),
                dense_prefill: None,
                vnni_padding: false,
            },
        )?;
        model.model = model.model.with_kernels(Kernels::Differentiable);
        model.info.weights = "f32 (differentiable)".into();
        Ok(model)
    }

    fn from_file(file: GgufFile, options: LoadOptions) -> Result<Self> {
        let device = Device::Cpu;
        let path = file.path.clone();
        let invalid = |reason: String| Error::invalid(&path, reason);
        let tokenizer = GgufTokenizer::from_metadata(&file.metadata).map_err(invalid)?;
        let template = file
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| invalid("metadata key tokenizer.chat_template is missing".into()))?;
        let template = ChatTemplate::from_template(template, &tokenizer).map_err(invalid)?;
        let mut stop_ids: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.special(t))
            .collect();
        if let Some(eos) = file
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
        {
            stop_ids.push(eos);
        }
        let name = file
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| path.display().to_string());
        let mut model = crate::llama::load_file(file, &device)?;
        if let Some(dtype) = options.dense_prefill {
            model = model.with_dense_prefill(dtype)?;
        }
        if options.vnni_padding {
            model = model.with_vnni_padding()?;
        }
        if tokenizer.vocab_size() != model.config().vocab_size {
            return Err(invalid(format!(
                "{} tokens in the vocabulary but {} embedding rows",
                tokenizer.vocab_size(),
                model.config().vocab_size
            )));
        }
        let weights = options
            .weights
            .map(gguf::format_name)
            .unwrap_or_else(|| "as stored".into());
        let weights = match options.dense_prefill {
            Some(dtype) => format!("{weights} (decode), {dtype:?} (prefill)").to_lowercase(),
            None => weights,
        };
        Ok(Self {
            info: ModelInfo {
                name,
                context_window: model.config().context_length,
                weights,
            },
            model,
            tokenizer,
            template,
            stop_ids,
        })
    }

    /// The tokenizer (token counts, pinned-id tests).
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// The chat template (rendering for logs).
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The underlying network (adapters are built for its config; training runs it).
    pub fn llama(&self) -> &Llama {
        &self.model
    }

    /// The token ids that end an answer (`<|im_end|>`, end of text, the GGUF's eos).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Generates from prompt token ids (the chat template already applied).
    pub fn generate_ids(
        &self,
        prompt: &[u32],
        request: &GenerationRequest<'_>,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let options = request.options;
        options.validate()?;
        // A prefix adapter's positions come out of the window.
        let window = self
            .info
            .context_window
            .saturating_sub(request.adapter.map_or(0, LoraAdapter::prefix_len));
        if prompt.is_empty() {
            return Err(Error::InvalidOptions("the prompt has no tokens".into()));
        }
        if prompt.len() >= window {
            return Err(Error::PromptTooLong {
                prompt_tokens: prompt.len(),
                context_window: window,
            });
        }
        let budget = options.max_tokens.min(window - prompt.len());
        // Room for the prompt now; the cache grows with the answer (see kv_cache.rs).
        let mut cache =
            KvCache::new(self.model.config(), prompt.len() + budget).with_reserve(prompt.len());
        let mut sampler = LogitsProcessor::from_sampling(options.seed, sampling(options));
        let mut stream = Utf8Stream::default();
        let mut text = String::new();
        let mut emit = |piece: String, text: &mut String| {
            text.push_str(&piece);
            piece.is_empty() || on_text(&piece).is_continue()
        };
        let interrupted = || request.interrupt.and_then(Interrupt::check);

        // The prompt in chunks, so an interrupt is seen between them.
        let start = Instant::now();
        let mut logits = None;
        let mut stopped = None;
        for chunk in prompt.chunks(self.model.prefill_chunk()) {
            stopped = interrupted();
            if stopped.is_some() {
                break;
            }
            logits = Some(self.model.forward(chunk, &mut cache, request.adapter)?);
        }
        let first = match (&logits, stopped) {
            (Some(logits), None) => Some(sampler.sample(logits)?),
            _ => None,
        };
        let prefill = start.elapsed();
        let decode_start = Instant::now();
        let mut completion = 0;
        let mut passes = 0;
        let finish = match first {
            None => stopped.unwrap_or(FinishReason::Cancelled),
            Some(mut next) => loop {
                if self.stop_ids.contains(&next) {
                    break FinishReason::Stop;
                }
                completion += 1;
                if !emit(stream.push(self.tokenizer.token_bytes(next)), &mut text) {
                    break FinishReason::Cancelled;
                }
                if completion == budget {
                    break FinishReason::Length;
                }
                if let Some(reason) = interrupted() {
                    break reason;
                }
                let logits = self.model.forward(&[next], &mut cache, request.adapter)?;
                passes += 1;
                next = sampler.sample(&logits)?;
            },
        };
        if finish != FinishReason::Cancelled {
            emit(stream.finish(), &mut text);
        }
        let decode = decode_start.elapsed().as_secs_f64();
        Ok(Generation {
            text,
            finish_reason: finish,
            usage: Usage {
                prompt_tokens: prompt.len(),
                completion_tokens: completion,
            },
            timing: Timing {
                prefill_ms: prefill.as_secs_f64() * 1e3,
                decode_ms: decode * 1e3,
                decode_tokens_per_s: if passes > 0 {
                    passes as f64 / decode
                } else {
                    0.0
                },
            },
        })
    }
}

/// candle's sampler for `options`: argmax when greedy, nucleus when top_p < 1.
/// How the next token is drawn. A nucleus so small that f32 cannot hold it keeps
/// only the most likely token (candle's top-p compares in f32, and a p of 0 there
/// zeroes every weight and fails the draw): that is greedy decoding.
fn sampling(options: &GenerationOptions) -> Sampling {
    let temperature = options.temperature;
    if temperature <= 0.0 || options.top_p < MIN_TOP_P {
        Sampling::ArgMax
    } else if options.top_p < 1.0 {
        Sampling::TopP {
            p: options.top_p,
            temperature,
        }
    } else {
        Sampling::All { temperature }
    }
}

/// Below this, top-p sampling is greedy decoding (see [`sampling`]).
const MIN_TOP_P: f64 = 1e-6;

impl LanguageModel for GgufChatModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<usize> {
        Ok(self.template.encode(messages, &self.tokenizer)?.len())
    }

    fn generate(
        &self,
        request: &GenerationRequest<'_>,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let prompt = self.template.encode(request.messages, &self.tokenizer)?;
        self.generate_ids(&prompt, request, on_text)
    }
}

#[cfg(test)]
mod sampling_tests {
    use super::*;

    #[test]
    fn a_vanishing_nucleus_is_greedy_not_an_empty_draw() {
        let options = |temperature, top_p| GenerationOptions {
            max_tokens: 1,
            temperature,
            top_p,
            seed: 0,
        };
        assert!(matches!(sampling(&options(2.0, 5e-324)), Sampling::ArgMax));
        assert!(matches!(sampling(&options(0.0, 0.5)), Sampling::ArgMax));
        assert!(matches!(
            sampling(&options(1.0, 0.5)),
            Sampling::TopP { .. }
        ));
        assert!(matches!(sampling(&options(1.0, 1.0)), Sampling::All { .. }));
        // The candle draw itself, on weights where f32 rounding mattered.
        let logits =
            candle_core::Tensor::new(&[1.0f32, 0.5, -3.0], &candle_core::Device::Cpu).unwrap();
        let mut draw = LogitsProcessor::from_sampling(0, sampling(&options(2.0, 5e-324)));
        assert_eq!(draw.sample(&logits).unwrap(), 0);
    }
}
