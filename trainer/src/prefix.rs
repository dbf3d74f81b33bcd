//! Training a prefix adapter (Cartridges): the trainable variables are the keys and
//! values of `P` prefix positions per block, nothing else.
//!
//! Everything else is the LoRA pipeline's: [`crate::train()`] runs the same loop over
//! the same examples (distilled teacher top-k KL or next-token pairs, replay), the same
//! checkpoints and the same gate; only what [`crate::AdapterVars`] holds differs. The
//! prefix starts as the base model's KV cache of the first `P` tokens of the promoted
//! documents (`init`, filled by `promote::run` when empty), so step 0 is "the model
//! has read the start of the documents", and the optimizer moves it from there.

use candle_core::Var;
use engram_generator::prefix::MAX_PREFIX_TOKENS;
use engram_generator::{KvPrefix, Llama, LlamaConfig, LoraAdapter};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::synth::Document;
use crate::{TrainConfig, TrainableModel};

/// The prefix adapter's shape and initialisation (training with it instead of LoRA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrefixConfig {
    /// Prefix positions `P`, 1 to 2,048.
    pub tokens: usize,
    /// The token ids whose KV cache initialises the prefix (at least `tokens` of them;
    /// the first `tokens` are used). `promote::run` fills it from the documents.
    pub init: Vec<u32>,
}

impl Default for PrefixConfig {
    /// 256 positions (about one Quoref passage); no init tokens yet.
    fn default() -> Self {
        Self {
            tokens: 256,
            init: Vec::new(),
        }
    }
}

impl PrefixConfig {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_PREFIX_TOKENS).contains(&self.tokens) {
            return Err(Error::InvalidConfig(format!(
                "prefix tokens must be between 1 and {MAX_PREFIX_TOKENS}, got {}",
                self.tokens
            )));
        }
        Ok(())
    }
}

/// `train` with its prefix's init tokens filled from the documents' text (in order,
/// until there are as many as prefix positions) when it trains a prefix with none
/// given and does not continue from a stored adapter; otherwise `train` unchanged.
pub fn with_document_init(
    train: &TrainConfig,
    model: &TrainableModel,
    documents: &[Document],
) -> Result<TrainConfig> {
    let mut out = train.clone();
    // Continued training starts from the stored prefix: no init tokens needed.
    let fresh = train.continue_from.is_none();
    if let Some(prefix) = out.prefix.as_mut().filter(|p| p.init.is_empty() && fresh) {
        for doc in documents {
            if prefix.init.len() >= prefix.tokens {
                break;
            }
            prefix.init.extend(
                model
                    .chat()
                    .tokenizer()
                    .encode(&format!("{}\n\n", doc.text))?,
            );
        }
        prefix.init.truncate(prefix.tokens);
    }
    Ok(out)
}

/// The trainable keys and values, `(1, n_kv_head, P, head_dim)` per block.
#[derive(Debug, Clone)]
pub struct PrefixVars {
    cfg: LlamaConfig,
    layers: Vec<(Var, Var)>,
}

impl PrefixVars {
    /// The KV cache of the first `prefix.tokens` of `prefix.init` under `llama` (no
    /// adapter), as variables. Fails when there are fewer init tokens than positions.
    pub fn init(llama: &Llama, prefix: &PrefixConfig) -> Result<Self> {
        prefix.validate()?;
        if prefix.init.len() < prefix.tokens {
            return Err(Error::NoData(format!(
                "a {}-position prefix is initialised from as many tokens of the documents, and they have {}: lower the prefix size",
                prefix.tokens,
                prefix.init.len()
            )));
        }
        let cache = KvPrefix::from_tokens(llama, &prefix.init[..prefix.tokens])?;
        Self::from_prefix(llama.config(), &cache)
    }

    /// Variables holding a copy of `kv`'s keys and values: a fresh prefix's KV cache,
    /// or a stored prefix adapter's when training continues from it.
    pub fn from_prefix(cfg: &LlamaConfig, kv: &KvPrefix) -> Result<Self> {
        let layers = (0..kv.n_layer())
            .map(|i| {
                let (k, v) = kv.layer(i);
                Ok((Var::from_tensor(k)?, Var::from_tensor(v)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            layers,
        })
    }

    /// Keys then values of every block, in block order (the optimizer's order), with
    /// their checkpoint names.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, (k, v))| {
                [
                    (format!("{i}.prefix.K"), k.clone()),
                    (format!("{i}.prefix.V"), v.clone()),
                ]
            })
            .collect()
    }

    /// A prefix adapter named `name` whose tensors are these variables (an update is
    /// seen at once; gradients reach them through the forward pass).
    pub fn adapter(&self, name: &str) -> Result<LoraAdapter> {
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| (k.as_tensor().clone(), v.as_tensor().clone()))
            .collect();
        Ok(LoraAdapter::prefix_only(
            name,
            &self.cfg,
            KvPrefix::new(&self.cfg, layers)?,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::distill::SoftTargets;
    use crate::testing::{tiny_examples, tiny_model};
    use crate::{train, LoraConfig, Sequence, TrainConfig};

    /// The distillation loop with the prefix as the only trainable parameters: the KL
    /// to a teacher that reads a passage falls, starting from a prefix made of other
    /// text. The teacher's top-k rows come from the same model with the passage in front.
    #[test]
    fn kl_training_of_a_prefix_lowers_the_loss() {
        let model = tiny_model();
        let cfg = model.config().clone();
        let passage = [7u32, 21, 4, 38, 12, 9];
        let examples: Vec<Sequence> = tiny_examples()
            .into_iter()
            .map(|seq| {
                let mut read: Vec<u32> = passage.to_vec();
                read.extend(&seq.tokens);
                let logits = model
                    .forward_all(&read, &mut engram_generator::KvCache::new(&cfg, 32), None)
                    .unwrap();
                let from = passage.len() + seq.loss_from - 1;
                let rows = logits
                    .narrow(0, from, seq.tokens.len() - seq.loss_from)
                    .unwrap();
                Sequence {
                    soft: Some(std::sync::Arc::new(SoftTargets::top_k(&rows, 8).unwrap())),
                    ..seq
                }
            })
            .collect();
        let config = TrainConfig {
            lora: LoraConfig {
                dropout: 0.0,
                ..Default::default()
            },
            prefix: Some(PrefixConfig {
                tokens: 4,
                init: vec![30, 2, 16, 25, 1],
            }),
            learning_rate: 5e-2,
            warmup_steps: 2,
            steps: 40,
            grad_accum: 2,
            replay_ratio: 0.0,
            ..Default::default()
        };
        let out = train(&model, &examples, &[], &config, None, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        let first = out.losses[..3].iter().map(|l| l.loss).sum::<f64>() / 3.0;
        let last = out.losses[37..].iter().map(|l| l.loss).sum::<f64>() / 3.0;
        assert!(last < first * 0.6, "KL {first} -> {last}");
        let adapter = out.adapter("p").unwrap();
        assert_eq!(adapter.prefix_len(), 4);
        assert_eq!(adapter.len(), 0, "no LoRA pair was trained");
        assert_eq!(out.vars.vars().len(), 2 * cfg.n_layer);
    }

    #[test]
    fn too_few_init_tokens_or_a_bad_size_are_refused() {
        let model = tiny_model();
        let short = PrefixConfig {
            tokens: 8,
            init: vec![1, 2, 3],
        };
        assert!(matches!(
            PrefixVars::init(&model, &short),
            Err(Error::NoData(_))
        ));
        let zero = PrefixConfig {
            tokens: 0,
            init: vec![1],
        };
        assert!(PrefixVars::init(&model, &zero).is_err());
    }
}
