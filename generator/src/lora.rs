//! LoRA adapters, applied unmerged on top of the (quantized) base weights; the same type
//! carries a prefix adapter's KV prefix (`prefix.rs`), the hook every caller already has.
//!
//! Why unmerged: the base weights are quantized and shared by every request, while each
//! collection may have its own adapter. Merging `W + s·B·A` would need a dequantized copy
//! of every adapted matrix per adapter (and would lose the quantized kernels); applying
//! the low-rank delta beside the frozen product costs two thin matmuls per adapted
//! projection (`rank` is small) and lets one loaded model serve any adapter, or none,
//! per call. The same hook is what training uses: with `A` and `B` as candle `Var`s and
//! the model in [`crate::Kernels::Differentiable`] mode, gradients reach only them.
//!
//! Shapes follow PEFT: `A` is `(rank, in)`, `B` is `(out, rank)`, and the delta added to
//! a projection's output is `scale · (x · Aᵀ) · Bᵀ` with `scale = alpha / rank`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::llama::LlamaConfig;
use crate::prefix::KvPrefix;

/// The projections of a llama block that an adapter can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraTarget {
    /// Attention query projection.
    Q,
    /// Attention key projection.
    K,
    /// Attention value projection.
    V,
    /// Attention output projection.
    O,
    /// Feed-forward gate projection.
    Gate,
    /// Feed-forward up projection.
    Up,
    /// Feed-forward down projection.
    Down,
}

impl LoraTarget {
    /// Every target, in a fixed order (the index of a target in this list is its slot).
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    fn slot(self) -> usize {
        self as usize
    }

    /// The module name PEFT and Hugging Face use for this projection (`q_proj`, ...).
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// The parent module in Hugging Face's llama (`self_attn` or `mlp`).
    pub fn hf_parent(self) -> &'static str {
        match self {
            LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
            _ => "mlp",
        }
    }

    /// Parses a Hugging Face module name (`q_proj`) or a short one (`q`, `gate`).
    pub fn parse(name: &str) -> Option<Self> {
        let short = name.strip_suffix("_proj").unwrap_or(name);
        Some(match short {
            "q" => LoraTarget::Q,
            "k" => LoraTarget::K,
            "v" => LoraTarget::V,
            "o" => LoraTarget::O,
            "gate" => LoraTarget::Gate,
            "up" => LoraTarget::Up,
            "down" => LoraTarget::Down,
            _ => return None,
        })
    }

    /// `(in, out)` features of this projection in a model of shape `cfg`.
    pub fn dims(self, cfg: &LlamaConfig) -> (usize, usize) {
        let kv = cfg.n_kv_head * cfg.head_dim;
        match self {
            LoraTarget::Q | LoraTarget::O => (cfg.n_embd, cfg.n_embd),
            LoraTarget::K | LoraTarget::V => (cfg.n_embd, kv),
            LoraTarget::Gate | LoraTarget::Up => (cfg.n_embd, cfg.n_ff),
            LoraTarget::Down => (cfg.n_ff, cfg.n_embd),
        }
    }
}

/// One low-rank pair: `A` `(rank, in)` and `B` `(out, rank)`.
#[derive(Debug, Clone)]
struct LoraPair {
    a_t: Tensor,
    b_t: Tensor,
}

/// PEFT's `lora_dropout`: during training, each input value of an adapter pair is zeroed
/// with probability `p` (the rest scaled by `1 / (1 - p)`). The mask comes from a
/// counter-based generator (splitmix64 of `seed` and a running counter) rather than
/// candle's unseedable CPU RNG, so a training step is reproducible from its seed alone,
/// which is what lets an interrupted run resume to the same weights.
#[derive(Debug, Clone)]
struct Dropout {
    p: f32,
    seed: u64,
    counter: Arc<AtomicU64>,
}

impl Dropout {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.elem_count();
        let start = self.counter.fetch_add(n as u64, Ordering::Relaxed);
        let keep = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> = (0..n as u64)
            .map(|i| {
                let u = (splitmix64(self.seed ^ splitmix64(start + i)) >> 40) as f32
                    / (1u64 << 24) as f32;
                if u < self.p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok(x.mul(&mask)?)
    }
}

/// One step of splitmix64: a fast, well-mixed 64-bit hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A LoRA adapter for one model: low-rank pairs for some projections of some blocks.
///
/// Built empty for a model's shape, then filled with [`LoraAdapter::insert`] (the trainer
/// inserts its variables; a stored adapter is read from safetensors by its store).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    name: String,
    rank: usize,
    scale: f64,
    cfg: LlamaConfig,
    /// `blocks[layer][target slot]`.
    blocks: Vec<[Option<LoraPair>; 7]>,
    /// Training only: dropout on the input of every pair.
    dropout: Option<Dropout>,
    /// A trained KV prefix (a prefix adapter, see `prefix.rs`): seeded into every call's
    /// cache before the prompt.
    prefix: Option<KvPrefix>,
}

