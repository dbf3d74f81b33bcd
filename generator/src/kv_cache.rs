//! The per-call KV cache of [`crate::Llama`].
//!
//! Why per call: the weights are shared by every request, the cache is one sequence's
//! state; keeping it out of the model lets one loaded model serve many calls at once.
//!
//! Why it grows: a call may ask for thousands of tokens and stop after twenty.
//! SmolLM2's cache takes 46 KB per position (30 blocks, keys and values, 3 heads of 64
//! floats), so allocating prompt + `max_tokens` up front cost ~380 MB for an 8,192-token
//! budget whatever the answer's length, and a few dozen concurrent calls exhausted the
//! machine. The buffers start at what the caller reserves (the prompt) and double when
//! full, up to the call's limit: memory follows the actual length, the copies add up to
//! less than one final buffer, and each token is still written in place (no
//! concatenation of the past per token).

use candle_core::Tensor;

use crate::error::Result;
use crate::llama::{Kernels, LlamaConfig};
use crate::prefix::KvPrefix;

/// Buffers are allocated in multiples of this many positions.
const GROW_STEP: usize = 64;
/// The position axis of a `(batch, heads, positions, head_dim)` key or value tensor.
const POSITIONS: usize = 2;

/// Keys and values of one block. Inference writes into buffers that grow by doubling
/// (`slice_set`, no copy of the past per token); training concatenates, because
/// `slice_set` does not pass gradients.
pub(crate) struct LayerKv {
    buffers: Option<(Tensor, Tensor)>,
    len: usize,
    growth: Growth,
    joined: Option<(Tensor, Tensor)>,
}

/// How the buffers of one call grow: from `reserve` positions, doubling, never past `limit`.
#[derive(Debug, Clone, Copy)]
struct Growth {
    reserve: usize,
    limit: usize,
    step: usize,
}

impl Growth {
    /// Positions to allocate when `allocated` no longer holds `needed`.
    fn next(self, allocated: usize, needed: usize) -> usize {
        let target = needed.max(allocated * 2).max(self.reserve);
        let rounded = target.div_ceil(self.step) * self.step;
        rounded.min(self.limit).max(needed)
    }
}

impl LayerKv {
    pub(crate) fn append(
        &mut self,
        k: &Tensor,
        v: &Tensor,
        kernels: Kernels,
    ) -> Result<(Tensor, Tensor)> {
        if kernels == Kernels::Fast {
            return self.append_in_place(k, v);
        }
        let joined = match self.joined.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, k], 2)?, Tensor::cat(&[&pv, v], 2)?),
            None => (k.clone(), v.clone()),
        };
        self.joined = Some(joined.clone());
        Ok(joined)
    }

    /// Writes `k` and `v` (contiguous) after the cached positions, growing the buffers
    /// first when they are full, and returns views of every cached position.
    fn append_in_place(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let needed = self.len + k.dim(POSITIONS)?;
        let allocated = self.allocated();
        if needed > allocated {
            let positions = self.growth.next(allocated, needed);
            self.buffers = Some(match self.buffers.take() {
                None => (zeros_like(k, positions)?, zeros_like(v, positions)?),
                Some((bk, bv)) => (extend(&bk, positions)?, extend(&bv, positions)?),
            });
        }
        let (bk, bv) = self.buffers.as_ref().expect("allocated above");
        bk.slice_set(k, POSITIONS, self.len)?;
        bv.slice_set(v, POSITIONS, self.len)?;
        self.len = needed;
        Ok((
            bk.narrow(POSITIONS, 0, needed)?,
            bv.narrow(POSITIONS, 0, needed)?,
        ))
    }

    /// Positions the buffers hold room for.
    fn allocated(&self) -> usize {
        self.buffers
            .as_ref()
            .map_or(0, |(k, _)| k.dims()[POSITIONS])
    }
}

/// Zeros shaped like `like` with `positions` positions.
fn zeros_like(like: &Tensor, positions: usize) -> Result<Tensor> {
    let mut shape = like.dims().to_vec();
    shape[POSITIONS] = positions;
    Ok(Tensor::zeros(shape, like.dtype(), like.device())?)
}

/// `buffer` with zero positions added up to `positions` (one copy of the old buffer).
fn extend(buffer: &Tensor, positions: usize) -> Result<Tensor> {
    let extra = zeros_like(buffer, positions - buffer.dims()[POSITIONS])?;
    Ok(Tensor::cat(&[buffer, &extra], POSITIONS)?)
}

/// Keys and values of every block for one sequence: per call, never shared.
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) len: usize,
    pub(crate) capacity: usize,
}

impl KvCache {
    /// A cache for up to `capacity` positions (prompt plus answer). Nothing is allocated
    /// until the first forward pass, which takes room for its own tokens (or what
    /// [`KvCache::with_reserve`] asked for); the buffers then double as needed, each
    /// block holding `2 · n_kv_head · head_dim` floats per allocated position.
    pub fn new(cfg: &LlamaConfig, capacity: usize) -> Self {
        Self::with_growth(
            cfg,
            Growth {
                reserve: 0,
                limit: capacity,
                step: GROW_STEP,
            },
        )
    }

    fn with_growth(cfg: &LlamaConfig, growth: Growth) -> Self {
        Self {
            layers: (0..cfg.n_layer)
                .map(|_| LayerKv {
                    buffers: None,
                    len: 0,
                    growth,
                    joined: None,
                })
                .collect(),
            len: 0,
            capacity: growth.limit,
        }
    }

