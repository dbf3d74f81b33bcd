//! Prefix adapters (the Cartridges parameterisation): a trained KV prefix per block.
//!
//! A prefix adapter is `P` positions of keys and values for every block and key/value
//! head, `(1, n_kv_head, P, head_dim)` each, keys stored already rotated (as the KV
//! cache holds them). Serving puts them at positions `0..P` of the call's cache and the
//! prompt follows at position `P`: the model answers as if `P` tokens of text had come
//! before the conversation, except that those keys and values were trained, not
//! computed from text. Nothing in the weights changes, so like LoRA it is applied per
//! request on top of the shared quantized model.
//!
//! Why initialised from a real KV cache (the first `P` tokens of the documents): the
//! Cartridges paper found random prefixes train unstably and slowly; a prefix that
//! starts as the cache of real text starts as "the model has read this", which is
//! exactly what [`KvPrefix::from_tokens`] computes, and training moves it from there.
//!
//! Why it rides on [`LoraAdapter`] ([`LoraAdapter::prefix_only`]): every path that
//! serves, trains or evaluates an adapter (answers, the gate's perplexity and
//! closed-book questions, distillation) already passes an `Option<&LoraAdapter>` down to
//! [`Llama`]'s forward pass; the forward pass seeds an empty cache with the adapter's
//! prefix, so all of them handle the new kind without a second code path.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::llama::{Llama, LlamaConfig};

/// Most prefix positions an adapter may have (a fraction of SmolLM2's 8,192 window).
pub const MAX_PREFIX_TOKENS: usize = 2048;