/// The two kinds of adapter, as the registry and the promotion request name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    /// Low-rank deltas on the projections.
    #[default]
    Lora,
    /// A trained KV prefix per block.
    Prefix,
}

impl AdapterKind {
    /// "lora" or "prefix".
    pub fn name(self) -> &'static str {
        match self {
            AdapterKind::Lora => "lora",
            AdapterKind::Prefix => "prefix",
        }
    }

    /// Parses "lora" or "prefix".
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "lora" => Some(AdapterKind::Lora),
            "prefix" => Some(AdapterKind::Prefix),
            _ => None,
        }
    }
}

impl LoraAdapter {
    /// An adapter with no pairs yet, for a model of shape `cfg`; `scale = alpha / rank`.
    pub fn new(
        name: impl Into<String>,
        cfg: &LlamaConfig,
        rank: usize,
        alpha: f64,
    ) -> Result<Self> {
        let name = name.into();
        if rank == 0 {
            return Err(Error::AdapterMismatch {
                adapter: name,
                reason: "rank must be at least 1".into(),
            });
        }
        Ok(Self {
            name,
            rank,
            scale: alpha / rank as f64,
            cfg: cfg.clone(),
            blocks: (0..cfg.n_layer).map(|_| Default::default()).collect(),
            dropout: None,
            prefix: None,
        })
    }

    /// A prefix adapter: no LoRA pair, only `prefix` (checked against `cfg`).
    pub fn prefix_only(
        name: impl Into<String>,
        cfg: &LlamaConfig,
        prefix: KvPrefix,
    ) -> Result<Self> {
        let name = name.into();
        if prefix.n_layer() != cfg.n_layer {
            return Err(Error::AdapterMismatch {
                adapter: name,
                reason: format!(
                    "a prefix of {} blocks for {} blocks",
                    prefix.n_layer(),
                    cfg.n_layer
                ),
            });
        }
        Ok(Self {
            name,
            rank: 0,
            scale: 0.0,
            cfg: cfg.clone(),
            blocks: (0..cfg.n_layer).map(|_| Default::default()).collect(),
            dropout: None,
            prefix: Some(prefix),
        })
    }

    /// The trained KV prefix, for a prefix adapter.
    pub fn prefix(&self) -> Option<&KvPrefix> {
        self.prefix.as_ref()
    }

