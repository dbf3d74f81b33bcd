//! A BERT encoder forward pass (inference only), written for the CPU and for access to
//! the per-token hidden states.
//!
//! Why not candle-transformers' `BertModel`: it runs every projection as a batched
//! matmul against a transposed weight, a generic softmax and a one-thread `erf` GELU, so
//! MiniLM embedded at less than half the speed of onnxruntime on two cores. Here the
//! query/key/value projections are fused into one matmul, weights are stored
//! pre-transposed so every matmul reads contiguous memory, batches are flattened to one
//! 2-D matmul per projection, and softmax/GELU run in place on every core
//! ([`crate::cpu_ops`]). It also returns the token states, which the contextual encoder
//! pools itself. Weight names are the Hugging Face BERT names.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use crate::cpu_gemm::{attention, linear};
use crate::cpu_ops::gelu_erf_;

/// The fields of a Hugging Face BERT `config.json` this forward pass reads. Sizes must be
/// given; the rest default as in Hugging Face's `BertConfig`. Activation and position
/// embedding kind are kept as written so [`Bert::load`] can refuse what it does not run
/// with a clear message. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Only `"gelu"` (exact, erf-based) is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `"absolute"` is supported.
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

fn default_hidden_act() -> String {
    "gelu".to_string()
}

fn default_max_position_embeddings() -> usize {
    512
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_position_embedding_type() -> String {
    "absolute".to_string()
}

impl Default for Config {
    /// BERT-base, as Hugging Face's `BertConfig()` (tests override the sizes).
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: default_hidden_act(),
            max_position_embeddings: default_max_position_embeddings(),
            type_vocab_size: default_type_vocab_size(),
            layer_norm_eps: default_layer_norm_eps(),
            pad_token_id: 0,
            position_embedding_type: default_position_embedding_type(),
        }
    }
}

/// A linear layer with its weight stored as `[in, out]`, contiguous.
struct Dense {
    weight_t: Tensor,
    bias: Tensor,
}

impl Dense {
    fn from_parts(weight: &Tensor, bias: Tensor) -> Result<Self> {
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<Self> {
        let weight = vb.get((outputs, inputs), "weight")?;
        Self::from_parts(&weight, vb.get(outputs, "bias")?)
    }

    /// `x` is `[tokens, in]`; returns `[tokens, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.weight_t, &self.bias)
    }
}

/// One transformer layer (post-norm, as in BERT).
struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    up: Dense,
    down: Dense,
    output_norm: LayerNorm,
    heads: usize,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let attn = vb.pp("attention");
        let own = attn.pp("self");
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for name in ["query", "key", "value"] {
            weights.push(own.pp(name).get((h, h), "weight")?);
            biases.push(own.pp(name).get(h, "bias")?);
        }
        let qkv = Dense::from_parts(&Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?)?;
        let norm = |vb: VarBuilder| candle_nn::layer_norm(h, cfg.layer_norm_eps, vb);
        Ok(Self {
            qkv,
            attention_out: Dense::load(attn.pp("output").pp("dense"), h, h)?,
            attention_norm: norm(attn.pp("output").pp("LayerNorm"))?,
            up: Dense::load(vb.pp("intermediate").pp("dense"), h, cfg.intermediate_size)?,
            down: Dense::load(vb.pp("output").pp("dense"), cfg.intermediate_size, h)?,
            output_norm: norm(vb.pp("output").pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
        })
    }

    /// `x` is `[batch * len, hidden]`; sequence `b` has `lengths[b]` real tokens, then
    /// padding.
    fn forward(&self, x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let context = attention(&self.qkv.forward(x)?, lengths, self.heads)?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + x)?)?;
        let up = self.up.forward(&attended)?;
        gelu_erf_(&up)?;
        self.output_norm
            .forward(&(self.down.forward(&up)? + attended)?)
    }
}

/// Real tokens per sequence of a `[batch, len]` mask, which must be ones then zeros
/// (padding on the right, as `MiniLm` pads).
fn real_lengths(mask: &Tensor) -> Result<Vec<usize>> {
    mask.to_dtype(DType::U32)?
        .to_vec2::<u32>()?
        .iter()
        .map(|row| {
            let real = row.iter().take_while(|&&m| m != 0).count();
            if row[real..].iter().any(|&m| m != 0) {
                candle_core::bail!("the attention mask must be ones then zeros (right padding)");
            }
            Ok(real)
        })
        .collect()
}

/// A BERT encoder: embeddings plus the transformer layers (no pooler).
pub struct Bert {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    /// Token type 0's embedding row: Engram always embeds single segments.
    token_type_row: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    pub device: Device,
}

