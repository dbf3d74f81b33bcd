//! Prefix adapters on disk in PEFT's prefix-tuning format.
//!
//! PEFT (`peft_type: PREFIX_TUNING`, `prefix_projection: false`) stores one tensor,
//! `prompt_embeddings`, `(num_virtual_tokens, num_layers · 2 · token_dim)`, which it
//! views as `(P, layers · 2, heads, head_dim)` and hands to the model as
//! `past_key_values`: block `l`'s keys are slot `2l`, its values slot `2l + 1`. We write
//! `token_dim = n_kv_head · head_dim` and `num_attention_heads = n_kv_head` (what PEFT
//! derives for a grouped-query model), so the view gives `(P, heads, head_dim)` per slot.
//!
//! Hugging Face's cache, like ours, holds keys after the rotary embedding, and a model
//! given `past_key_values` runs the prompt from position `P`: the same convention as
//! serving here. The one difference is llama.cpp's interleaved rotary layout (see
//! `peft.rs`): each key's `head_dim` values are un-permuted to Hugging Face's
//! half-split order on save and permuted back on load. The round trip and the layout
//! are unit-tested here; the end-to-end test `prefix_peft` checks both directions
//! against Python `peft` 0.21.2 on transformers 5.25.0 (our files load with
//! `PeftModel.from_pretrained` and give our logits; `peft`'s `save_pretrained` files load
//! here and give its logits). `peft` itself derives the same `token_dim` and
//! `num_attention_heads` for a grouped-query model, so its files and ours agree.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::adapters::files::{write_atomic, write_json};
use crate::adapters::peft::{CONFIG_FILE, WEIGHTS_FILE};
use crate::adapters::RegistryError;
use crate::error::{Error, Result};
use crate::llama::LlamaConfig;
use crate::lora::LoraAdapter;
use crate::prefix::KvPrefix;

/// The PEFT tensor name.
pub const TENSOR: &str = "prompt_embeddings";

/// The fields of PEFT's `adapter_config.json` for prefix tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixPeftConfig {
    /// Always "PREFIX_TUNING".
    pub peft_type: String,
    /// "CAUSAL_LM".
    pub task_type: String,
    /// `P`.
    pub num_virtual_tokens: usize,
    /// `n_kv_head · head_dim`.
    pub token_dim: usize,
    /// 1 (a decoder-only model).
    pub num_transformer_submodules: usize,
    /// `n_kv_head`.
    pub num_attention_heads: usize,
    /// Blocks.
    pub num_layers: usize,
    /// False: the embeddings are the keys and values themselves.
    pub prefix_projection: bool,
    /// The base model (a path or hub name).
    pub base_model_name_or_path: String,
    /// True: saved for inference.
    pub inference_mode: bool,
}

/// `(1, kv, P, hd)` in llama.cpp's rotary order -> `(P, kv · hd)` in Hugging Face's.
fn to_hf(t: &Tensor) -> Result<Tensor> {
    let (_, kv, p, hd) = t.dims4()?;
    Ok(t.reshape((kv, p, hd / 2, 2))?
        .transpose(2, 3)? // (kv, P, 2, hd/2): pair element c of pair j -> c · hd/2 + j
        .reshape((kv, p, hd))?
        .transpose(0, 1)?
        .reshape((p, kv * hd))?
        .contiguous()?)
}

/// The inverse of [`to_hf`].
fn from_hf(t: &Tensor, kv: usize, hd: usize) -> Result<Tensor> {
    let p = t.dim(0)?;
    Ok(t.reshape((p, kv, 2, hd / 2))?
        .transpose(2, 3)?
        .reshape((p, kv, hd))?
        .transpose(0, 1)?
        .unsqueeze(0)?
        .contiguous()?)
}

/// Writes `prefix` as PEFT prefix-tuning files into `dir` (created), each atomically.
pub fn save(prefix: &KvPrefix, cfg: &LlamaConfig, base_model: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let mut slots = Vec::with_capacity(2 * prefix.n_layer());
    for layer in 0..prefix.n_layer() {
        let (k, v) = prefix.layer(layer);
        slots.push(to_hf(k)?);
        // Values have no rotary layout: plain (kv, P, hd) -> (P, kv · hd).
        slots.push(v.squeeze(0)?.transpose(0, 1)?.reshape((prefix.len(), ()))?);
    }
    let embeddings = Tensor::cat(&slots, 1)?.contiguous()?;
    let tensors = HashMap::from([(TENSOR.to_string(), embeddings)]);
    let weights = dir.join(WEIGHTS_FILE);
    write_atomic(&weights, |tmp| {
        candle_core::safetensors::save(&tensors, tmp).map_err(Error::from)
    })?;
    write_json(
        &dir.join(CONFIG_FILE),
        &PrefixPeftConfig {
            peft_type: "PREFIX_TUNING".into(),
            task_type: "CAUSAL_LM".into(),
            num_virtual_tokens: prefix.len(),
            token_dim: cfg.n_kv_head * cfg.head_dim,
            num_transformer_submodules: 1,
            num_attention_heads: cfg.n_kv_head,
            num_layers: cfg.n_layer,
            prefix_projection: false,
            base_model_name_or_path: base_model.into(),
            inference_mode: true,
        },
    )
}

