//! LoRA training on the generator's own llama (F32 weights, differentiable kernels).
//!
//! One optimizer step = `grad_accum` micro-batches of one sequence each (sequences differ
//! in length; one at a time needs no padding and keeps memory flat), loss averaged over
//! each sequence's target tokens, gradients summed, then AdamW with a linear warm-up +
//! cosine learning rate. A micro-batch is a replay sequence with probability
//! `replay_ratio` (general text, to limit forgetting), else the next question-answer
//! pair of a seeded per-epoch shuffle. Every random choice of step `s` derives from
//! `(seed, s)`, so a run resumed from a checkpoint continues exactly as it would have.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use candle_nn::ParamsAdamW;
use engram_generator::{Llama, LoraAdapter};
use engram_metrics::chart::{line_panel, side_by_side};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, CheckpointState, StepLoss};
use crate::data::Sequence;
use crate::error::{Error, Result};
use crate::lora::{AdapterVars, LoraConfig};
use crate::optim::{learning_rate, AdamW};
use crate::prefix::PrefixConfig;
use crate::util::mix;

/// How to train. Defaults suit memorising a few hundred facts into SmolLM2-135M.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Adapter shape.
    pub lora: LoraConfig,
    /// Train a prefix adapter of this shape instead of LoRA pairs (`lora` then unused).
    /// Left out of the JSON when None, so LoRA runs keep their fingerprints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<PrefixConfig>,
    /// Continued training: start from a stored adapter version (its PEFT files in
    /// `continue_from.dir`) instead of a fresh initialisation; its kind and shape must
    /// be the ones `lora` / `prefix` describe. Left out of the JSON when None
    /// (fingerprints of fresh runs unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continue_from: Option<crate::continuation::Continuation>,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Final learning rate as a fraction of the peak (cosine floor).
    pub min_lr_ratio: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Optimizer steps in all.
    pub steps: usize,
    /// Sequences per optimizer step (gradient accumulation).
    pub grad_accum: usize,
    /// Fraction of micro-batches drawn from replay text, in `[0, 1]` (ignored without it).
    pub replay_ratio: f64,
    /// Longest sequence trained on; longer pairs are dropped, texts cut into windows.
    pub max_seq_len: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk.
    pub keep_checkpoints: usize,
    /// Seed of initialisation, data order and dropout.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lora: LoraConfig::default(),
            prefix: None,
            continue_from: None,
            learning_rate: 1e-3,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            warmup_steps: 10,
            steps: 200,
            grad_accum: 4,
            replay_ratio: 0.25,
            max_seq_len: 256,
            checkpoint_every: 50,
            keep_checkpoints: 2,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        if let Some(prefix) = &self.prefix {
            prefix.validate()?;
        }
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.learning_rate.is_nan() || self.learning_rate <= 0.0 {
            return bad(format!(
                "learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if self.steps == 0 || self.grad_accum == 0 {
            return bad("steps and grad_accum must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.replay_ratio) || !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("replay_ratio and min_lr_ratio must be in [0, 1]".into());
        }
        if self.max_seq_len < 2 {
            return bad("max_seq_len must be at least 2".into());
        }
        Ok(())
    }
}

/// Reported after every optimizer step (the CLI draws a progress bar from it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainProgress {
    /// Steps done (1-based, counting those restored from a checkpoint).
    pub step: usize,
    /// Steps in all.
    pub total_steps: usize,
    /// This step's mean loss.
    pub loss: f64,
    /// This step's learning rate.
    pub lr: f64,
    /// Tokens (forward and backward) per second in this run so far.
    pub tokens_per_s: f64,
    /// Seconds since this run started.
    pub elapsed_s: f64,
}

/// What a training run produced.
pub struct TrainOutcome {
    /// The trained variables.
    pub vars: AdapterVars,
    /// Loss of every step (restored ones included).
    pub losses: Vec<StepLoss>,
    /// The step a checkpoint was restored from, if any.
    pub resumed_from: Option<usize>,
    /// Steps done in all.
    pub steps_done: usize,
    /// False when the progress callback stopped the run early.
    pub completed: bool,
    /// Tokens run through the model in this run (all positions, forward + backward).
    pub tokens: usize,
    /// `tokens` per second of this run.
    pub tokens_per_s: f64,
    /// Seconds this run took.
    pub elapsed_s: f64,
}

impl TrainOutcome {
    /// The trained adapter (views of the variables; dropout off).
    pub fn adapter(&self, name: &str) -> Result<LoraAdapter> {
        self.vars.adapter(name)
    }