impl Bert {
    /// Loads weights with Hugging Face BERT names (with or without a `bert.` prefix).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        if cfg.hidden_act != "gelu" {
            candle_core::bail!(
                "hidden_act {:?} is not supported (only \"gelu\", the exact one)",
                cfg.hidden_act
            );
        }
        if cfg.position_embedding_type != "absolute" {
            candle_core::bail!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                cfg.position_embedding_type
            );
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            candle_core::bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size,
                cfg.num_attention_heads
            );
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let token_types = emb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word_embeddings: candle_nn::embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position_embeddings: candle_nn::embedding(
                cfg.max_position_embeddings,
                h,
                emb.pp("position_embeddings"),
            )?,
            token_type_row: token_types.get(0)?,
            embedding_norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            device: vb.device().clone(),
        })
    }

    /// Token states `[batch, len, hidden]` for `ids` `[batch, len]`; `mask` `[batch, len]`
    /// is 1 for real tokens and 0 for padding (whose states are meaningless).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, &self.device)?;
        let embedded = self
            .word_embeddings
            .forward(ids)?
            .broadcast_add(&self.position_embeddings.forward(&positions)?)?
            .broadcast_add(&self.token_type_row)?;
        let mut x = self
            .embedding_norm
            .forward(&embedded)?
            .reshape((batch * len, ()))?;
        let lengths = real_lengths(mask)?;
        for layer in &self.layers {
            x = layer.forward(&x, &lengths)?;
        }
        x.reshape((batch, len, ()))
    }

    /// Weighted mean of the token states (`weights` `[batch, len]`, zero for padding),
    /// L2-normalised; all-ones weights on real tokens give sentence-transformers' mean
    /// pooling for MiniLM. Returns `[batch, hidden]`.
    pub fn weighted_pool(states: &Tensor, weights: &Tensor) -> Result<Tensor> {
        let pooled = weights
            .to_dtype(DType::F32)?
            .unsqueeze(1)?
            .matmul(states)?
            .squeeze(1)?;
        let norm = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
        pooled.broadcast_div(&norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// all-MiniLM-L6-v2's config.json as shipped, extra fields included.
    const MINILM_CONFIG: &str = r#"{
        "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "gradient_checkpointing": false,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 384,
        "initializer_range": 0.02,
        "intermediate_size": 1536,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "bert",
        "num_attention_heads": 12,
        "num_hidden_layers": 6,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "transformers_version": "4.8.2",
        "type_vocab_size": 2,
        "use_cache": true,
        "vocab_size": 30522
    }"#;

    #[test]
    fn reads_a_hugging_face_config() {
        let cfg: Config = serde_json::from_str(MINILM_CONFIG).unwrap();
        assert_eq!(
            cfg,
            Config {
                hidden_size: 384,
                num_hidden_layers: 6,
                intermediate_size: 1536,
                ..Config::default()
            }
        );
    }

    #[test]
    fn optional_fields_default_as_in_hugging_face() {
        let cfg: Config = serde_json::from_str(
            r#"{"vocab_size": 9, "hidden_size": 8, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 16}"#,
        )
        .unwrap();
        assert_eq!(
            (
                cfg.hidden_act.as_str(),
                cfg.position_embedding_type.as_str()
            ),
            ("gelu", "absolute")
        );
        assert_eq!(
            (
                cfg.max_position_embeddings,
                cfg.type_vocab_size,
                cfg.pad_token_id
            ),
            (512, 2, 0)
        );
        assert_eq!(cfg.layer_norm_eps, 1e-12);
        let missing = serde_json::from_str::<Config>(r#"{"vocab_size": 9}"#).unwrap_err();
        assert!(missing.to_string().contains("hidden_size"), "{missing}");
    }

    #[test]
    fn unsupported_activation_or_positions_are_refused() {
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let small = Config {
            vocab_size: 9,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 12,
            ..Config::default()
        };
        assert!(Bert::load(vb.clone(), &small).is_ok());
        let approximate = Config {
            hidden_act: "gelu_new".into(),
            ..small.clone()
        };
        let err = Bert::load(vb.clone(), &approximate).err().unwrap();
        assert!(err.to_string().contains("gelu_new"), "{err}");
        let relative = Config {
            position_embedding_type: "relative_key".into(),
            ..small
        };
        let err = Bert::load(vb, &relative).err().unwrap();
        assert!(err.to_string().contains("relative_key"), "{err}");
    }
}
