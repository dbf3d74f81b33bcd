//! The llama architecture (SmolLM2 is one), our own model file on candle's `QMatMul`.
//!
//! Why not `candle_transformers::models::quantized_llama`: it keeps the KV cache inside
//! the weights (so one loaded model serves one conversation at a time), caps positions
//! at 4,096 (SmolLM2's window is 8,192), and has no place for adapters. Here the weights
//! are immutable and shared (`&self`), each call brings its own [`KvCache`], every
//! projection carries the LoRA hook ([`crate::lora`]), and the kernels can be switched to
//! differentiable ones for training, so the trainer reuses this file instead of copying it.
//!
//! Layout conventions are llama.cpp's: tensor names `blk.N.attn_q.weight` ..., Q and K
//! rows permuted for the interleaved rotary embedding (so `rope_i`), and the output head
//! tied to the token embedding when the file has no `output.weight`.
//!
//! Files: `config.rs` ([`LlamaConfig`], the shape from GGUF metadata), `attention.rs`
//! (grouped-query attention, causal mask, rotary tables), this file (the weights, the
//! kernels switch, the forward passes).

mod attention;
mod config;

use std::collections::HashMap;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Tensor, D};

use self::attention::{causal_mask, rope_tables, Attention};
pub use self::config::LlamaConfig;
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::linear::{AdaptedLinear, QuantizedLinear};
use crate::lora::{LoraAdapter, LoraTarget};

/// Most tokens one forward pass processes at once; longer inputs run in chunks.
pub const PREFILL_CHUNK: usize = 256;

/// Which implementations of norm, rotary embedding and softmax the forward pass uses.
///
/// candle 0.11.1's fused CPU kernels (`rms_norm`, `rope_i`, `softmax_last_dim`) are fast
/// but drop gradients; their composed forms pass them. Inference uses the fast ones;
/// training LoRA pairs needs the differentiable ones (same results within float error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Fused kernels: inference.
    #[default]
    Fast,
    /// Composed ops that propagate gradients: training.
    Differentiable,
}

impl Kernels {
    fn rms_norm(self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        Ok(match self {
            Kernels::Fast => candle_nn::ops::rms_norm(x, weight, eps as f32)?,
            Kernels::Differentiable => candle_nn::ops::rms_norm_slow(x, weight, eps as f32)?,
        })
    }

    fn rope(self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Kernels::Fast => candle_nn::rotary_emb::rope_i(&x.contiguous()?, cos, sin)?,
            Kernels::Differentiable => candle_nn::rotary_emb::rope_i_slow(x, cos, sin)?,
        })
    }

    fn softmax(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Kernels::Fast => candle_nn::ops::softmax_last_dim(x)?,
            Kernels::Differentiable => candle_nn::ops::softmax(x, D::Minus1)?,
        })
    }
}

struct Mlp {
    gate: AdaptedLinear,
    up: AdaptedLinear,
    down: AdaptedLinear,
}

struct Block {
    attn_norm: Tensor,
    attn: Attention,
    ffn_norm: Tensor,
    mlp: Mlp,
}

/// A llama model: immutable weights, shareable across threads; state lives in [`KvCache`].
pub struct Llama {
    cfg: LlamaConfig,
    embedding: QMatMul,
    blocks: Vec<Block>,
    norm: Tensor,
    head: QuantizedLinear,
    cos: Tensor,
    sin: Tensor,
    kernels: Kernels,
    prefill_chunk: usize,
    device: Device,
}

/// Takes the named tensors out of a GGUF file (or any name -> QTensor map).
pub(crate) struct TensorSource {
    tensors: HashMap<String, QTensor>,
}

impl TensorSource {
    pub(crate) fn new(tensors: HashMap<String, QTensor>) -> Self {
        Self { tensors }
    }

    fn take(&mut self, name: &str) -> std::result::Result<QTensor, String> {
        self.tensors
            .remove(name)
            .ok_or_else(|| format!("tensor {name} is missing"))
    }

    fn vector(&mut self, name: &str, device: &Device) -> std::result::Result<Tensor, String> {
        self.take(name)?
            .dequantize(device)
            .map_err(|e| format!("{name}: {e}"))
    }
}

