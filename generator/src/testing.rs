//! Tiny random llama models for unit tests of the mechanics (KV cache, chunking,
//! kernels, adapters); the real model is tested in tests/smollm2.rs.

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::llama::{Llama, LlamaConfig, TensorSource};
use crate::lora::LoraTarget;

pub fn tiny_config() -> LlamaConfig {
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

/// Random llama.cpp-named F32 weights for `cfg` (different on every call).
pub fn tiny_weights(cfg: &LlamaConfig) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    weights_from(cfg, &mut |shape| {
        Tensor::randn(0f32, 0.3, shape, &dev).unwrap()
    })
}

/// A tensor of `shape` with values uniform in `±half_width`, the same for the same
/// `seed` (splitmix64): inputs for tests whose tolerances must not depend on luck.
pub fn seeded_uniform(shape: (usize, usize), seed: u64, half_width: f32) -> Tensor {
    let mut state = seed;
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * half_width
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Weights like [`tiny_weights`], the same for the same `seed` (uniform in ±0.4):
/// what tests that compare two runs need.
pub fn seeded_weights(cfg: &LlamaConfig, seed: u64) -> HashMap<String, Tensor> {
    let mut next = seed;
    weights_from(cfg, &mut |shape: (usize, usize)| {
        next = next.wrapping_add(1);
        seeded_uniform(shape, next.wrapping_mul(0x2545_F491_4F6C_DD1D), 0.4)
    })
}

fn weights_from(
    cfg: &LlamaConfig,
    randn: &mut dyn FnMut((usize, usize)) -> Tensor,
) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
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
pub fn tiny_model(cfg: &LlamaConfig, weights: &HashMap<String, Tensor>, dtype: GgmlDType) -> Llama {
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
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
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
