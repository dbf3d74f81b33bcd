//! Tiny random llama models for unit tests of the mechanics (KV cache, chunking,
//! kernels, adapters); the real model is tested in tests/smollm2.rs.

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::llama::{Llama, LlamaConfig, TensorSource};
use crate::lora::LoraTarget;

pub(crate) fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        n_layer: 2,
        n_embd: 32,
        n_head: 4,
        n_kv_head: 2,
        head_dim: 8,
        n_ff: 64,
        vocab_size: 40,
        context_length: 64,
        rope_freq_base: 10_000.0,
        rms_eps: 1e-5,
    }
}

/// Random llama.cpp-named F32 weights for `cfg`.
pub(crate) fn tiny_weights(cfg: &LlamaConfig) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let randn = |shape: (usize, usize)| Tensor::randn(0f32, 0.3, shape, &dev).unwrap();
    let mut w = HashMap::new();
    let names = [
        ("attn_q", LoraTarget::Q),
        ("attn_k", LoraTarget::K),
        ("attn_v", LoraTarget::V),
        ("attn_output", LoraTarget::O),
        ("ffn_gate", LoraTarget::Gate),
        ("ffn_up", LoraTarget::Up),
        ("ffn_down", LoraTarget::Down),
    ];
    for layer in 0..cfg.n_layer {
        for (name, target) in names {
            let (d_in, d_out) = target.dims(cfg);
            w.insert(format!("blk.{layer}.{name}.weight"), randn((d_out, d_in)));
        }
        for norm in ["attn_norm", "ffn_norm"] {
            let v = randn((1, cfg.n_embd))
                .affine(0.1, 1.0)
                .unwrap()
                .squeeze(0)
                .unwrap();
            w.insert(format!("blk.{layer}.{norm}.weight"), v);
        }
    }
    w.insert(
        "token_embd.weight".into(),
        randn((cfg.vocab_size, cfg.n_embd)),
    );
    w.insert(
        "output_norm.weight".into(),
        Tensor::ones(cfg.n_embd, DType::F32, &dev).unwrap(),
    );
    w
}

/// A model from `weights`, matrices stored as `dtype`.
pub(crate) fn tiny_model(
    cfg: &LlamaConfig,
    weights: &HashMap<String, Tensor>,
    dtype: GgmlDType,
) -> Llama {
    let tensors = weights
        .iter()
        .map(|(k, v)| {
            let dtype = if v.rank() == 1 { GgmlDType::F32 } else { dtype };
            (k.clone(), QTensor::quantize(v, dtype).unwrap())
        })
        .collect();
    Llama::load(TensorSource::new(tensors), cfg, &Device::Cpu).unwrap()
}

/// Largest absolute elementwise difference.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}
