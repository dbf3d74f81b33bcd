//! The whole promotion of a collection's knowledge into weights:
//! synthesize -> train -> gate -> register (-> activate).
//!
//! Everything lands in `work_dir` (the synthetic-data journal, checkpoints, the adapter
//! files), so a promotion interrupted at any point resumes where it stopped when run
//! again with the same options. The new version is always registered (it can be
//! inspected and activated later); it is activated only when the gate passes or
//! `gate.force` is set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use engram_generator::adapters::{peft, AdapterRegistry, AdapterVersion, BaseModel, Manifest};
use engram_generator::LanguageModel;
use serde::{Deserialize, Serialize};

use crate::continuation;
use crate::data::{QaPair, Sequence, TrainableModel};
use crate::distill::{self, DistillConfig, DistillCounts, DistillQuestion, PromptBuilder};
use crate::error::{Error, Result};
use crate::gate::{self, EvalReport, GateConfig, GateDecision, HeldOutQuestion};
use crate::synth::{
    self, Content, Document, StrategyCounts, SynthConfig, SynthItem, SynthProgress,
};
use crate::train::{self, TrainConfig, TrainProgress};

/// What to promote and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromoteOptions {
    /// The collection (registry key).
    pub collection: String,
    /// The cluster of documents chosen, if any (recorded in the manifest).
    pub cluster: Option<String>,
    /// Synthetic data.
    pub synth: SynthConfig,
    /// Training.
    pub train: TrainConfig,
    /// Gate thresholds and force.
    pub gate: GateConfig,
    /// Working directory (journal, checkpoints, adapter files): reuse it to resume.
    pub work_dir: PathBuf,
    /// General text replayed during training to limit forgetting (e.g. passages not in
    /// the collection).
    pub replay_texts: Vec<String>,
    /// General text on which forgetting is measured (keep it apart from `replay_texts`).
    pub eval_texts: Vec<String>,
    /// Longest reply generated per held-out question.
    pub eval_max_tokens: usize,
    /// Question-answer pairs the caller already has (a FAQ, gold questions), trained
    /// alongside the synthetic data.
    #[serde(default)]
    pub extra_pairs: Vec<QaPair>,
    /// When no held-out questions are given: every n-th synthetic question-answer pair
    /// is kept out of training and becomes one (0 means the default, 5).
    #[serde(default)]
    pub hold_out_every: usize,
    /// Context distillation instead of training on answer strings: questions are
    /// answered by the teacher (base model + passages) and the student learns its
    /// distributions. Synthetic question-answer items become self-study questions
    /// about their document. The gate then needs the caller's held-out questions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
    /// Questions to distill (logged questions with their rag passages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distill_questions: Vec<DistillQuestion>,
    /// Replayed text is trained towards the base model's own distributions on it
    /// (`distill::anchor_to_base`) instead of towards its tokens. Not with a
    /// continuation, whose replay holds the adapter's kept documents.
    #[serde(default)]
    pub replay_base_kl: bool,
}

/// Splits synthetic items into training items and held-out questions: every
/// `every`-th question-answer pair is held out (never trained on).
fn hold_out_synthetic(
    items: &[SynthItem],
    every: usize,
) -> (Vec<&SynthItem>, Vec<HeldOutQuestion>) {
    let every = if every == 0 { 5 } else { every.max(2) };
    let (mut train, mut held) = (Vec::new(), Vec::new());
    let mut n = 0;
    for item in items {
        if let Content::Qa { question, answer } = &item.content {
            n += 1;
            if n % every == 0 {
                held.push(HeldOutQuestion {
                    question: question.clone(),
                    answers: vec![answer.clone()],
                    facts: Vec::new(),
                });
                continue;
            }
        }
        train.push(item);
    }
    (train, held)
}

/// The two forms of the base model a promotion needs.
pub struct Models<'a> {
    /// The inference model (quantized): writes synthetic data, answers held-out questions.
    pub chat: &'a dyn LanguageModel,
    /// The trainable model (F32, differentiable): trains, measures perplexity.
    pub trainable: &'a TrainableModel,
    /// The serving prompts (teacher with passages, student without): distillation
    /// needs them.
    pub prompt: Option<PromptBuilder<'a>>,
}

/// Progress of a promotion, stage by stage.
#[derive(Debug, Clone, PartialEq)]
pub enum PromoteEvent {
    /// A document and strategy of synthesis finished.
    Synth(SynthProgress),
    /// The teacher answered `done` of `total` distillation questions.
    Teacher {
        /// Questions answered.
        done: usize,
        /// Questions in all.
        total: usize,
    },
    /// A training step finished.
    Train(TrainProgress),
    /// A model (base or adapter) was evaluated: `done` of 2.
    Evaluated {
        /// "base" or "adapter".
        which: &'static str,
        /// Its measurements.
        report: EvalReport,
    },
}

