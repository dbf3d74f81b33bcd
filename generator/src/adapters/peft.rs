//! Adapters on disk in PEFT's format, so the same files load in Hugging Face `peft`.
//! Here rather than in the trainer because serving loads them; the trainer writes them
//! with [`save`].
//!
//! `adapter_model.safetensors` holds `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`
//! (`(rank, in)`) and `...lora_B.weight` (`(out, rank)`); `adapter_config.json` holds
//! `peft_type: LORA`, `r`, `lora_alpha`, `target_modules`, `base_model_name_or_path`.
//!
//! The one subtlety: llama.cpp stores the rows of the Q and K projections permuted for
//! the interleaved rotary embedding, and our model runs on that layout, so a trained
//! `B` of q/k has its output rows in llama.cpp order. Hugging Face's llama (and PEFT on
//! it) uses the original order, so those rows are un-permuted on save and permuted back
//! on load (`to_hf_rows` / `from_hf_rows`, the inverse of llama.cpp's `permute`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::adapters::files::write_atomic;
use crate::adapters::RegistryError;
use crate::error::{Error, Result};
use crate::llama::LlamaConfig;
use crate::lora::{AdapterKind, LoraAdapter, LoraTarget};

/// File name of the weights.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// File name of the PEFT configuration.
pub const CONFIG_FILE: &str = "adapter_config.json";

/// The fields of PEFT's `adapter_config.json` that describe a LoRA adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeftConfig {
    /// Always "LORA".
    pub peft_type: String,
    /// "CAUSAL_LM".
    pub task_type: String,
    /// Rank.
    pub r: usize,
    /// Scale numerator (`scale = lora_alpha / r`).
    pub lora_alpha: f64,
    /// Training dropout (informational).
    pub lora_dropout: f32,
    /// Hugging Face module names (`q_proj`, ...).
    pub target_modules: Vec<String>,
    /// The base model (a path or hub name).
    pub base_model_name_or_path: String,
    /// "none": no bias terms are trained.
    pub bias: String,
    /// False: weights are `(out, in)`.
    pub fan_in_fan_out: bool,
    /// True: saved for inference.
    pub inference_mode: bool,
    /// False: plain `alpha / r` scaling.
    pub use_rslora: bool,
    /// False.
    pub use_dora: bool,
}

/// The PEFT tensor name of one matrix (`which` is "A" or "B").
pub fn tensor_name(layer: usize, target: LoraTarget, which: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{which}.weight",
        target.hf_parent(),
        target.hf_name()
    )
}

/// Rows of a q/k output matrix from llama.cpp order to Hugging Face order.
fn to_hf_rows(b: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, r) = b.dims2()?;
    let hd = out / heads;
    Ok(b.reshape((heads, hd / 2, 2, r))?
        .transpose(1, 2)?
        .reshape((out, r))?
        .contiguous()?)
}

/// Rows of a q/k output matrix from Hugging Face order to llama.cpp order.
fn from_hf_rows(b: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, r) = b.dims2()?;
    let hd = out / heads;
    Ok(b.reshape((heads, 2, hd / 2, r))?
        .transpose(1, 2)?
        .reshape((out, r))?
        .contiguous()?)
}

fn heads_of(target: LoraTarget, cfg: &LlamaConfig) -> Option<usize> {
    match target {
        LoraTarget::Q => Some(cfg.n_head),
        LoraTarget::K => Some(cfg.n_kv_head),
        _ => None,
    }
}

