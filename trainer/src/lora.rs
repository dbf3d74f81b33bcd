//! The adapter being trained: LoRA configuration and the candle `Var`s behind it.
//!
//! The variables are inserted into an `engram_generator::LoraAdapter`, whose pairs hold
//! views of the same storage: an optimizer update is seen by the adapter at once, and the
//! generator's forward pass (the one used for answers) is the one trained.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use engram_generator::adapters::peft;
use engram_generator::{Llama, LlamaConfig, LoraAdapter, LoraTarget};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::prefix::{PrefixConfig, PrefixVars};
use crate::TrainConfig;

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

/// A pair's checkpoint name stem (`{layer}.{target}`).
fn pair_key(layer: usize, target: LoraTarget) -> String {
    format!("{layer}.{target:?}")
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

    /// The variables `cfg` trains, as at step 0: fresh (LoRA: [`AdapterVars::init`];
    /// prefix: the KV cache of `cfg.prefix.init`), or, continuing (`cfg.continue_from`),
    /// the stored adapter's own weights, read by the registry's loader and set with
    /// [`AdapterVars::restore`]. A stored adapter of another kind or shape is refused.
    pub fn for_training(llama: &Llama, cfg: &TrainConfig) -> Result<Self> {
        let Some(dir) = cfg.continue_from.as_ref().map(|c| &c.dir) else {
            return match &cfg.prefix {
                Some(prefix) => Self::init_prefix(llama, &cfg.lora, prefix),
                None => Self::init(llama.config(), &cfg.lora, cfg.seed),
            };
        };
        let start = peft::load(dir, llama.config(), "start")?;
        let refuse = |why: String| {
            Error::InvalidConfig(format!(
                "cannot continue from the adapter in {}: {why}",
                dir.display()
            ))
        };
        match (&cfg.prefix, start.prefix()) {
            (Some(p), Some(kv)) if kv.len() == p.tokens => Ok(Self {
                cfg: llama.config().clone(),
                lora: cfg.lora.clone(),
                pairs: Vec::new(),
                prefix: Some(PrefixVars::from_prefix(llama.config(), kv)?),
            }),
            (Some(p), Some(kv)) => Err(refuse(format!(
                "it has {} prefix positions, training asks for {}",
                kv.len(),
                p.tokens
            ))),
            (None, None) => {
                let scale = cfg.lora.alpha / cfg.lora.rank as f64;
                if start.rank() != cfg.lora.rank || (start.scale() - scale).abs() > 1e-9 {
                    return Err(refuse(format!(
                        "it is rank {} with scale {}, training asks for rank {} with scale {scale}",
                        start.rank(),
                        start.scale(),
                        cfg.lora.rank
                    )));
                }
                let vars = Self::init(llama.config(), &cfg.lora, cfg.seed)?;
                let named = Self::named_of(&start);
                if named.len() != vars.named_vars().len() {
                    return Err(refuse(format!(
                        "it has {} LoRA matrices, training asks for {}",
                        named.len(),
                        vars.named_vars().len()
                    )));
                }
                vars.restore(&named).map_err(|e| refuse(e.to_string()))?;
                Ok(vars)
            }
            (Some(_), None) => Err(refuse(
                "it is a LoRA adapter, training asks for a prefix".into(),
            )),
            (None, Some(_)) => Err(refuse(
                "it is a prefix adapter, training asks for LoRA".into(),
            )),
        }
    }

    /// A LoRA adapter's matrices under the names [`AdapterVars::named_vars`] gives
    /// them (what [`AdapterVars::restore`] reads).
    pub fn named_of(adapter: &LoraAdapter) -> HashMap<String, Tensor> {
        adapter
            .targets()
            .into_iter()
            .filter_map(|(layer, target)| {
                let (a, b) = adapter.pair(layer, target)?;
                let key = pair_key(layer, target);
                Some([(format!("{key}.A"), a), (format!("{key}.B"), b)])
            })
            .flatten()
            .collect()
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
                let key = pair_key(p.layer, p.target);
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

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;
    use std::path::Path;

    use super::*;
    use crate::continuation::Continuation;
    use crate::testing::{max_diff, tiny_examples, tiny_model, tiny_train_config};
    use crate::{train, TrainOutcome};

    /// The tiny run without dropout or replay, long enough for the loss to halve.
    fn config() -> TrainConfig {
        let base = tiny_train_config();
        TrainConfig {
            lora: LoraConfig {
                dropout: 0.0,
                ..base.lora.clone()
            },
            steps: 30,
            replay_ratio: 0.0,
            ..base
        }
    }

    fn continuing(dir: &Path, cfg: TrainConfig) -> TrainConfig {
        let continue_from = Continuation {
            version: 1,
            dir: dir.to_path_buf(),
            document_ids: Vec::new(),
            document_seqs: Default::default(),
            deleted: Vec::new(),
        };
        TrainConfig {
            continue_from: Some(continue_from),
            ..cfg
        }
    }

    fn first_losses(o: &TrainOutcome) -> f64 {
        o.losses[..3].iter().map(|l| l.loss).sum::<f64>() / 3.0
    }

    /// The stored adapter (PEFT files, read back by the registry's loader) is where a
    /// continued run starts: same matrices at step 0, and its first losses are the
    /// trained adapter's, not the base model's.
    #[test]
    fn continued_training_starts_from_the_stored_adapter_and_refuses_another_shape() {
        let model = tiny_model();
        let examples = tiny_examples();
        let run = |cfg: &TrainConfig| {
            train(&model, &examples, &[], cfg, None, &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap()
        };
        let first = run(&config());
        let dir = tempfile::tempdir().unwrap();
        peft::save(&first.adapter("v1").unwrap(), 0.0, "tiny", dir.path()).unwrap();
        let cfg = continuing(dir.path(), config());
        let start = AdapterVars::for_training(&model, &cfg).unwrap();
        let (saved, loaded) = (first.vars.named(), start.named());
        assert_eq!(saved.len(), 2 * 7 * 2);
        assert_eq!(saved.len(), loaded.len());
        for (name, t) in &saved {
            assert!(max_diff(t, &loaded[name]) < 1e-6, "{name} differs");
        }
        let continued = run(&cfg);
        let (fresh, cont) = (first_losses(&first), first_losses(&continued));
        assert!(
            cont < 0.6 * fresh,
            "a continued run starts where the first ended: first losses {fresh} (fresh) vs {cont} (continued)"
        );

        let prefix = TrainConfig {
            prefix: Some(PrefixConfig {
                tokens: 4,
                init: Vec::new(),
            }),
            ..cfg.clone()
        };
        let err = AdapterVars::for_training(&model, &prefix).unwrap_err();
        assert!(err.to_string().contains("it is a LoRA adapter"), "{err}");
        let mut rank8 = cfg.clone();
        rank8.lora.rank = 8;
        let err = AdapterVars::for_training(&model, &rank8).unwrap_err();
        assert!(err.to_string().contains("it is rank 4"), "{err}");
    }
}