    /// Positions the prefix takes in every call's window (0 for LoRA).
    pub fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, KvPrefix::len)
    }

    /// Prefix when it carries a prefix, else LoRA.
    pub fn kind(&self) -> AdapterKind {
        if self.prefix.is_some() {
            AdapterKind::Prefix
        } else {
            AdapterKind::Lora
        }
    }

    /// Turns on input dropout with probability `p` (training only; 0 turns it off),
    /// masks drawn from `seed` (see `Dropout`). Reseeding per step makes every step
    /// reproducible on its own. Fails when `p` is not in `[0, 1)`.
    pub fn set_dropout(&mut self, p: f32, seed: u64) -> Result<()> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::AdapterMismatch {
                adapter: self.name.clone(),
                reason: format!("dropout must be in [0, 1), got {p}"),
            });
        }
        self.dropout = (p > 0.0).then(|| Dropout {
            p,
            seed,
            counter: Arc::new(AtomicU64::new(0)),
        });
        Ok(())
    }

    /// The shape of the model this adapter was built for.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The pair of `target` in block `layer`, as `(A (rank, in), B (out, rank))`, or None.
    pub fn pair(&self, layer: usize, target: LoraTarget) -> Option<(Tensor, Tensor)> {
        let pair = self.blocks.get(layer)?[target.slot()].as_ref()?;
        Some((pair.a_t.t().ok()?, pair.b_t.t().ok()?))
    }

    /// Every `(layer, target)` that carries a pair, in block then [`LoraTarget::ALL`] order.
    pub fn targets(&self) -> Vec<(usize, LoraTarget)> {
        let mut out = Vec::new();
        for (layer, block) in self.blocks.iter().enumerate() {
            for target in LoraTarget::ALL {
                if block[target.slot()].is_some() {
                    out.push((layer, target));
                }
            }
        }
        out
    }

    /// The adapter's name (reported with every answer it produced).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rank of every pair.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// `alpha / rank`, the factor applied to every delta.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// How many projections carry a pair.
    pub fn len(&self) -> usize {
        self.blocks.iter().flatten().filter(|p| p.is_some()).count()
    }

    /// True when no projection carries a pair and there is no prefix (the adapter
    /// changes nothing).
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.prefix.is_none()
    }

    /// Sets the pair of `target` in block `layer`; `a` is `(rank, in)`, `b` is `(out, rank)`.
    /// Shapes are checked here, so a wrong adapter fails when loaded, not mid-answer.
    pub fn insert(
        &mut self,
        layer: usize,
        target: LoraTarget,
        a: &Tensor,
        b: &Tensor,
    ) -> Result<()> {
        let (d_in, d_out) = target.dims(&self.cfg);
        let fits = a.dims() == [self.rank, d_in] && b.dims() == [d_out, self.rank];
        if layer >= self.blocks.len() || !fits {
            return Err(Error::AdapterMismatch {
                adapter: self.name.clone(),
                reason: format!(
                    "block {layer} {target:?}: A is {:?} and B is {:?}, expected A ({}, {d_in}) and B ({d_out}, {}) in one of {} blocks",
                    a.dims(),
                    b.dims(),
                    self.rank,
                    self.rank,
                    self.blocks.len()
                ),
            });
        }
        self.blocks[layer][target.slot()] = Some(LoraPair {
            a_t: a.t()?,
            b_t: b.t()?,
        });
        Ok(())
    }

    /// True when this adapter was built for a model of shape `cfg`.
    pub fn fits(&self, cfg: &LlamaConfig) -> bool {
        self.cfg.same_shape(cfg)
    }

    /// The delta this adapter adds to `target`'s output in block `layer` for input `x`
    /// (`(batch, seq, in)`), or None when it has no pair there.
    pub(crate) fn delta(
        &self,
        layer: usize,
        target: LoraTarget,
        x: &Tensor,
    ) -> Result<Option<Tensor>> {
        let Some(pair) = self
            .blocks
            .get(layer)
            .and_then(|b| b[target.slot()].as_ref())
        else {
            return Ok(None);
        };
        let low = match &self.dropout {
            Some(dropout) => dropout.apply(x)?.broadcast_matmul(&pair.a_t)?,
            None => x.broadcast_matmul(&pair.a_t)?,
        };
        let delta = low.broadcast_matmul(&pair.b_t)?;
        Ok(Some((delta * self.scale)?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::GgmlDType;
    use candle_core::{Device, Var};

    use super::*;
    use crate::testing::{max_diff, tiny_config, tiny_model, tiny_weights};
    use crate::{Kernels, KvCache};

    const TOKENS: [u32; 5] = [1, 9, 33, 4, 27];

    fn randn(shape: (usize, usize)) -> Tensor {
        Tensor::randn(0f32, 0.3, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn unmerged_adapter_equals_merged_weights() {
        let cfg = tiny_config();
        let mut weights = tiny_weights(&cfg);
        let base = tiny_model(&cfg, &weights, GgmlDType::F32);
        let mut adapter = LoraAdapter::new("test", &cfg, 4, 8.0).unwrap();
        for (layer, target) in [
            (0, LoraTarget::Q),
            (1, LoraTarget::Down),
            (1, LoraTarget::V),
        ] {
            let (d_in, d_out) = target.dims(&cfg);
            let (a, b) = (randn((4, d_in)), randn((d_out, 4)));
            adapter.insert(layer, target, &a, &b).unwrap();
            let name = match target {
                LoraTarget::Q => "attn_q",
                LoraTarget::V => "attn_v",
                _ => "ffn_down",
            };
            let key = format!("blk.{layer}.{name}.weight");
            let merged =
                (&weights[&key] + (b.matmul(&a).unwrap() * adapter.scale()).unwrap()).unwrap();
            weights.insert(key, merged);
        }
        assert_eq!(adapter.len(), 3);
        let merged = tiny_model(&cfg, &weights, GgmlDType::F32);
        let with_adapter = base
            .forward_all(&TOKENS, &mut KvCache::new(&cfg, 8), Some(&adapter))
            .unwrap();
        let plain = base
            .forward_all(&TOKENS, &mut KvCache::new(&cfg, 8), None)
            .unwrap();
        let expected = merged
            .forward_all(&TOKENS, &mut KvCache::new(&cfg, 8), None)
            .unwrap();
        assert!(
            max_diff(&with_adapter, &expected) < 1e-3,
            "{}",
            max_diff(&with_adapter, &expected)
        );
        assert!(
            max_diff(&plain, &expected) > 1e-2,
            "the adapter changes the output"
        );
    }

    #[test]
    fn dropout_is_seeded_and_drops_about_p_of_the_inputs() {
        let cfg = tiny_config();
        let mut adapter = LoraAdapter::new("drop", &cfg, 4, 4.0).unwrap();
        let (d_in, d_out) = LoraTarget::Q.dims(&cfg);
        let eye = Tensor::eye(d_in, candle_core::DType::F32, &Device::Cpu).unwrap();
        // A = I (rank = in would be needed): use A = first 4 rows of I, B = ones.
        let a = eye.narrow(0, 0, 4).unwrap();
        let b = Tensor::ones((d_out, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        adapter.insert(0, LoraTarget::Q, &a, &b).unwrap();
        let x = Tensor::ones((1, 2000, d_in), candle_core::DType::F32, &Device::Cpu).unwrap();
        let plain = adapter.delta(0, LoraTarget::Q, &x).unwrap().unwrap();
        adapter.set_dropout(0.5, 7).unwrap();
        let dropped = adapter.delta(0, LoraTarget::Q, &x).unwrap().unwrap();
        adapter.set_dropout(0.5, 7).unwrap();
        let again = adapter.delta(0, LoraTarget::Q, &x).unwrap().unwrap();
        assert_eq!(max_diff(&dropped, &again), 0.0, "same seed, same masks");
        // Each output sums 4 inputs, each kept with p = 0.5 and scaled by 2: same mean.
        let mean = |t: &Tensor| -> f32 { t.mean_all().unwrap().to_scalar().unwrap() };
        assert!((mean(&dropped) / mean(&plain) - 1.0).abs() < 0.05);
        assert!(max_diff(&dropped, &plain) > 1.0, "some inputs were dropped");
        assert!(adapter.set_dropout(1.0, 0).is_err());
        adapter.set_dropout(0.0, 0).unwrap();
        let off = adapter.delta(0, LoraTarget::Q, &x).unwrap().unwrap();
        assert_eq!(max_diff(&off, &plain), 0.0);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let cfg = tiny_config();
        let mut adapter = LoraAdapter::new("bad", &cfg, 4, 8.0).unwrap();
        let err = adapter
            .insert(0, LoraTarget::K, &randn((4, 32)), &randn((32, 4)))
            .unwrap_err();
        assert!(
            err.to_string().contains("expected A (4, 32) and B (16, 4)"),
            "{err}"
        );
        let err = adapter
            .insert(9, LoraTarget::Q, &randn((4, 32)), &randn((32, 4)))
            .unwrap_err();
        assert!(matches!(err, Error::AdapterMismatch { .. }), "{err}");
        assert!(LoraAdapter::new("zero", &cfg, 0, 1.0).is_err());
    }

    #[test]
    fn gradients_reach_every_adapter_variable_with_differentiable_kernels() {
        let cfg = tiny_config();
        let model = tiny_model(&cfg, &tiny_weights(&cfg), GgmlDType::F32)
            .with_kernels(Kernels::Differentiable);
        let mut adapter = LoraAdapter::new("train", &cfg, 2, 4.0).unwrap();
        let mut vars = Vec::new();
        for layer in 0..cfg.n_layer {
            for target in LoraTarget::ALL {
                let (d_in, d_out) = target.dims(&cfg);
                let a = Var::from_tensor(&randn((2, d_in))).unwrap();
                let b = Var::from_tensor(&randn((d_out, 2))).unwrap();
                adapter
                    .insert(layer, target, a.as_tensor(), b.as_tensor())
                    .unwrap();
                vars.push((layer, target, a, b));
            }
        }
        let logits = model
            .forward_all(&TOKENS, &mut KvCache::new(&cfg, 8), Some(&adapter))
            .unwrap();
        let loss = candle_nn::loss::cross_entropy(
            &logits.narrow(0, 0, 4).unwrap(),
            &Tensor::new(&TOKENS[1..], &Device::Cpu).unwrap(),
        )
        .unwrap();
        let grads = loss.backward().unwrap();
        for (layer, target, a, b) in &vars {
            for (which, v) in [("A", a), ("B", b)] {
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("no gradient for {layer} {target:?} {which}"));
                let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
                assert!(norm > 0.0, "zero gradient for {layer} {target:?} {which}");
            }
        }
    }
}
