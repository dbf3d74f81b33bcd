//! The per-call KV cache of [`crate::Llama`].
//!
//! Why per call: the weights are shared by every request, the cache is one sequence's
//! state; keeping it out of the model lets one loaded model serve many calls at once.

use candle_core::Tensor;
use candle_nn::kv_cache::KvCache as LayerCache;

use crate::error::Result;
use crate::llama::{Kernels, LlamaConfig};

/// Keys and values of one block. Inference writes into preallocated buffers
/// (`slice_set`, no copy of the past per token); training concatenates, because
/// `slice_set` does not pass gradients.
pub(crate) struct LayerKv {
    buffers: LayerCache,
    joined: Option<(Tensor, Tensor)>,
}

impl LayerKv {
    pub(crate) fn append(
        &mut self,
        k: &Tensor,
        v: &Tensor,
        kernels: Kernels,
    ) -> Result<(Tensor, Tensor)> {
        if kernels == Kernels::Fast {
            return Ok(self.buffers.append(k, v)?);
        }
        let joined = match self.joined.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, k], 2)?, Tensor::cat(&[&pv, v], 2)?),
            None => (k.clone(), v.clone()),
        };
        self.joined = Some(joined.clone());
        Ok(joined)
    }
}

/// Keys and values of every block for one sequence: per call, never shared.
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) len: usize,
    pub(crate) capacity: usize,
}

impl KvCache {
    /// A cache for up to `capacity` positions (prompt plus answer). Memory is taken at the
    /// first forward pass: `2 · n_layer · n_kv_head · head_dim · capacity` floats.
    pub fn new(cfg: &LlamaConfig, capacity: usize) -> Self {
        Self {
            layers: (0..cfg.n_layer)
                .map(|_| LayerKv {
                    buffers: LayerCache::new(2, capacity),
                    joined: None,
                })
                .collect(),
            len: 0,
            capacity,
        }
    }

    /// Positions already in the cache (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward pass.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