/// Training summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Training sequences (pairs and text windows) and replay windows.
    pub examples: usize,
    /// Replay windows.
    pub replay: usize,
    /// Steps done.
    pub steps: usize,
    /// Mean loss of the first and last five steps.
    pub first_loss: f64,
    /// See `first_loss`.
    pub last_loss: f64,
    /// Tokens per second of this run.
    pub tokens_per_s: f64,
    /// Seconds of this run.
    pub elapsed_s: f64,
    /// The checkpoint step it resumed from.
    pub resumed_from: Option<usize>,
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromotionReport {
    /// The collection.
    pub collection: String,
    /// The registered version.
    pub version: AdapterVersion,
    /// True when it is now the active adapter.
    pub activated: bool,
    /// The gate's verdict.
    pub gate: GateDecision,
    /// Base model measurements.
    pub base: EvalReport,
    /// Adapter measurements.
    pub tuned: EvalReport,
    /// Synthetic data per strategy.
    pub synth: BTreeMap<String, StrategyCounts>,
    /// Training.
    pub train: TrainSummary,
    /// How the adapter was taught, for people (e.g. "context distillation (kl loss)
    /// from 32 logged and 0 self-study questions").
    pub method: String,
    /// Distillation's data, when distilled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillCounts>,
}

impl PromotionReport {
    /// A plain-text table for the CLI and logs.
    pub fn summary_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "promotion of '{}' -> version {}{}\nmethod: {}",
            self.collection,
            self.version.version,
            if self.activated {
                " (active)"
            } else {
                " (not activated)"
            },
            self.method
        );
        let _ = writeln!(
            s,
            "{:<28} {:>12} {:>12} {:>10}",
            "metric", "base", "adapter", "change"
        );
        let acc = |a: &EvalReport| a.accuracy;
        for (name, b, t) in [
            (
                "closed-book exact match",
                acc(&self.base).exact_match,
                acc(&self.tuned).exact_match,
            ),
            (
                "closed-book token F1",
                acc(&self.base).f1,
                acc(&self.tuned).f1,
            ),
            (
                "answer contained",
                acc(&self.base).contains,
                acc(&self.tuned).contains,
            ),
        ] {
            let _ = writeln!(s, "{name:<28} {b:>12.3} {t:>12.3} {:>+10.3}", t - b);
        }
        if let (Some(b), Some(t)) = (acc(&self.base).fact_recall, acc(&self.tuned).fact_recall) {
            let _ = writeln!(
                s,
                "{:<28} {b:>12.3} {t:>12.3} {:>+10.3}",
                "rag facts repeated",
                t - b
            );
        }
        let (b, t) = (self.base.perplexity, self.tuned.perplexity);
        let _ = writeln!(
            s,
            "{:<28} {b:>12.3} {t:>12.3} {:>+9.1}%",
            "general-text perplexity",
            100.0 * (t / b - 1.0)
        );
        for (name, c) in &self.synth {
            let _ = writeln!(
                s,
                "{:<28} {:>12} {:>12}",
                format!("synthetic {name} (made/kept)"),
                c.generated,
                c.kept
            );
        }
        let tr = &self.train;
        let _ = writeln!(
            s,
            "{:<28} {:>12.4} {:>12.4}",
            "training loss (first/last 5)", tr.first_loss, tr.last_loss
        );
        let _ = writeln!(
            s,
            "{:<28} {:>12} {:>12.1}",
            "steps / tokens per s", tr.steps, tr.tokens_per_s
        );
        for c in &self.gate.checks {
            let _ = writeln!(s, "gate: {c}");
        }
        let _ = writeln!(s, "{}", self.gate.message);
        s
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Runs the promotion of `documents` (held-out questions about them in `held_out`; when
/// empty, some synthetic pairs are held out instead, see `hold_out_every`) and returns
/// what happened. `progress` returning `Break` cancels (`Error::Cancelled`);
/// running again with the same `work_dir` resumes.
pub fn run(
    documents: &[Document],
    held_out: &[HeldOutQuestion],
    models: Models<'_>,
    registry: &AdapterRegistry,
    options: &PromoteOptions,
    progress: &mut dyn FnMut(&PromoteEvent) -> ControlFlow<()>,
) -> Result<PromotionReport> {
    if documents.is_empty() {
        return Err(Error::NoData("no documents to promote".into()));
    }
    options.train.validate()?;
    let max_len = options.train.max_seq_len;
    let tm = models.trainable;

    // 1. Synthetic data.
    let mut cancelled = false;
    let journal = options.work_dir.join("synth.jsonl");
    let synth_cfg = SynthConfig {
        seed: options.train.seed ^ options.synth.seed,
        ..options.synth.clone()
    };
    let synth = if options.distill.is_some() && synth_cfg.strategies.is_empty() {
        synth::SynthReport::default()
    } else {
        synth::synthesize(documents, models.chat, &synth_cfg, &journal, &mut |p| {
            let flow = progress(&PromoteEvent::Synth(p.clone()));
            cancelled |= flow.is_break();
            flow
        })?
    };
    if cancelled {
        return Err(Error::Cancelled("synthetic data"));
    }
    if options.distill.is_some() && held_out.is_empty() {
        return Err(Error::NoData("distillation gates on held-out questions of another kind than its training questions (held-out logged questions): give some".into()));
    }
    let (train_items, synthetic_held_out) = if held_out.is_empty() {
        hold_out_synthetic(&synth.items, options.hold_out_every)
    } else {
        (synth.items.iter().collect(), Vec::new())
    };
    let held_out = if held_out.is_empty() {
        synthetic_held_out.as_slice()
    } else {
        held_out
    };
    if held_out.is_empty() {
        return Err(Error::NoData("no held-out questions to gate the adapter on: give some, or use a strategy that writes question-answer pairs (cloze, self_qa)".into()));
    }
    let mut examples: Vec<Sequence> = Vec::new();
    for pair in &options.extra_pairs {
        examples.extend(tm.encode_pair(pair, max_len)?);
    }
    let mut self_study = Vec::new();
    for item in train_items {
        match &item.content {
            Content::Qa { question, .. } if options.distill.is_some() => {
                let doc = documents.iter().find(|d| d.id == item.doc_id);
                self_study.push(DistillQuestion {
                    question: question.clone(),
                    passages: doc.map(|d| d.text.clone()).into_iter().collect(),
                });
            }
            Content::Qa { question, answer } => {
                let pair = QaPair {
                    question: question.clone(),
                    answer: answer.clone(),
                };
                examples.extend(tm.encode_pair(&pair, max_len)?);
            }
            Content::Text { text } => examples.extend(tm.encode_text(text, max_len)?),
        }
    }
    let distilled = match &options.distill {
        Some(cfg) => {
            let prompt = models.prompt.ok_or_else(|| {
                Error::InvalidConfig("distillation needs the serving prompt builder".into())
            })?;
            let questions: Vec<DistillQuestion> = options
                .distill_questions
                .iter()
                .chain(&self_study)
                .cloned()
                .collect();
            let teacher = distill::Teacher {
                trainable: tm,
                chat: models.chat,
                prompt,
            };
            let (seqs, counts) = distill::build_examples(
                teacher,
                &questions,
                cfg,
                options.train.seed,
                max_len,
                &mut |done, total| {
                    cancelled |= progress(&PromoteEvent::Teacher { done, total }).is_break();
                },
            )?;
            if cancelled {
                return Err(Error::Cancelled("teacher answers"));
            }
            examples.extend(seqs);
            Some(counts)
        }
        None => None,
    };
    let method = match &options.distill {
        Some(cfg) => format!(
            "context distillation ({} loss, top-{}) from {} logged and {} self-study questions",
            cfg.loss.name(),
            cfg.top_k,
            options.distill_questions.len(),
            self_study.len()
        ),
        None => "question-answer pairs (synthetic and given)".to_string(),
    };
    let mut method = match &options.train.prefix {
        Some(p) => format!("{method}, into a {}-position KV prefix", p.tokens),
        None => method,
    };
    if let Some(c) = &options.train.continue_from {
        method.push_str(&continuation::describe(c));
    }
    if examples.is_empty() {
        return Err(Error::NoData("synthesis kept no training item: try another strategy (cloze always works on text with names, numbers or dates)".into()));
    }
    let mut replay = Vec::new();
    for t in &options.replay_texts {
        replay.extend(tm.encode_text(t, max_len)?);
    }
    if options.replay_base_kl {
        if options.train.continue_from.is_some() {
            return Err(Error::InvalidConfig("replay_base_kl pulls replayed text back to the base model, and a continuation replays the adapter's kept documents: leave it off when continuing".into()));
        }
        let k = options.distill.as_ref().map_or(20, |d| d.top_k);
        crate::distill::anchor_to_base(tm.llama(), &mut replay, k)?;
    }
    let mut eval_texts = Vec::new();
    for t in &options.eval_texts {
        eval_texts.extend(tm.encode_text(t, max_len)?);
    }

    // 2. Training (resumes from checkpoints in work_dir).
    let train_cfg = crate::prefix::with_document_init(&options.train, tm, documents)?;
    let outcome = train::train(
        tm.llama(),
        &examples,
        &replay,
        &train_cfg,
        Some(&options.work_dir.join("checkpoints")),
        &mut |p| {
            let flow = progress(&PromoteEvent::Train(*p));
            cancelled |= flow.is_break();
            flow
        },
    )?;
    if cancelled || !outcome.completed {
        return Err(Error::Cancelled("training"));
    }
    let adapter = outcome.adapter(&options.collection)?;

    // 3. Gate.
    let evaluate = |adapter| -> Result<EvalReport> {
        Ok(EvalReport {
            accuracy: gate::closed_book_accuracy(
                models.chat,
                adapter,
                held_out,
                options.eval_max_tokens,
            )?,
            perplexity: gate::perplexity(tm.llama(), &eval_texts, adapter)?,
        })
    };
    let base = evaluate(None)?;
    if progress(&PromoteEvent::Evaluated {
        which: "base",
        report: base,
    })
    .is_break()
    {
        return Err(Error::Cancelled("evaluation"));
    }
    let tuned = evaluate(Some(&adapter))?;
    if progress(&PromoteEvent::Evaluated {
        which: "adapter",
        report: tuned,
    })
    .is_break()
    {
        return Err(Error::Cancelled("evaluation"));
    }
    let decision = gate::decide(&base, &tuned, &options.gate);

    // 4. Adapter files, manifest, registry.
    let out = options.work_dir.join("adapter");
    peft::save(
        &adapter,
        options.train.lora.dropout,
        &models.chat.info().name,
        &out,
    )?;
    outcome.write_loss_curve(&out)?;
    let n = outcome.losses.len();
    let train_summary = TrainSummary {
        examples: examples.len(),
        replay: replay.len(),
        steps: outcome.steps_done,
        first_loss: mean(outcome.losses.iter().take(5).map(|l| l.loss)),
        last_loss: mean(
            outcome
                .losses
                .iter()
                .skip(n.saturating_sub(5))
                .map(|l| l.loss),
        ),
        tokens_per_s: outcome.tokens_per_s,
        elapsed_s: outcome.elapsed_s,
        resumed_from: outcome.resumed_from,
    };
    let mut metrics = BTreeMap::new();
    for (k, v) in [
        ("base_f1", base.accuracy.f1),
        ("adapter_f1", tuned.accuracy.f1),
        ("base_exact_match", base.accuracy.exact_match),
        ("adapter_exact_match", tuned.accuracy.exact_match),
        ("base_perplexity", base.perplexity),
        ("adapter_perplexity", tuned.perplexity),
        ("first_loss", train_summary.first_loss),
        ("last_loss", train_summary.last_loss),
        ("tokens_per_s", train_summary.tokens_per_s),
        ("held_out_questions", held_out.len() as f64),
    ] {
        metrics.insert(k.to_string(), v);
    }
    let (document_ids, document_seqs) =
        continuation::learned(documents, options.train.continue_from.as_ref());
    let manifest = Manifest {
        collection: options.collection.clone(),
        cluster: options.cluster.clone(),
        document_ids,
        document_seqs,
        continued_from: options.train.continue_from.as_ref().map(|c| c.version),
        base_model: BaseModel {
            name: models.chat.info().name.clone(),
            sha256: tm.base_sha256().to_string(),
        },
        data_strategy: options
            .synth
            .strategies
            .iter()
            .map(|s| s.name().to_string())
            .chain(
                options
                    .distill
                    .iter()
                    .map(|c| format!("distill:{}", c.loss.name())),
            )
            .collect(),
        data_counts: synth
            .counts
            .iter()
            .map(|(k, c)| (k.clone(), c.kept))
            .collect(),
        seed: options.train.seed,
        train: serde_json::to_value(&train_cfg)
            .map_err(|e| Error::InvalidConfig(format!("training configuration: {e}")))?,
        metrics,
        created_unix: engram_generator::adapters::manifest::now_unix(),
    };
    manifest.save(&out)?;
    crate::util::write_json(&out.join("gate.json"), &decision)?;
    let mut version = registry.register(&options.collection, &out)?;
    if decision.activate {
        registry.activate(&options.collection, version.version)?;
        version.active = true;
    }
    Ok(PromotionReport {
        collection: options.collection.clone(),
        activated: version.active,
        version,
        gate: decision,
        base,
        tuned,
        synth: synth.counts,
        train: train_summary,
        method,
        distill: distilled,
    })
}