impl Llama {
    /// Builds the model from llama.cpp-named tensors. Errors are plain strings that the
    /// caller wraps with the file they came from.
    pub(crate) fn load(
        mut src: TensorSource,
        cfg: &LlamaConfig,
        device: &Device,
    ) -> std::result::Result<Self, String> {
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for layer in 0..cfg.n_layer {
            let mut linear = |name: &str, target: LoraTarget| -> std::result::Result<_, String> {
                let full = format!("blk.{layer}.{name}.weight");
                let (d_in, d_out) = target.dims(cfg);
                let w = src.take(&full)?;
                if w.shape().dims() != [d_out, d_in] {
                    return Err(format!(
                        "{full} has shape {:?}, expected ({d_out}, {d_in})",
                        w.shape()
                    ));
                }
                AdaptedLinear::new(w, layer, target).map_err(|e| format!("{full}: {e}"))
            };
            let attn = Attention {
                q: linear("attn_q", LoraTarget::Q)?,
                k: linear("attn_k", LoraTarget::K)?,
                v: linear("attn_v", LoraTarget::V)?,
                o: linear("attn_output", LoraTarget::O)?,
            };
            let mlp = Mlp {
                gate: linear("ffn_gate", LoraTarget::Gate)?,
                up: linear("ffn_up", LoraTarget::Up)?,
                down: linear("ffn_down", LoraTarget::Down)?,
            };
            blocks.push(Block {
                attn_norm: src.vector(&format!("blk.{layer}.attn_norm.weight"), device)?,
                attn,
                ffn_norm: src.vector(&format!("blk.{layer}.ffn_norm.weight"), device)?,
                mlp,
            });
        }
        let embedding = src.take("token_embd.weight")?;
        if embedding.shape().dims() != [cfg.vocab_size, cfg.n_embd] {
            return Err(format!(
                "token_embd.weight has shape {:?}, expected ({}, {})",
                embedding.shape(),
                cfg.vocab_size,
                cfg.n_embd
            ));
        }
        let head = match src.take("output.weight") {
            Ok(w) => w,
            // Tied embeddings: the head multiplies by the embedding matrix.
            Err(_) => QTensor::quantize(
                &embedding.dequantize(device).map_err(|e| e.to_string())?,
                embedding.dtype(),
            )
            .map_err(|e| format!("output head: {e}"))?,
        };
        let head = QuantizedLinear::new(head).map_err(|e| format!("output head: {e}"))?;
        let embedding = QMatMul::from_qtensor(embedding).map_err(|e| format!("token_embd: {e}"))?;
        let norm = src.vector("output_norm.weight", device)?;
        let (cos, sin) = rope_tables(cfg, device).map_err(|e| e.to_string())?;
        Ok(Self {
            cfg: cfg.clone(),
            embedding,
            blocks,
            norm,
            head,
            cos,
            sin,
            kernels: Kernels::Fast,
            prefill_chunk: PREFILL_CHUNK,
            device: device.clone(),
        })
    }

    /// The kernels in use (training needs [`Kernels::Differentiable`]).
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Keeps a dequantized copy (in `dtype`) of every block matrix for multi-token
    /// passes (prompt processing), where a dense GEMM is several times faster than
    /// candle's quantized dot products; single-token decoding keeps the quantized
    /// weights, which read 4x less memory per token than F32.
    pub fn with_dense_prefill(mut self, dtype: DType) -> Result<Self> {
        for lin in self.linears_mut() {
            lin.set_dense(dtype)?;
        }
        Ok(self)
    }

    /// Pads Q8_0 matrices (and the output head) whose input size is not a multiple of
    /// 256 so that candle's AVX-512 VNNI kernel runs them (see `linear.rs`): about 15%
    /// faster decoding on such CPUs, with activations quantized per 256 values instead
    /// of per 32. A no-op on other CPUs and other weight types.
    pub fn with_vnni_padding(mut self) -> Result<Self> {
        for lin in self.linears_mut() {
            lin.pad_for_vnni()?;
        }
        self.head.pad_for_vnni()?;
        Ok(self)
    }

    /// Every block projection.
    fn linears_mut(&mut self) -> impl Iterator<Item = &mut AdaptedLinear> {
        self.blocks.iter_mut().flat_map(|b| {
            [
                &mut b.attn.q,
                &mut b.attn.k,
                &mut b.attn.v,
                &mut b.attn.o,
                &mut b.mlp.gate,
                &mut b.mlp.up,
                &mut b.mlp.down,
            ]
        })
    }

    /// Most tokens one forward pass processes (longer inputs run in chunks of this size).
    pub fn prefill_chunk(&self) -> usize {
        self.prefill_chunk
    }

    /// Sets how many tokens one forward pass processes at most (default [`PREFILL_CHUNK`]).
    pub fn with_prefill_chunk(mut self, tokens: usize) -> Self {
        self.prefill_chunk = tokens.max(1);
        self
    }

