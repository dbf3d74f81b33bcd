//! The shape of a llama model and where it comes from (the `llama.*` keys of a GGUF
//! file's metadata).
//!
//! Why a file of its own: the shape is all that adapters, KV caches and the adapter
//! registry need to know about a model, and reading it must not load any weights.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;

/// Shape and constants of a llama model, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_kv_head: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Feed-forward hidden size.
    pub n_ff: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Positions the model was trained for: its context window.
    pub context_length: usize,
    /// Rotary embedding base frequency.
    pub rope_freq_base: f32,
    /// RMS norm epsilon.
    pub rms_eps: f64,
}

impl LlamaConfig {
    /// Reads the `llama.*` keys of a GGUF file's metadata.
    pub fn from_metadata(
        metadata: &HashMap<String, gguf_file::Value>,
    ) -> std::result::Result<Self, String> {
        let get = |key: &str| {
            metadata
                .get(key)
                .ok_or_else(|| format!("metadata key {key} is missing"))
        };
        let int = |key: &str| -> std::result::Result<usize, String> {
            get(key)?
                .to_u32()
                .map(|v| v as usize)
                .map_err(|e| format!("{key}: {e}"))
        };
        let float = |key: &str| get(key)?.to_f32().map_err(|e| format!("{key}: {e}"));
        let arch = get("general.architecture")?
            .to_string()
            .map_err(|e| e.to_string())?;
        if arch != "llama" {
            return Err(format!(
                "architecture is '{arch}', this loader reads 'llama'"
            ));
        }
        let n_embd = int("llama.embedding_length")?;
        let n_head = int("llama.attention.head_count")?;
        let vocab_size = match int("llama.vocab_size") {
            Ok(v) => v,
            Err(_) => get("tokenizer.ggml.tokens")?
                .to_vec()
                .map_err(|e| e.to_string())?
                .len(),
        };
        Ok(Self {
            n_layer: int("llama.block_count")?,
            n_embd,
            n_head,
            n_kv_head: int("llama.attention.head_count_kv")?,
            head_dim: n_embd / n_head.max(1),
            n_ff: int("llama.feed_forward_length")?,
            vocab_size,
            context_length: int("llama.context_length")?,
            rope_freq_base: float("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: float("llama.attention.layer_norm_rms_epsilon")? as f64,
        })
    }

    /// True when two configs describe weights of the same shapes (adapters fit both).
    pub fn same_shape(&self, other: &Self) -> bool {
        (
            self.n_layer,
            self.n_embd,
            self.n_head,
            self.n_kv_head,
            self.n_ff,
        ) == (
            other.n_layer,
            other.n_embd,
            other.n_head,
            other.n_kv_head,
            other.n_ff,
        )
    }
}
