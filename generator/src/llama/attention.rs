//! The attention path of a llama block: grouped-query attention over the per-call KV
//! cache, the causal mask and the rotary tables.
//!
//! Why a file of its own: it is the part of the forward pass that touches the cache and
//! the positions (the rest is projections and norms), and the one to change for another
//! attention kernel.

use candle_core::{DType, Device, Tensor};

use super::{Llama, LlamaConfig};
use crate::error::Result;
use crate::kv_cache::LayerKv;
use crate::linear::AdaptedLinear;
use crate::lora::LoraAdapter;

/// The four projections of one block's attention.
pub(super) struct Attention {
    pub(super) q: AdaptedLinear,
    pub(super) k: AdaptedLinear,
    pub(super) v: AdaptedLinear,
    pub(super) o: AdaptedLinear,
}

impl Llama {
    /// Grouped-query attention without copying keys and values per query head: the
    /// `n_head / n_kv_head` query heads sharing a key/value head are stacked as extra rows.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attention(
        &self,
        attn: &Attention,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut LayerKv,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, seq, _) = x.dims3()?;
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, seq, n, cfg.head_dim))?.transpose(1, 2)?)
        };
        let q = heads(attn.q.forward(x, adapter)?, cfg.n_head)?;
        let k = heads(attn.k.forward(x, adapter)?, cfg.n_kv_head)?;
        let v = heads(attn.v.forward(x, adapter)?, cfg.n_kv_head)?.contiguous()?;
        let q = self.kernels.rope(&q, cos, sin)?;
        let k = self.kernels.rope(&k, cos, sin)?;
        let (k, v) = cache.append(&k.contiguous()?, &v, self.kernels)?;
        let group = cfg.n_head / cfg.n_kv_head;
        // (b, n_head, seq, d) -> (b, n_kv, group * seq, d): rows of one group are contiguous.
        let q = q
            .contiguous()?
            .reshape((b, cfg.n_kv_head, group * seq, cfg.head_dim))?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (cfg.head_dim as f64).sqrt()))?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let probs = self.kernels.softmax(&scores)?;
        let y = probs.matmul(&v)?; // (b, n_kv, group * seq, d)
        let y = y
            .reshape((b, cfg.n_head, seq, cfg.head_dim))?
            .transpose(1, 2)?
            .reshape((b, seq, cfg.n_head * cfg.head_dim))?;
        attn.o.forward(&y, adapter)
    }
}

/// Additive causal mask for `seq` new tokens after `pos` cached ones, repeated for the
/// `group` query heads stacked per key/value head: `(group * seq, pos + seq)`. None for
/// a single token (it may see everything).
pub(super) fn causal_mask(
    seq: usize,
    pos: usize,
    group: usize,
    device: &Device,
) -> Result<Option<Tensor>> {
    if seq == 1 {
        return Ok(None);
    }
    let total = pos + seq;
    let mut data = Vec::with_capacity(group * seq * total);
    for _ in 0..group {
        for i in 0..seq {
            data.extend((0..total).map(|j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }));
        }
    }
    Ok(Some(Tensor::from_vec(data, (group * seq, total), device)?))
}

/// cos and sin of every position's rotary angles, `(context_length, head_dim / 2)`.
pub(super) fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            1.0 / cfg
                .rope_freq_base
                .powf(2.0 * i as f32 / cfg.head_dim as f32)
        })
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0u32, cfg.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((cfg.context_length, 1))?;
    let angles = positions.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}