    /// Switches norm, rope and softmax implementations (see [`Kernels`]).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        let train = kernels == Kernels::Differentiable;
        for lin in self.linears_mut() {
            lin.set_frozen(train);
        }
        self.head.set_frozen(train);
        self
    }

    /// Runs `tokens` at the positions after those already in `cache`, appends their keys
    /// and values to it, and returns the logits of the last token, shape `(vocab)`.
    /// `adapter` adds its LoRA deltas on top of the frozen weights.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let hidden = self.forward_hidden(tokens, cache, adapter, false)?;
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
        Ok(self.head.forward(&last)?.flatten_all()?)
    }

    /// Like [`Llama::forward`], but returns the logits of every position, `(seq, vocab)`:
    /// what training and scoring need.
    pub fn forward_all(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let hidden = self.forward_hidden(tokens, cache, adapter, true)?;
        Ok(self.head.forward(&hidden)?.squeeze(0)?)
    }

    /// Like [`Llama::forward_all`], but the output head runs only on positions `from..`
    /// (`(seq - from, vocab)`): training needs logits only where there are targets (the
    /// answer of a question-answer pair), and the head is a fifth of SmolLM2's compute.
    pub fn forward_from(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
        from: usize,
    ) -> Result<Tensor> {
        if from >= tokens.len() {
            return Err(Error::InvalidOptions(format!(
                "logits from position {from} of a {}-token input",
                tokens.len()
            )));
        }
        let hidden = self.forward_hidden(tokens, cache, adapter, true)?;
        let rows = hidden.narrow(1, from, tokens.len() - from)?;
        Ok(self.head.forward(&rows)?.squeeze(0)?)
    }

    /// Mean negative log-likelihood of `tokens[from..]`, each predicted from the tokens
    /// before it (`from >= 1`), as a scalar tensor: the training loss (it carries
    /// gradients under [`Kernels::Differentiable`]) and how natural a text reads to the
    /// model (the inverter's language prior). Runs in a fresh cache.
    pub fn next_token_loss(
        &self,
        tokens: &[u32],
        from: usize,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        if from == 0 || from >= tokens.len() {
            return Err(Error::InvalidOptions(format!(
                "a loss from token {from} of a {}-token sequence: no token to predict",
                tokens.len()
            )));
        }
        let mut cache = KvCache::new(&self.cfg, tokens.len());
        // Logits only where a target is predicted (position t predicts token t + 1).
        let rows = self.forward_from(&tokens[..tokens.len() - 1], &mut cache, adapter, from - 1)?;
        let targets = Tensor::new(&tokens[from..], rows.device())?;
        Ok(candle_nn::loss::cross_entropy(&rows, &targets)?)
    }

    /// The final normed hidden states, `(1, seq, n_embd)` (only the last chunk's rows
    /// unless `all_rows`).
    ///
    /// Long inputs run in chunks of [`PREFILL_CHUNK`] tokens: causal attention then skips
    /// the upper triangle beyond each chunk (half the attention work of one pass) and the
    /// score matrices stay small (9 heads x 256 x 8,192 floats at most, not 8,192²).
    fn forward_hidden(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
        all_rows: bool,
    ) -> Result<Tensor> {
        if tokens.is_empty() {
            return Err(Error::InvalidOptions("no tokens to run".into()));
        }
        if let Some(adapter) = adapter {
            if !adapter.fits(&self.cfg) {
                return Err(Error::AdapterMismatch {
                    adapter: adapter.name().to_string(),
                    reason: "it was built for a model of another shape".into(),
                });
            }
            // A prefix adapter's keys and values come first, at positions 0..P.
            if let (Some(prefix), true) = (adapter.prefix(), cache.is_empty()) {
                cache.seed(prefix, self.kernels)?;
            }
        }
        let (seq, pos) = (tokens.len(), cache.len);
        if pos + seq > cache.capacity || pos + seq > self.cfg.context_length {
            return Err(Error::PromptTooLong {
                prompt_tokens: pos + seq,
                context_window: cache.capacity.min(self.cfg.context_length),
            });
        }
        let mut outputs = Vec::new();
        for chunk in tokens.chunks(self.prefill_chunk) {
            let hidden = self.forward_chunk(chunk, cache, adapter)?;
            if !all_rows {
                outputs.clear();
            }
            outputs.push(hidden);
        }
        Ok(Tensor::cat(&outputs, 1)?)
    }

    /// One chunk of [`Llama::forward_hidden`] (its checks already done).
    fn forward_chunk(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let (seq, pos) = (tokens.len(), cache.len);
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut x = self.embedding.embedding(&ids)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let mask = causal_mask(seq, pos, self.cfg.n_head / self.cfg.n_kv_head, &self.device)?;
        for (block, layer_cache) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = self
                .kernels
                .rms_norm(&x, &block.attn_norm, self.cfg.rms_eps)?;
            let h = self.attention(
                &block.attn,
                &h,
                &cos,
                &sin,
                mask.as_ref(),
                layer_cache,
                adapter,
            )?;
            x = (x + h)?;
            let h = self
                .kernels
                .rms_norm(&x, &block.ffn_norm, self.cfg.rms_eps)?;
            let gate = block.mlp.gate.forward(&h, adapter)?;
            let up = block.mlp.up.forward(&h, adapter)?;
            let h = block
                .mlp
                .down
                .forward(&(candle_nn::ops::silu(&gate)? * up)?, adapter)?;
            x = (x + h)?;
        }
        cache.len += seq;
        self.kernels.rms_norm(&x, &self.norm, self.cfg.rms_eps)
    }
}