    /// Allocates room for at least `positions` positions at the first forward pass (the
    /// prompt's length, so a prompt processed in chunks is not copied as it grows).
    pub fn with_reserve(mut self, positions: usize) -> Self {
        for layer in &mut self.layers {
            layer.growth.reserve = positions.min(self.capacity);
        }
        self
    }

    /// Positions already in the cache (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward pass.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions this cache may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Positions its buffers currently have room for (what its memory follows).
    pub fn allocated(&self) -> usize {
        self.layers.first().map_or(0, LayerKv::allocated)
    }

    /// The keys and values of block `layer` at every cached position, each
    /// `(1, n_kv_head, len, head_dim)` (keys already rotated): what a prefix adapter is
    /// initialised from. None before the first forward pass or past the last block.
    pub fn layer(&self, layer: usize) -> Option<(Tensor, Tensor)> {
        let kv = self.layers.get(layer)?;
        if let Some(joined) = &kv.joined {
            return Some(joined.clone());
        }
        let (k, v) = kv.buffers.as_ref()?;
        Some((
            k.narrow(POSITIONS, 0, kv.len).ok()?,
            v.narrow(POSITIONS, 0, kv.len).ok()?,
        ))
    }

    /// Puts a prefix adapter's keys and values at positions `0..P` of an empty cache, so
    /// the next token runs at position `P` and attends to them (see `prefix.rs`). The
    /// prefix adds its own `P` positions to the capacity the caller asked for. Training
    /// ([`Kernels::Differentiable`]) keeps the prefix tensors themselves (the trainable
    /// variables), so gradients reach them through the concatenation.
    pub(crate) fn seed(&mut self, prefix: &KvPrefix, kernels: Kernels) -> Result<()> {
        let p = prefix.len();
        self.capacity += p;
        for (layer, kv) in self.layers.iter_mut().enumerate() {
            kv.growth.limit += p;
            kv.growth.reserve += p;
            let (k, v) = prefix.layer(layer);
            kv.append(k, v, kernels)?;
        }
        self.len = p;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{max_diff, seeded_weights, tiny_config, tiny_model};
    use candle_core::quantized::GgmlDType;

    #[test]
    fn growth_doubles_in_steps_up_to_the_limit() {
        let g = Growth {
            reserve: 0,
            limit: 1000,
            step: 64,
        };
        assert_eq!(g.next(0, 1), 64);
        assert_eq!(g.next(0, 300), 320);
        assert_eq!(g.next(64, 65), 128);
        assert_eq!(g.next(512, 513), 1000, "capped at the limit");
        let reserved = Growth { reserve: 700, ..g };
        assert_eq!(reserved.next(0, 256), 704);
    }

    /// Greedy decoding with a cache that starts at one position and grows by copying
    /// gives the same tokens and logits as one allocated for the whole call up front
    /// (what this file did before, with candle's `KvCache`), and as the concatenating
    /// path of training.
    #[test]
    fn a_growing_cache_decodes_like_a_preallocated_one() {
        let mut cfg = tiny_config();
        cfg.context_length = 200;
        let weights = seeded_weights(&cfg, 7);
        let model = tiny_model(&cfg, &weights, GgmlDType::F32);
        let prompt = [3u32, 17, 5, 39, 0, 22, 8];
        let steps = 150;
        let capacity = prompt.len() + steps;

        let greedy = |model: &crate::Llama, cache: &mut KvCache| -> (Vec<u32>, Vec<Tensor>) {
            let mut logits = model.forward(&prompt, cache, None).unwrap();
            let (mut tokens, mut all) = (vec![], vec![]);
            for _ in 0..steps {
                let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
                tokens.push(next);
                all.push(logits.clone());
                logits = model.forward(&[next], cache, None).unwrap();
            }
            (tokens, all)
        };
        let growth = Growth {
            reserve: 0,
            limit: capacity,
            step: 1,
        };
        let mut growing = KvCache::with_growth(&cfg, growth);
        let (tokens, logits) = greedy(&model, &mut growing);
        assert_eq!(growing.len(), capacity);
        assert_eq!(growing.allocated(), capacity, "grew to exactly the limit");

        let preallocated = Growth {
            reserve: capacity,
            ..growth
        };
        let mut cache = KvCache::with_growth(&cfg, preallocated);
        let (ref_tokens, ref_logits) = greedy(&model, &mut cache);
        assert_eq!(tokens, ref_tokens);
        for (i, (a, b)) in logits.iter().zip(&ref_logits).enumerate() {
            assert!(max_diff(a, b) < 1e-5, "step {i}: {}", max_diff(a, b));
        }

        let concat =
            tiny_model(&cfg, &weights, GgmlDType::F32).with_kernels(crate::Kernels::Differentiable);
        let (slow_tokens, slow_logits) = greedy(&concat, &mut KvCache::new(&cfg, capacity));
        assert_eq!(tokens, slow_tokens);
        for (a, b) in logits.iter().zip(&slow_logits) {
            assert!(max_diff(a, b) < 1e-4, "{}", max_diff(a, b));
        }

        // A reserve for the prompt and the default step: after a short answer the
        // buffers hold far fewer positions than the limit.
        let mut cache = KvCache::new(&cfg, 190).with_reserve(prompt.len());
        model.forward(&prompt, &mut cache, None).unwrap();
        assert_eq!(cache.allocated(), 64);
        for t in 0..60 {
            model.forward(&[t % 40], &mut cache, None).unwrap();
        }
        assert_eq!(cache.allocated(), 128, "doubled once, at position 65");
    }
}