/// Reads the PEFT prefix-tuning files in `dir` into a prefix adapter for `cfg`.
pub fn load(dir: &Path, cfg: &LlamaConfig, name: &str) -> Result<LoraAdapter> {
    let config_path = dir.join(CONFIG_FILE);
    let config: PrefixPeftConfig = crate::adapters::files::read_json(&config_path, |e| {
        RegistryError::corrupt("adapter_config.json", &config_path, e)
    })?;
    let (kv, hd) = (cfg.n_kv_head, cfg.head_dim);
    let weights = dir.join(WEIGHTS_FILE);
    let corrupt =
        |what: String| RegistryError::corrupt("adapter_model.safetensors", &weights, what);
    if config.prefix_projection
        || config.num_layers != cfg.n_layer
        || config.token_dim != kv * hd
        || config.num_transformer_submodules != 1
    {
        return Err(corrupt(format!(
            "a prefix for {} blocks of {} key/value values (projection {}), expected {} blocks of {} without projection",
            config.num_layers, config.token_dim, config.prefix_projection, cfg.n_layer, kv * hd
        )));
    }
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
        .map_err(|e| corrupt(e.to_string()))?;
    let t = tensors
        .get(TENSOR)
        .ok_or_else(|| corrupt(format!("no {TENSOR} tensor")))?
        .to_dtype(candle_core::DType::F32)?;
    let p = config.num_virtual_tokens;
    if t.dims() != [p, cfg.n_layer * 2 * kv * hd] {
        return Err(corrupt(format!(
            "{TENSOR} is {:?}, expected ({p}, {})",
            t.dims(),
            cfg.n_layer * 2 * kv * hd
        )));
    }
    let slot = |i: usize| t.narrow(1, i * kv * hd, kv * hd);
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for layer in 0..cfg.n_layer {
        let k = from_hf(&slot(2 * layer)?, kv, hd)?;
        let v = slot(2 * layer + 1)?.reshape((p, kv, hd))?.transpose(0, 1)?;
        layers.push((k, v.contiguous()?));
    }
    LoraAdapter::prefix_only(name, cfg, KvPrefix::new(cfg, layers)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{max_diff, tiny_config};

    #[test]
    fn prefix_files_round_trip_in_peft_layout() {
        let cfg = tiny_config();
        let (kv, hd, p) = (cfg.n_kv_head, cfg.head_dim, 3);
        let layers: Vec<(Tensor, Tensor)> = (0..cfg.n_layer)
            .map(|l| {
                let base = (l * 1000) as f64;
                let n = kv * p * hd;
                let k = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap();
                let k = (k.reshape((1, kv, p, hd)).unwrap() + base).unwrap();
                let v = (k.clone() + 500.0).unwrap();
                (k, v)
            })
            .collect();
        let prefix = KvPrefix::new(&cfg, layers).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        save(&prefix, &cfg, "tiny", tmp.path()).unwrap();
        let loaded = load(tmp.path(), &cfg, "x").unwrap();
        let back = loaded.prefix().unwrap();
        for l in 0..cfg.n_layer {
            assert_eq!(max_diff(back.layer(l).0, prefix.layer(l).0), 0.0);
            assert_eq!(max_diff(back.layer(l).1, prefix.layer(l).1), 0.0);
        }
        // PEFT's view: position 1, slot 0 (block 0 keys), head 1, Hugging Face dim j of
        // the first half is llama.cpp's dim 2j, of the second half 2j + 1.
        let file =
            candle_core::safetensors::load(tmp.path().join(WEIGHTS_FILE), &Device::Cpu).unwrap();
        let e = file[TENSOR].reshape((p, cfg.n_layer * 2, kv, hd)).unwrap();
        let row: Vec<f32> = e
            .get(1)
            .unwrap()
            .get(0)
            .unwrap()
            .get(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let gguf = |d: usize| ((kv - 1) * p * hd + hd + d) as f32; // head 1, position 1
        assert_eq!(row[0], gguf(0));
        assert_eq!(row[1], gguf(2));
        assert_eq!(row[hd / 2], gguf(1));
        let vrow: Vec<f32> = e
            .get(1)
            .unwrap()
            .get(1)
            .unwrap()
            .get(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(vrow[1], gguf(1) + 500.0, "values keep their order");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(json["peft_type"], "PREFIX_TUNING");
        assert_eq!(json["num_virtual_tokens"], 3);
    }
}