/// Keys and values of `P` positions for every block.
#[derive(Debug, Clone)]
pub struct KvPrefix {
    /// `layers[block] = (keys, values)`, each `(1, n_kv_head, P, head_dim)`.
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl KvPrefix {
    /// A prefix from per-block `(keys, values)`, each `(1, n_kv_head, P, head_dim)` or
    /// `(n_kv_head, P, head_dim)`, for a model of shape `cfg`. Shapes are checked here so
    /// a wrong prefix fails when loaded, not mid-answer.
    pub fn new(cfg: &LlamaConfig, layers: Vec<(Tensor, Tensor)>) -> Result<Self> {
        let bad = |reason: String| Error::AdapterMismatch {
            adapter: "prefix".into(),
            reason,
        };
        if layers.len() != cfg.n_layer {
            return Err(bad(format!(
                "{} blocks of keys and values for a model of {} blocks",
                layers.len(),
                cfg.n_layer
            )));
        }
        let len = layers[0]
            .0
            .dims()
            .get(layers[0].0.rank().saturating_sub(2))
            .copied();
        let len = len.unwrap_or(0);
        if len == 0 || len > MAX_PREFIX_TOKENS {
            return Err(bad(format!(
                "{len} prefix positions: between 1 and {MAX_PREFIX_TOKENS}"
            )));
        }
        let want = [1, cfg.n_kv_head, len, cfg.head_dim];
        let mut out = Vec::with_capacity(layers.len());
        for (i, (k, v)) in layers.into_iter().enumerate() {
            let fit = |t: Tensor| -> Result<Tensor> {
                let t = if t.rank() == 3 { t.unsqueeze(0)? } else { t };
                if t.dims() != want {
                    return Err(bad(format!(
                        "block {i}: a prefix tensor is {:?}, expected {want:?}",
                        t.dims()
                    )));
                }
                Ok(t.to_dtype(DType::F32)?.contiguous()?)
            };
            out.push((fit(k)?, fit(v)?));
        }
        Ok(Self { layers: out, len })
    }

    /// The KV cache of `tokens` under the base model (no adapter), as a prefix: the
    /// initialisation of a trained prefix, and by construction equal to having those
    /// tokens in front of the prompt.
    pub fn from_tokens(llama: &Llama, tokens: &[u32]) -> Result<Self> {
        let mut cache = KvCache::new(llama.config(), tokens.len()).with_reserve(tokens.len());
        llama.forward(tokens, &mut cache, None)?;
        let layers = (0..llama.config().n_layer)
            .map(|i| {
                let (k, v) = cache.layer(i).ok_or_else(|| {
                    Error::InvalidOptions(format!("no keys and values in block {i}"))
                })?;
                Ok((k.detach().copy()?, v.detach().copy()?))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(llama.config(), layers)
    }

    /// Prefix positions `P` (the prompt starts at position `P`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a prefix has at least one position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys and values of block `layer`, each `(1, n_kv_head, P, head_dim)`.
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        let (k, v) = &self.layers[layer];
        (k, v)
    }

    /// Blocks.
    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }

    /// Bytes of the stored tensors (F32).
    pub fn bytes(&self) -> usize {
        self.layers.len() * 2 * self.layers[0].0.elem_count() * 4
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::GgmlDType;
    use candle_core::{Device, Var};
    use candle_nn::Optimizer;

    use super::*;
    use crate::lora::LoraAdapter;
    use crate::testing::{max_diff, seeded_weights, tiny_config, tiny_model};
    use crate::{Kernels, KvCache};

    const PASSAGE: [u32; 6] = [5, 17, 3, 29, 11, 8];
    const QUESTION: [u32; 4] = [2, 33, 14, 7];

    /// The closed-book model with a prefix made from the passage's KV cache gives, at
    /// every question position, the logits of the model that read the passage in front
    /// of the question: the prefix sits at positions 0..P, its keys rotated for those
    /// positions, the question at P.. and seeing all of it (positions and masks right).
    #[test]
    fn a_prefix_from_a_passage_equals_the_passage_in_the_prompt() {
        let cfg = tiny_config();
        let weights = seeded_weights(&cfg, 11);
        for kernels in [Kernels::Fast, Kernels::Differentiable] {
            let model = tiny_model(&cfg, &weights, GgmlDType::F32).with_kernels(kernels);
            let prefix = KvPrefix::from_tokens(&model, &PASSAGE).unwrap();
            assert_eq!(prefix.len(), PASSAGE.len());
            let adapter = LoraAdapter::prefix_only("p", &cfg, prefix.clone()).unwrap();
            let both: Vec<u32> = PASSAGE.iter().chain(&QUESTION).copied().collect();
            let full = model
                .forward_all(&both, &mut KvCache::new(&cfg, both.len()), None)
                .unwrap();
            let expected = full.narrow(0, PASSAGE.len(), QUESTION.len()).unwrap();
            // The caller sizes the cache for the question only; the prefix adds its own.
            let mut cache = KvCache::new(&cfg, QUESTION.len() + 3);
            let with_prefix = model
                .forward_all(&QUESTION, &mut cache, Some(&adapter))
                .unwrap();
            assert_eq!(cache.len(), both.len());
            let d = max_diff(&with_prefix, &expected);
            assert!(d < 1e-4, "{kernels:?}: {d}");
            let closed = model
                .forward_all(&QUESTION, &mut KvCache::new(&cfg, 8), None)
                .unwrap();
            assert!(max_diff(&closed, &expected) > 1e-2, "the passage matters");
            // Decoding the last token alone (no mask) after the prefix and the rest.
            let mut cache = KvCache::new(&cfg, QUESTION.len());
            model
                .forward_all(&QUESTION[..3], &mut cache, Some(&adapter))
                .unwrap();
            let last = model
                .forward(&QUESTION[3..], &mut cache, Some(&adapter))
                .unwrap();
            let d = max_diff(&last, &expected.get(3).unwrap());
            assert!(d < 1e-4, "{kernels:?} decoding: {d}");
        }
    }

    #[test]
    fn gradients_reach_the_prefix_and_a_few_kl_steps_lower_the_loss() {
        let cfg = tiny_config();
        let weights = seeded_weights(&cfg, 3);
        let model =
            tiny_model(&cfg, &weights, GgmlDType::F32).with_kernels(Kernels::Differentiable);
        // Teacher: the passage in the prompt; student: a prefix from other text.
        let both: Vec<u32> = PASSAGE.iter().chain(&QUESTION).copied().collect();
        let teacher = model
            .forward_all(&both, &mut KvCache::new(&cfg, 16), None)
            .unwrap()
            .narrow(0, PASSAGE.len(), QUESTION.len())
            .unwrap();
        let target = candle_nn::ops::softmax_last_dim(&teacher).unwrap();
        let init = KvPrefix::from_tokens(&model, &[9, 9, 1, 4, 30, 22]).unwrap();
        let vars: Vec<(Var, Var)> = (0..cfg.n_layer)
            .map(|i| {
                let (k, v) = init.layer(i);
                (Var::from_tensor(k).unwrap(), Var::from_tensor(v).unwrap())
            })
            .collect();
        let kl = || -> Tensor {
            let layers = vars
                .iter()
                .map(|(k, v)| (k.as_tensor().clone(), v.as_tensor().clone()))
                .collect();
            let prefix = KvPrefix::new(&cfg, layers).unwrap();
            let adapter = LoraAdapter::prefix_only("train", &cfg, prefix).unwrap();
            let logits = model
                .forward_all(&QUESTION, &mut KvCache::new(&cfg, 8), Some(&adapter))
                .unwrap();
            let logp = candle_nn::ops::log_softmax(&logits, 1).unwrap();
            let tlog = target.log().unwrap();
            ((&target * (tlog - logp).unwrap()).unwrap())
                .sum_all()
                .unwrap()
                .affine(1.0 / QUESTION.len() as f64, 0.0)
                .unwrap()
        };
        let first: f32 = kl().to_scalar().unwrap();
        let all: Vec<Var> = vars
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect();
        let mut opt = candle_nn::AdamW::new(
            all.clone(),
            candle_nn::ParamsAdamW {
                lr: 0.05,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..20 {
            let loss = kl();
            let grads = loss.backward().unwrap();
            for v in &all {
                assert!(
                    grads.get(v.as_tensor()).is_some(),
                    "a prefix var has no gradient"
                );
            }
            opt.step(&grads).unwrap();
        }
        let last: f32 = kl().to_scalar().unwrap();
        assert!(first > 1e-3, "the other text's prefix differs: {first}");
        assert!(last < first * 0.5, "KL {first} -> {last}");
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let cfg = tiny_config();
        let t = |p: usize| {
            Tensor::zeros(
                (1, cfg.n_kv_head, p, cfg.head_dim),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap()
        };
        assert!(
            KvPrefix::new(&cfg, vec![(t(3), t(3))]).is_err(),
            "one block of two"
        );
        let err = KvPrefix::new(&cfg, vec![(t(3), t(3)), (t(3), t(4))]).unwrap_err();
        assert!(err.to_string().contains("expected [1, 2, 3, 8]"), "{err}");
        assert!(KvPrefix::new(&cfg, vec![(t(0), t(0)), (t(0), t(0))]).is_err());
        let ok = KvPrefix::new(&cfg, vec![(t(3), t(3)), (t(3), t(3))]).unwrap();
        assert_eq!(ok.bytes(), 2 * 2 * 2 * 3 * 8 * 4);
    }
}
