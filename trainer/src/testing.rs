//! Tiny random llama models for the mechanics tests (the real model is tested in
//! tests/smollm2.rs).

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use engram_generator::{Kernels, Llama, LlamaConfig, LoraTarget};

use crate::data::Sequence;

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

/// A random F32 model in differentiable mode (fixed seed through candle's from_vec).
pub(crate) fn tiny_model() -> Llama {
    let cfg = tiny_config();
    let dev = Device::Cpu;
    let mut state = 12345u64;
    let mut randn = |shape: (usize, usize)| {
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| {
                state = crate::util::mix(state);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
            })
            .collect();
        Tensor::from_vec(v, shape, &dev).unwrap()
    };
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
            let (d_in, d_out) = target.dims(&cfg);
            w.insert(format!("blk.{layer}.{name}.weight"), randn((d_out, d_in)));
        }
        for norm in ["attn_norm", "ffn_norm"] {
            w.insert(
                format!("blk.{layer}.{norm}.weight"),
                Tensor::ones(cfg.n_embd, DType::F32, &dev).unwrap(),
            );
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
    let tensors = w
        .into_iter()
        .map(|(k, v)| (k, QTensor::quantize(&v, GgmlDType::F32).unwrap()))
        .collect();
    Llama::from_tensors(tensors, &cfg, &dev)
        .unwrap()
        .with_kernels(Kernels::Differentiable)
}

/// Question-answer-like sequences: a "prompt" then an "answer" that depends on it.
pub(crate) fn tiny_examples() -> Vec<Sequence> {
    (0..6u32)
        .map(|i| Sequence {
            tokens: vec![1, 3 + i, 5 + i, 2, 20 + i, 30 + (i % 3), 2],
            loss_from: 4,
        })
        .collect()
}

/// Replay text.
pub(crate) fn tiny_replay() -> Vec<Sequence> {
    (0..3u32)
        .map(|i| Sequence {
            tokens: (0..10).map(|j| (i * 7 + j * 3) % 40).collect(),
            loss_from: 1,
        })
        .collect()
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