    /// Writes `losses.json` and `loss.svg` (the loss curve) into `dir`.
    pub fn write_loss_curve(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        crate::util::write_json(&dir.join("losses.json"), &self.losses)?;
        let points: Vec<(f64, f64)> = self
            .losses
            .iter()
            .map(|l| (l.step as f64, l.loss))
            .collect();
        let svg = side_by_side(
            "LoRA training loss",
            &[line_panel("Loss (nats/token)", "step", &points, None)],
        );
        let path = dir.join("loss.svg");
        crate::util::write_atomic(&path, |tmp| {
            std::fs::write(tmp, svg.as_bytes()).map_err(|e| Error::io("writing", tmp, e))
        })
    }
}

/// Mean cross-entropy of `seq`'s target tokens under `llama` with `adapter`
/// (`(loss, target_tokens)`): the training loss, and the perplexity measure of the gate.
/// A distilled sequence (`soft` set) gives its KL loss to the teacher instead.
pub fn sequence_loss(
    llama: &Llama,
    seq: &Sequence,
    adapter: Option<&LoraAdapter>,
) -> Result<(Tensor, usize)> {
    let from = seq.loss_from.max(1);
    if seq.tokens.len() <= from {
        return Err(Error::NoData("a sequence has no target token".into()));
    }
    let n = seq.tokens.len() - from;
    if let Some(soft) = &seq.soft {
        return Ok((crate::distill::sequence_kl(llama, seq, soft, adapter)?, n));
    }
    Ok((llama.next_token_loss(&seq.tokens, from, adapter)?, n))
}

/// Which sequence micro-batch `g` trains on.
fn pick<'a>(
    g: usize,
    examples: &'a [Sequence],
    replay: &'a [Sequence],
    cfg: &TrainConfig,
) -> &'a Sequence {
    let draw = mix(cfg.seed ^ mix(g as u64 ^ 0xA5A5)) as f64 / u64::MAX as f64;
    let (pool, salt) = if !replay.is_empty() && (examples.is_empty() || draw < cfg.replay_ratio) {
        (replay, 0x5EED)
    } else {
        (examples, 0xE8A3)
    };
    let n = pool.len();
    let (epoch, pos) = (g / n, g % n);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(mix(cfg.seed
        ^ salt
        ^ mix(epoch as u64))));
    &pool[order[pos]]
}