/// Writes `adapter` as PEFT files into `dir` (created if needed), each file atomically.
/// A prefix adapter is written in PEFT's prefix-tuning format (`peft_prefix.rs`).
pub fn save(adapter: &LoraAdapter, dropout: f32, base_model: &str, dir: &Path) -> Result<()> {
    let cfg = adapter.config();
    if let Some(prefix) = adapter.prefix() {
        return crate::adapters::peft_prefix::save(prefix, cfg, base_model, dir);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut modules: Vec<String> = Vec::new();
    for (layer, target) in adapter.targets() {
        let Some((a, b)) = adapter.pair(layer, target) else {
            continue;
        };
        let b = match heads_of(target, cfg) {
            Some(h) => to_hf_rows(&b, h)?,
            None => b.contiguous()?,
        };
        tensors.insert(tensor_name(layer, target, "A"), a.contiguous()?);
        tensors.insert(tensor_name(layer, target, "B"), b);
        let m = target.hf_name().to_string();
        if !modules.contains(&m) {
            modules.push(m);
        }
    }
    let weights = dir.join(WEIGHTS_FILE);
    write_atomic(&weights, |tmp| {
        candle_core::safetensors::save(&tensors, tmp).map_err(Error::from)
    })?;
    let config = PeftConfig {
        peft_type: "LORA".into(),
        task_type: "CAUSAL_LM".into(),
        r: adapter.rank(),
        lora_alpha: adapter.scale() * adapter.rank() as f64,
        lora_dropout: dropout,
        target_modules: modules,
        base_model_name_or_path: base_model.into(),
        bias: "none".into(),
        fan_in_fan_out: false,
        inference_mode: true,
        use_rslora: false,
        use_dora: false,
    };
    let json = serde_json::to_vec_pretty(&config)
        .map_err(|e| RegistryError::corrupt(CONFIG_FILE, dir, e))?;
    write_atomic(&dir.join(CONFIG_FILE), |tmp| {
        std::fs::write(tmp, &json).map_err(|e| Error::io("writing", tmp, e))
    })
}

/// The `peft_type` of the adapter in `dir`, as our kind (None: neither LoRA nor prefix).
pub fn kind(dir: &Path) -> Result<Option<AdapterKind>> {
    #[derive(Deserialize)]
    struct PeftType {
        peft_type: String,
    }
    let config_path = dir.join(CONFIG_FILE);
    let t: PeftType = crate::adapters::files::read_json(&config_path, |e| {
        RegistryError::corrupt("adapter_config.json", &config_path, e)
    })?;
    Ok(match t.peft_type.as_str() {
        "LORA" => Some(AdapterKind::Lora),
        "PREFIX_TUNING" => Some(AdapterKind::Prefix),
        _ => None,
    })
}

/// Reads the PEFT files in `dir` into an adapter for a model of shape `cfg` (LoRA, or
/// prefix tuning: see `peft_prefix.rs`).
pub fn load(dir: &Path, cfg: &LlamaConfig, name: &str) -> Result<LoraAdapter> {
    if kind(dir)? == Some(AdapterKind::Prefix) {
        return crate::adapters::peft_prefix::load(dir, cfg, name);
    }
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read(&config_path).map_err(|e| Error::io("reading", &config_path, e))?;
    let config: PeftConfig = serde_json::from_slice(&text)
        .map_err(|e| RegistryError::corrupt("adapter_config.json", &config_path, e))?;
    if config.peft_type != "LORA" || config.use_dora || config.use_rslora {
        return Err(RegistryError::corrupt(
            "adapter_config.json",
            &config_path,
            "only plain LoRA (no DoRA, no rsLoRA) adapters are supported",
        ));
    }
    let weights = dir.join(WEIGHTS_FILE);
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
        .map_err(|e| RegistryError::corrupt("adapter_model.safetensors", &weights, e))?;
    let mut adapter = LoraAdapter::new(name, cfg, config.r, config.lora_alpha)?;
    for layer in 0..cfg.n_layer {
        for target in LoraTarget::ALL {
            let (a, b) = (
                tensors.get(&tensor_name(layer, target, "A")),
                tensors.get(&tensor_name(layer, target, "B")),
            );
            let (Some(a), Some(b)) = (a, b) else { continue };
            let a = a.to_dtype(candle_core::DType::F32)?;
            let b = b.to_dtype(candle_core::DType::F32)?;
            let b = match heads_of(target, cfg) {
                Some(h) if b.dim(0)? % (2 * h) == 0 => from_hf_rows(&b, h)?,
                Some(_) => {
                    return Err(RegistryError::corrupt(
                        "adapter_model.safetensors",
                        &weights,
                        format!("layer {layer} {target:?}: B has {:?}", b.dims()),
                    ))
                }
                None => b,
            };
            adapter.insert(layer, target, &a, &b)?;
        }
    }
    if adapter.is_empty() {
        return Err(RegistryError::corrupt(
            "adapter_model.safetensors",
            &weights,
            "no lora_A/lora_B pair with PEFT llama names",
        ));
    }
    Ok(adapter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_row_order_round_trips_and_matches_llama_cpp_permute() {
        // llama.cpp: w.reshape(h, 2, hd/2, r).swapaxes(1, 2) maps HF rows to GGUF rows.
        let hf = Tensor::arange(0f32, 16.0, &Device::Cpu)
            .unwrap()
            .reshape((8, 2))
            .unwrap();
        let gguf = from_hf_rows(&hf, 2).unwrap();
        // Head 0 (rows 0..4 = pairs (0,2),(1,3) interleaved): HF rows 0,1,2,3 -> 0,2,1,3.
        let rows: Vec<Vec<f32>> = gguf.to_vec2().unwrap();
        assert_eq!(rows[0], vec![0.0, 1.0]);
        assert_eq!(rows[1], vec![4.0, 5.0]);
        assert_eq!(rows[2], vec![2.0, 3.0]);
        assert_eq!(rows[3], vec![6.0, 7.0]);
        let back = to_hf_rows(&gguf, 2).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    }
}