/// Builds a llama model from a GGUF file read into memory.
pub fn load_file(file: crate::gguf::GgufFile, device: &Device) -> Result<Llama> {
    let cfg =
        LlamaConfig::from_metadata(&file.metadata).map_err(|r| Error::invalid(&file.path, r))?;
    Llama::load(TensorSource::new(file.tensors), &cfg, device)
        .map_err(|r| Error::invalid(&file.path, r))
}

#[cfg(test)]
mod tests {
    //! Mechanics on a tiny random model (the real model is tested in tests/smollm2.rs).
    use super::*;
    use crate::testing::{max_diff, tiny_config, tiny_model, tiny_weights};
    use candle_core::quantized::GgmlDType;

    const TOKENS: [u32; 7] = [3, 17, 5, 39, 0, 22, 8];

    #[test]
    fn cached_decoding_matches_one_full_pass() {
        let cfg = tiny_config();
        let model = tiny_model(&cfg, &tiny_weights(&cfg), GgmlDType::F32);
        let mut cache = KvCache::new(&cfg, TOKENS.len());
        let all = model.forward_all(&TOKENS, &mut cache, None).unwrap();
        let mut cache = KvCache::new(&cfg, TOKENS.len());
        // A prefill of three, then one token at a time.
        let first = model.forward(&TOKENS[..3], &mut cache, None).unwrap();
        assert!(max_diff(&first, &all.get(2).unwrap()) < 1e-4);
        for (i, &t) in TOKENS.iter().enumerate().skip(3) {
            let step = model.forward(&[t], &mut cache, None).unwrap();
            assert!(max_diff(&step, &all.get(i).unwrap()) < 1e-4, "position {i}");
        }
        assert_eq!(cache.len(), TOKENS.len());
        let err = model.forward(&[1], &mut cache, None).unwrap_err();
        assert!(matches!(err, Error::PromptTooLong { .. }), "{err}");

        // Chunked prefill (2 tokens per pass) gives the same logits as one pass.
        let chunked = model.with_prefill_chunk(2);
        let all_chunked = chunked
            .forward_all(&TOKENS, &mut KvCache::new(&cfg, 8), None)
            .unwrap();
        assert!(max_diff(&all, &all_chunked) < 1e-4);
        let last = chunked
            .forward(&TOKENS, &mut KvCache::new(&cfg, 8), None)
            .unwrap();
        assert!(max_diff(&last, &all.get(TOKENS.len() - 1).unwrap()) < 1e-4);
    }

    #[test]
    fn differentiable_kernels_and_dense_prefill_give_the_same_logits() {
        let cfg = tiny_config();
        let weights = tiny_weights(&cfg);
        let fast = tiny_model(&cfg, &weights, GgmlDType::F32);
        let slow = tiny_model(&cfg, &weights, GgmlDType::F32).with_kernels(Kernels::Differentiable);
        let a = fast
            .forward_all(&TOKENS, &mut KvCache::new(&cfg, 8), None)
            .unwrap();
        let b = slow
            .forward_all(&TOKENS, &mut KvCache::new(&cfg, 8), None)
            .unwrap();
        assert!(max_diff(&a, &b) < 1e-4);

        // The dense prefill path multiplies by exactly the dequantized Q8_0 weights.
        let dense = tiny_model(&cfg, &weights, GgmlDType::Q8_0)
            .with_dense_prefill(DType::F32)
            .unwrap();
        let rounded: HashMap<String, Tensor> = weights
            .iter()
            .map(|(k, v)| match v.rank() {
                1 => (k.clone(), v.clone()),
                _ => (
                    k.clone(),
                    QTensor::quantize(v, GgmlDType::Q8_0)
                        .unwrap()
                        .dequantize(&Device::Cpu)
                        .unwrap(),
                ),
            })
            .collect();
        let reference = tiny_model(&cfg, &rounded, GgmlDType::F32);
        // (Hidden states: the output head stays quantized, it sees one row per answer token.)
        let d = dense
            .forward_hidden(&TOKENS, &mut KvCache::new(&cfg, 8), None, true)
            .unwrap();
        let r = reference
            .forward_hidden(&TOKENS, &mut KvCache::new(&cfg, 8), None, true)
            .unwrap();
        assert!(max_diff(&d, &r) < 1e-4, "{}", max_diff(&d, &r));
    }
}
