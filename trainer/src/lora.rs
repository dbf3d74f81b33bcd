//! The adapter being trained: LoRA configuration and the candle `Var`s behind it.
//!
//! The variables are inserted into an `engram_generator::LoraAdapter`, whose pairs hold
//! views of the same storage: an optimizer update is seen by the adapter at once, and the
//! generator's forward pass (the one used for answers) is the one trained.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use engram_generator::{Llama, LlamaConfig, LoraAdapter, LoraTarget};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::prefix::{PrefixConfig, PrefixVars};

/// Which projections get a low-rank pair and how big it is (PEFT's `LoraConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of every pair.
    pub rank: usize,
    /// Deltas are scaled by `alpha / rank`.
    pub alpha: f64,
    /// Input dropout of every pair during training, in `[0, 1)`.
    pub dropout: f32,
    /// Projections to adapt, in every block: any of q, k, v, o, gate, up, down.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    /// Rank 16, alpha 32, dropout 0.05 on every attention and MLP projection (the usual
    /// choice for memorising facts: MLP pairs store most of them).
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl LoraConfig {
    /// The parsed targets; an error names an unknown one.
    pub fn parsed_targets(&self) -> Result<Vec<LoraTarget>> {
        let mut out = Vec::new();
        for name in &self.targets {
            let t = LoraTarget::parse(name).ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "unknown LoRA target '{name}': use q, k, v, o, gate, up or down"
                ))
            })?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::InvalidConfig("LoRA rank must be at least 1".into()));
        }
        if self.alpha.is_nan() || self.alpha <= 0.0 {
            return Err(Error::InvalidConfig("LoRA alpha must be positive".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::InvalidConfig(format!(
                "LoRA dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.parsed_targets()?.is_empty() {
            return Err(Error::InvalidConfig("no LoRA targets".into()));
        }
        Ok(())
    }
}

/// One trainable pair.
#[derive(Debug, Clone)]
pub struct PairVars {
    /// Block index.
    pub layer: usize,
    /// Projection.
    pub target: LoraTarget,
    /// `(rank, in)`.
    pub a: Var,
    /// `(out, rank)`.
    pub b: Var,
}

/// The trainable variables of an adapter, in a fixed order (layer, then target): LoRA
/// pairs, or for a prefix adapter its keys and values ([`PrefixVars`]) and no pair.
#[derive(Debug, Clone)]
pub struct AdapterVars {
    cfg: LlamaConfig,
    lora: LoraConfig,
    pairs: Vec<PairVars>,
    prefix: Option<PrefixVars>,
}

impl AdapterVars {
    /// PEFT's initialisation: `A` uniform in `±1/sqrt(in)` (kaiming-uniform with
    /// `a = sqrt(5)`), `B` zero, so the adapter starts as the identity. Seeded.
    pub fn init(cfg: &LlamaConfig, lora: &LoraConfig, seed: u64) -> Result<Self> {
        lora.validate()?;
        let targets = lora.parsed_targets()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pairs = Vec::new();
        for layer in 0..cfg.n_layer {
            for &target in LoraTarget::ALL.iter().filter(|t| targets.contains(t)) {
                let (d_in, d_out) = target.dims(cfg);
                let bound = 1.0 / (d_in as f32).sqrt();
                let a: Vec<f32> = (0..lora.rank * d_in)
                    .map(|_| rng.gen_range(-bound..bound))
                    .collect();
                let a = Var::from_vec(a, (lora.rank, d_in), &Device::Cpu)?;
                let b = Var::zeros((d_out, lora.rank), candle_core::DType::F32, &Device::Cpu)?;
                pairs.push(PairVars {
                    layer,
                    target,
                    a,
                    b,
                });
            }
        }
        Ok(Self {
            cfg: cfg.clone(),
            lora: lora.clone(),
            pairs,
            prefix: None,
        })
    }

    /// A prefix adapter's variables (see `prefix.rs`), initialised from `llama`'s KV
    /// cache of `prefix.init`; no LoRA pair.
    pub fn init_prefix(llama: &Llama, lora: &LoraConfig, prefix: &PrefixConfig) -> Result<Self> {
        Ok(Self {
            cfg: llama.config().clone(),
            lora: lora.clone(),
            pairs: Vec::new(),
            prefix: Some(PrefixVars::init(llama, prefix)?),
        })
    }

    /// The pairs.
    pub fn pairs(&self) -> &[PairVars] {
        &self.pairs
    }

    /// The LoRA configuration.
    pub fn lora(&self) -> &LoraConfig {
        &self.lora
    }

    /// Every variable, `A` then `B` of each pair in order (the optimizer's order).
    pub fn vars(&self) -> Vec<Var> {
        self.named_vars().into_iter().map(|(_, v)| v).collect()
    }

    /// [`AdapterVars::vars`] with their checkpoint names (`{layer}.{target}.A|B`, or
    /// `{layer}.prefix.K|V`), in the same order.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        if let Some(prefix) = &self.prefix {
            return prefix.named_vars();
        }
        self.pairs
            .iter()
            .flat_map(|p| {
                let key = format!("{}.{:?}", p.layer, p.target);
                [
                    (format!("{key}.A"), p.a.clone()),
                    (format!("{key}.B"), p.b.clone()),
                ]
            })
            .collect()
    }

    /// An adapter named `name` whose pairs (or prefix) are views of these variables.
    pub fn adapter(&self, name: &str) -> Result<LoraAdapter> {
        if let Some(prefix) = &self.prefix {
            return prefix.adapter(name);
        }
        let mut adapter = LoraAdapter::new(name, &self.cfg, self.lora.rank, self.lora.alpha)?;
        for p in &self.pairs {
            adapter.insert(p.layer, p.target, p.a.as_tensor(), p.b.as_tensor())?;
        }
        Ok(adapter)
    }

    /// The variables under stable names ([`AdapterVars::named_vars`]), for checkpoints.
    pub fn named(&self) -> HashMap<String, Tensor> {
        self.named_vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect()
    }

    /// Sets the variables from [`AdapterVars::named`]'s output (resume).
    pub fn restore(&self, named: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.named_vars() {
            let t = named
                .get(&name)
                .ok_or_else(|| Error::InvalidConfig(format!("checkpoint has no {name}")))?;
            if t.dims() != var.dims() {
                return Err(Error::InvalidConfig(format!(
                    "checkpoint {name} is {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(t)?;
        }
        Ok(())
    }
}