/// Identifies a run: configuration, data and model shape. Checkpoints of another run are
/// refused instead of silently mixed.
fn fingerprint(
    llama: &Llama,
    examples: &[Sequence],
    replay: &[Sequence],
    cfg: &TrainConfig,
) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(cfg).unwrap_or_default());
    h.update(format!("{:?}", llama.config()).as_bytes());
    for (tag, set) in [(b'e', examples), (b'r', replay)] {
        for s in set {
            h.update([tag]);
            h.update((s.loss_from as u64).to_le_bytes());
            for t in &s.tokens {
                h.update(t.to_le_bytes());
            }
            if let Some(soft) = &s.soft {
                h.update(soft.hard_weight.to_le_bytes());
                for (id, l) in soft.ids.iter().zip(&soft.logits) {
                    h.update(id.to_le_bytes());
                    h.update(l.to_le_bytes());
                }
                for w in soft.row_weights.iter().flatten() {
                    h.update(w.to_le_bytes());
                }
            }
        }
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Trains a LoRA adapter on `examples` (and `replay`) with `llama`, which must be in
/// differentiable mode (see `TrainableModel`). With `checkpoint_dir`, resumes from the
/// newest checkpoint there and writes new ones every `checkpoint_every` steps and at the
/// end. `progress` is called after every step; returning `Break` stops the run (the
/// outcome then has `completed: false`).
pub fn train(
    llama: &Llama,
    examples: &[Sequence],
    replay: &[Sequence],
    cfg: &TrainConfig,
    checkpoint_dir: Option<&Path>,
    progress: &mut dyn FnMut(&TrainProgress) -> ControlFlow<()>,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    if llama.kernels() != engram_generator::Kernels::Differentiable {
        return Err(Error::InvalidConfig(
            "the model runs fused kernels that drop gradients: load it with TrainableModel (GgufChatModel::load_for_training)".into(),
        ));
    }
    let usable = |s: &&Sequence| s.tokens.len() <= cfg.max_seq_len && s.target_count() > 0;
    let examples: Vec<Sequence> = examples.iter().filter(usable).cloned().collect();
    let replay: Vec<Sequence> = replay.iter().filter(usable).cloned().collect();
    if examples.is_empty() && replay.is_empty() {
        return Err(Error::NoData(format!(
            "no training sequence fits in max_seq_len = {} tokens",
            cfg.max_seq_len
        )));
    }
    let vars = AdapterVars::for_training(llama, cfg)?;
    let params = ParamsAdamW {
        lr: cfg.learning_rate,
        weight_decay: cfg.weight_decay,
        ..Default::default()
    };
    let mut optimizer = AdamW::new(vars.vars(), params)?;
    let fp = fingerprint(llama, &examples, &replay, cfg);
    let mut state = CheckpointState {
        step: 0,
        seed: cfg.seed,
        fingerprint: fp.clone(),
        losses: Vec::new(),
        tokens: 0,
    };
    let mut resumed_from = None;
    if let Some(dir) = checkpoint_dir {
        if let Some(restored) = checkpoint::restore_latest(dir, &fp, &vars, &mut optimizer)? {
            tracing::info!("resuming training from step {}", restored.step);
            resumed_from = Some(restored.step);
            state = restored;
        }
    }
    let mut adapter = vars.adapter("training")?;
    let start = Instant::now();
    let mut tokens = 0usize;
    let mut completed = true;
    let all_vars = vars.vars();
    while state.step < cfg.steps {
        let step = state.step;
        let lr = learning_rate(
            step,
            cfg.learning_rate,
            cfg.warmup_steps,
            cfg.steps,
            cfg.min_lr_ratio,
        );
        optimizer.set_lr(lr);
        let mut acc: Vec<Option<Tensor>> = vec![None; all_vars.len()];
        let mut loss_sum = 0.0;
        for micro in 0..cfg.grad_accum {
            let g = step * cfg.grad_accum + micro;
            let seq = pick(g, &examples, &replay, cfg);
            adapter.set_dropout(cfg.lora.dropout, mix(cfg.seed ^ mix(g as u64 ^ 0xD80)))?;
            let (loss, n) = sequence_loss(llama, seq, Some(&adapter))?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            let grads = (loss / cfg.grad_accum as f64)?.backward()?;
            for (slot, var) in acc.iter_mut().zip(&all_vars) {
                if let Some(grad) = grads.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(sum) => (sum + grad)?,
                        None => grad.clone(),
                    });
                }
            }
            tokens += seq.tokens.len();
            state.tokens += n;
        }
        optimizer.step_with(&acc)?;
        state.step += 1;
        let loss = loss_sum / cfg.grad_accum as f64;
        if !loss.is_finite() {
            return Err(Error::InvalidConfig(format!(
                "the loss diverged (it is {loss} at step {}): lower the learning rate",
                state.step
            )));
        }
        state.losses.push(StepLoss {
            step: state.step,
            loss,
            lr,
        });
        if let Some(dir) = checkpoint_dir {
            let due = cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every);
            if due || state.step == cfg.steps {
                checkpoint::save(dir, &vars, &optimizer, &state, cfg.keep_checkpoints)?;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let report = TrainProgress {
            step: state.step,
            total_steps: cfg.steps,
            loss,
            lr,
            tokens_per_s: tokens as f64 / elapsed.max(1e-9),
            elapsed_s: elapsed,
        };
        if progress(&report).is_break() {
            completed = state.step == cfg.steps;
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(TrainOutcome {
        vars,
        losses: state.losses,
        resumed_from,
        steps_done: state.step,
        completed,
        tokens,
        tokens_per_s: tokens as f64 / elapsed.max(1e-9),
        elapsed_s: elapsed,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::testing::tiny_train_config as config;
    use crate::testing::{max_diff, tiny_examples, tiny_model, tiny_replay};

    fn weights(o: &TrainOutcome) -> HashMap<String, Tensor> {
        o.vars.named()
    }

    #[test]
    fn loss_falls_and_every_variable_gets_a_gradient() {
        let model = tiny_model();
        let (examples, replay) = (tiny_examples(), tiny_replay());
        let cfg = TrainConfig {
            replay_ratio: 0.0,
            lora: LoraConfig {
                dropout: 0.0,
                ..config().lora
            },
            steps: 30,
            ..config()
        };
        let out = train(&model, &examples, &replay, &cfg, None, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        let first = out.losses[..3].iter().map(|l| l.loss).sum::<f64>() / 3.0;
        let last = out.losses[27..].iter().map(|l| l.loss).sum::<f64>() / 3.0;
        assert!(last < 0.5 * first, "loss {first} -> {last}");
        assert!(out.completed && out.steps_done == 30 && out.tokens > 0);

        // After training B is non-zero, so every A and B receives a non-zero gradient
        // through the generator's forward pass.
        let adapter = out.adapter("t").unwrap();
        let (loss, _) = sequence_loss(&model, &examples[0], Some(&adapter)).unwrap();
        let grads = loss.backward().unwrap();
        let vars = out.vars.vars();
        assert_eq!(vars.len(), 2 * 7 * 2, "A and B for 7 targets in 2 blocks");
        for (i, v) in vars.iter().enumerate() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for var {i}"));
            let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(norm > 0.0, "zero gradient for var {i}");
        }
    }

    #[test]
    fn resume_after_interruption_gives_the_same_weights_as_one_run() {
        let model = tiny_model();
        let (examples, replay) = (tiny_examples(), tiny_replay());
        let cfg = config();
        let straight = train(&model, &examples, &replay, &cfg, None, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();

        let dir = tempfile::tempdir().unwrap();
        // Stopped after step 8: the newest checkpoint is step 6 (every 3); steps 7-8 are
        // lost as in a kill -9 (they were never checkpointed).
        let first = train(
            &model,
            &examples,
            &replay,
            &cfg,
            Some(dir.path()),
            &mut |p| {
                if p.step == 8 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
        assert!(!first.completed);
        let kept: Vec<usize> = checkpoint::list(dir.path())
            .unwrap()
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(kept, vec![3, 6], "two newest checkpoints kept");
        // A half-written checkpoint (the process died while writing) is ignored.
        std::fs::create_dir_all(dir.path().join(".tmp-step-crash")).unwrap();
        std::fs::write(
            dir.path().join(".tmp-step-crash/state.json"),
            b"{\"step\": 9",
        )
        .unwrap();

        let resumed = train(
            &model,
            &examples,
            &replay,
            &cfg,
            Some(dir.path()),
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(resumed.resumed_from, Some(6));
        assert!(resumed.completed && resumed.steps_done == 12);
        assert_eq!(resumed.losses.len(), 12);
        let (a, b) = (weights(&straight), weights(&resumed));
        for (k, v) in &a {
            let d = max_diff(v, &b[k]);
            assert!(d < 1e-6, "{k} differs by {d}");
        }
        for (x, y) in straight.losses.iter().zip(&resumed.losses) {
            assert!((x.loss - y.loss).abs() < 1e-5, "{x:?} vs {y:?}");
        }
        assert!(!dir.path().join(".tmp-step-crash").exists());

        // A checkpoint of another run is refused, not mixed in.
        let other = TrainConfig { seed: 8, ..cfg };
        let err = train(
            &model,
            &examples,
            &replay,
            &other,
            Some(dir.path()),
            &mut |_| ControlFlow::Continue(()),
        );
        assert!(matches!(err, Err(Error::Refused(_))));
    }

    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_one_before_or_a_fresh_start() {
        let model = tiny_model();
        let (examples, replay) = (tiny_examples(), tiny_replay());
        let cfg = config();
        let run = |dir: &Path, stop_at: Option<usize>| {
            train(&model, &examples, &replay, &cfg, Some(dir), &mut |p| {
                if Some(p.step) == stop_at {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap()
        };
        let straight = train(&model, &examples, &replay, &cfg, None, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        let truncate = |checkpoint: &Path| {
            let tensors = checkpoint.join("tensors.safetensors");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(tensors)
                .unwrap();
            f.set_len(f.metadata().unwrap().len() / 2).unwrap();
        };
        // The newest checkpoint (step 6) is damaged: the run resumes from step 3 and
        // still reaches the uninterrupted run's weights.
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), Some(8));
        truncate(&dir.path().join("step-000006"));
        let resumed = run(dir.path(), None);
        assert_eq!(resumed.resumed_from, Some(3));
        assert!(resumed.completed);
        let (a, b) = (weights(&straight), weights(&resumed));
        for (k, v) in &a {
            assert!(max_diff(v, &b[k]) < 1e-6, "{k}");
        }
        // Every checkpoint damaged: training starts over instead of failing.
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), Some(8));
        for (_, c) in checkpoint::list(dir.path()).unwrap() {
            std::fs::write(c.join("state.json"), b"{\"step\": ").unwrap();
        }
        let fresh = run(dir.path(), None);
        assert_eq!(fresh.resumed_from, None);
        assert!(fresh.completed && fresh.steps_done == 12);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let model = tiny_model();
        let cfg = TrainConfig {
            max_seq_len: 3,
            ..config()
        };
        let err = train(&model, &tiny_examples(), &[], &cfg, None, &mut |_| {
            ControlFlow::Continue(())
        });
        assert!(matches!(err, Err(Error::NoData(_))));
        let cfg = TrainConfig {
            lora: LoraConfig {
                targets: vec!["qq".into()],
                ..Default::default()
            },
            ..config()
        };
        let err = train(&model, &tiny_examples(), &[], &cfg, None, &mut |_| {
            ControlFlow::Continue(())
        });
        assert!(matches!(err, Err(Error::InvalidConfig(m)) if m.contains("qq")));
        let fast = tiny_model().with_kernels(engram_generator::Kernels::Fast);
        assert!(
            train(&fast, &tiny_examples(), &[], &config(), None, &mut |_| {
                ControlFlow::Continue(())
            })
            .is_err()
        );
    }
}
