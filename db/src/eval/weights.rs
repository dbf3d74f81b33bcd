//! The weights benchmark (`engram eval weights`): does promoting a collection into a
//! LoRA adapter teach the model its facts, and what does it forget?
//!
//! Setup: the first passages of Quoref form one collection. Each passage's gold
//! questions are split in two: even-numbered ones are a training source (trained as
//! question-answer pairs next to the synthetic data), odd-numbered ones are the
//! held-out test set, never trained on. The collection is promoted exactly as
//! `engram promote --all` does ([`Engine::plan_promotion`] and
//! [`Engine::run_promotion`]), the adapter activated whatever the gate says, and the
//! held-out questions are asked closed-book (no context, weights) and with retrieval
//! (rag, weights + rag) through [`Engine::answer`].
//!
//! With `distill` set no gold answer is used anywhere: the even-numbered questions are
//! asked through the rag answer path as a user would (so the collection logs them),
//! and the promotion distills the rag teacher into the adapter on those logged
//! questions (a seeded fifth held out for its gate); the odd-numbered ones stay the
//! held-out test. [`DistillLevers`] change distillation's settings for the tuning
//! runs (teacher samples and temperature, learning rate, self-study questions per
//! passage, or self-study alone with the logged questions only gating).
//!
//! Any file in the Quoref extract's format works: `tests/data/fictional_*.jsonl`
//! (`scripts/fictional_kb.py`) are knowledge bases about invented entities that no
//! model has seen, a tuning one and a held-out one.

use std::ops::ControlFlow;

use engram_trainer::promote::PromoteEvent;
use engram_trainer::token_weights::TokenWeights;
use engram_trainer::PromotionReport;
use serde::Serialize;

use super::answers::{insert, score_mode, Asked, ModeScore, Sample};
use super::{Passage, Progress};
use crate::api_types::{AnswerMode, AnswerRequest};
use crate::engine::{Engine, PairInput, PromoteRequest, PromotionPlan, QuestionInput};
use crate::error::Result;

const COLLECTION: &str = "weights-bench";

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsSpec {
    pub dataset: String,
    pub passages: usize,
    pub strategies: Vec<String>,
    pub rank: usize,
    pub steps: usize,
    /// Rag passages (rag and weights + rag).
    pub k: usize,
    pub max_tokens: usize,
    pub seed: u64,
    /// Train on the even-numbered gold questions too (else synthetic data only).
    pub gold_training: bool,
    /// Context distillation with this loss (`kl`, `next-token`, `kl+next-token`) from the
    /// even-numbered questions asked through rag (their gold answers unused); None: pairs.
    pub distill: Option<String>,
    /// With `distill`: also self-study questions of these strategies (empty: none).
    pub self_study: Vec<String>,
    /// Which answer modes are scored.
    pub rows: ScoredRows,
    /// Also score full context (every passage in the prompt): the cost table's third
    /// column, for collections that fit the model's window. Only with every row.
    pub full_context: bool,
    /// Distillation's levers (defaults: the promotion's own).
    pub levers: DistillLevers,
}

/// The answer modes a run scores: fewer rows make an A/B of training settings cheaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScoredRows {
    /// No context, rag (and full context when asked), weights, weights + rag.
    #[default]
    All,
    /// Weights and weights + rag: the base model's rows do not depend on the
    /// adapter, so runs that differ only in training reuse them from one run.
    Adapter,
    /// Weights alone: a lever sweep's one figure, at a quarter of the answering.
    Weights,
}

/// The settings a distillation run can change from the promotion's defaults, applied
/// to the plan before it runs, so the eval measures them without new request fields.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DistillLevers {
    /// No logged question is trained on: the gate keeps its seeded fifth (the same
    /// questions as in the other runs, so gates compare), the rest go unused, and the
    /// training questions are the self-study ones alone (the (c)).
    pub logged_gate_only: bool,
    /// Answers the teacher samples per training question.
    pub teacher_samples: Option<usize>,
    /// The teacher's sampling temperature.
    pub teacher_temperature: Option<f64>,
    /// How the loss weighs the teacher answers' tokens.
    pub token_weights: Option<TokenWeights>,
    /// Peak learning rate.
    pub learning_rate: Option<f64>,
    /// self_qa model calls per document (each asks for three questions).
    pub self_study_rounds: Option<usize>,
    /// Share of micro-batches drawn from general text (forgetting's lever).
    pub replay_ratio: Option<f64>,
    /// Replay trained towards the base model's distributions (true) or its tokens
    /// (false) instead of the promotion's default (`PromoteOptions::replay_base_kl`).
    pub replay_base_kl: Option<bool>,
}

impl DistillLevers {
    /// Applies the levers to a planned promotion.
    fn apply(&self, plan: &mut PromotionPlan) {
        if self.logged_gate_only {
            plan.logged.train.clear();
        }
        if let Some(cfg) = plan.options.distill.as_mut() {
            cfg.samples = self.teacher_samples.unwrap_or(cfg.samples);
            cfg.temperature = self.teacher_temperature.unwrap_or(cfg.temperature);
            cfg.token_weights = self.token_weights.unwrap_or(cfg.token_weights);
        }
        let train = &mut plan.options.train;
        train.learning_rate = self.learning_rate.unwrap_or(train.learning_rate);
        train.replay_ratio = self.replay_ratio.unwrap_or(train.replay_ratio);
        plan.options.replay_base_kl = self.replay_base_kl.unwrap_or(plan.options.replay_base_kl);
        let synth = &mut plan.options.synth;
        synth.self_qa_rounds = self.self_study_rounds.unwrap_or(synth.self_qa_rounds);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightsReport {
    pub spec: WeightsSpec,
    pub train_questions: usize,
    pub held_out_questions: usize,
    pub scores: Vec<ModeScore>,
    /// (weights F1 - no-context F1) / (rag F1 - no-context F1).
    pub share_of_rag_gain_f1: f64,
    /// The same with "answer contained" instead of F1.
    pub share_of_rag_gain_contains: f64,
    /// Perplexity change on general text, percent.
    pub forgetting_percent: f64,
    /// Seconds the promotion took, answering the logged questions included.
    pub promotion_seconds: f64,
    /// Logged questions trained on (distillation; the rest gate).
    pub logged_trained: usize,
    /// Self-study questions the teacher answered (distillation).
    pub self_study_questions: usize,
    /// Teacher answer tokens trained on per passage (distillation): the synthetic
    /// tokens per document of EntiGraph's curve.
    pub teacher_tokens_per_document: f64,
    pub promotion: PromotionReport,
    pub samples: Vec<Sample>,
}

impl WeightsReport {
    /// The adapter trained: a prefix has positions, not a rank.
    fn adapter_label(&self) -> String {
        match self.promotion.version.kind {
            Some(engram_generator::AdapterKind::Prefix) => "prefix adapter".to_string(),
            _ => format!("LoRA rank {}", self.spec.rank),
        }
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "{} held-out questions ({}) over {} passages of {}; {}, {} steps, {}\n\n| mode | EM | token F1 | contains answer | prompt tokens | mean latency | median latency |\n|---|---|---|---|---|---|---|\n",
            self.held_out_questions,
            self.training_source(),
            self.spec.passages,
            self.spec.dataset,
            self.adapter_label(),
            self.spec.steps,
            data_label(
                &self.spec,
                self.self_study_questions,
                self.teacher_tokens_per_document
            ),
        );
        for s in &self.scores {
            out.push_str(&format!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} ms | {:.0} ms |\n",
                s.mode,
                s.exact_match,
                s.token_f1,
                s.contains,
                s.mean_prompt_tokens,
                s.mean_latency_ms,
                s.median_latency_ms
            ));
        }
        let shares = if self.share_of_rag_gain_f1.is_nan() {
            "rag's gain not computed (no base-model rows: --rows all scores them)".to_string()
        } else {
            format!(
                "weights recover {:.0}% of rag's F1 gain over no context ({:.0}% by answer contained)",
                100.0 * self.share_of_rag_gain_f1,
                100.0 * self.share_of_rag_gain_contains
            )
        };
        out.push_str(&format!(
            "\n{shares}; forgetting {:+.1}% perplexity on general text; training {:.1} tokens/s; promotion {:.0} s\n",
            self.forgetting_percent,
            self.promotion.train.tokens_per_s,
            self.promotion_seconds
        ));
        out
    }

    /// Where the training questions came from, for the header.
    fn training_source(&self) -> String {
        match &self.spec.distill {
            Some(loss) => format!(
                "{} asked through rag, {} of them trained on, distilled with the {loss} loss",
                self.train_questions, self.logged_trained
            ),
            None => format!("{} gold questions trained on", self.train_questions),
        }
    }
}

/// The synthetic data a run actually used, for the report's header: distillation
/// runs no strategy unless self-study was asked for, whatever `spec.strategies` holds.
fn data_label(spec: &WeightsSpec, self_study_questions: usize, tokens_per_doc: f64) -> String {
    match &spec.distill {
        Some(_) if spec.self_study.is_empty() => "no synthetic data".to_string(),
        Some(_) => format!(
            "self-study {} ({self_study_questions} questions, {tokens_per_doc:.0} teacher tokens per passage)",
            spec.self_study.join("+"),
        ),
        None => format!("strategies {}", spec.strategies.join("+")),
    }
}

/// Splits the passages' gold questions into (training pairs, held-out questions).
fn split_questions(passages: &[Passage]) -> (Vec<PairInput>, Vec<QuestionInput>) {
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for p in passages {
        for (i, (q, answers)) in p.questions.iter().zip(&p.answers).enumerate() {
            if answers.is_empty() {
                continue;
            }
            if i % 2 == 0 {
                train.push(PairInput {
                    question: q.clone(),
                    answer: answers[0].clone(),
                });
            } else {
                held.push(QuestionInput {
                    question: q.clone(),
                    answers: answers.clone(),
                });
            }
        }
    }
    (train, held)
}

fn ratio(num: f64, den: f64) -> f64 {
    if den.abs() < 1e-9 {
        f64::NAN
    } else {
        num / den
    }
}

/// Asks `questions` through the rag answer path with its defaults, as a user would:
/// the collection logs them (the replies are not kept; no gold answer is looked at).
fn ask_through_rag(engine: &Engine, questions: &[String], progress: &dyn Progress) -> Result<()> {
    progress.begin("asking the training questions (rag)", questions.len());
    for q in questions {
        let req = AnswerRequest {
            question: q.clone(),
            mode: AnswerMode::Rag,
            k: None,
            retrieval: None,
            max_tokens: Some(32),
            temperature: None,
            top_p: None,
            seed: None,
            stream: false,
        };
        engine.answer(COLLECTION, &req)?;
        progress.advance(1);
    }
    progress.end();
    Ok(())
}

/// Runs the benchmark in `engine`, a fresh throw-away database.
pub fn run_weights(
    engine: &Engine,
    spec: &WeightsSpec,
    passages: &[Passage],
    progress: &dyn Progress,
    on_event: &mut dyn FnMut(&PromoteEvent),
) -> Result<WeightsReport> {
    progress.begin("inserting passages", passages.len());
    insert(engine, COLLECTION, passages)?;
    progress.advance(passages.len());
    progress.end();
    let (mut train_pairs, held_out) = split_questions(passages);
    if !spec.gold_training || spec.distill.is_some() {
        train_pairs.clear();
    }
    let mut train_questions = train_pairs.len();
    if spec.distill.is_some() {
        let asked: Vec<String> = split_questions(passages)
            .0
            .into_iter()
            .map(|p| p.question)
            .collect();
        ask_through_rag(engine, &asked, progress)?;
        train_questions = asked.len();
    }
    let req = match &spec.distill {
        Some(loss) => PromoteRequest {
            all: true,
            max_documents: Some(passages.len().max(1)),
            strategies: (!spec.self_study.is_empty()).then(|| spec.self_study.clone()),
            rank: Some(spec.rank),
            steps: Some(spec.steps),
            seed: Some(spec.seed),
            force: true,
            method: Some("distill".into()),
            loss: Some(loss.clone()),
            ..Default::default()
        },
        None => PromoteRequest {
            all: true,
            max_documents: Some(passages.len().max(1)),
            strategies: Some(spec.strategies.clone()),
            rank: Some(spec.rank),
            steps: Some(spec.steps),
            seed: Some(spec.seed),
            force: true,
            held_out: held_out.clone(),
            train_pairs: train_pairs.clone(),
            ..Default::default()
        },
    };
    let started = std::time::Instant::now();
    let mut plan = engine.plan_promotion(COLLECTION, &req)?;
    spec.levers.apply(&mut plan);
    let logged_trained = plan.logged.train.len();
    let promotion = engine.run_promotion(&plan, &mut |e| {
        on_event(e);
        ControlFlow::Continue(())
    })?;
    let promotion_seconds = started.elapsed().as_secs_f64();

    let asked: Vec<Asked> = held_out
        .iter()
        .map(|q| Asked {
            collection: COLLECTION.into(),
            question: q.question.clone(),
            gold: q.answers.clone(),
        })
        .collect();
    let mut scores = Vec::new();
    let mut samples = Vec::new();
    for (label, mode, k) in scored_modes(spec) {
        let (score, mut some) =
            score_mode(engine, &label, mode, k, &asked, spec.max_tokens, progress)?;
        scores.push((mode, score));
        samples.append(&mut some);
    }
    // Shares of rag's gain need the base model's rows (NaN without them).
    let row = |m: AnswerMode| scores.iter().find(|(mode, _)| *mode == m).map(|(_, s)| s);
    let share = |f: fn(&ModeScore) -> f64| match (
        row(AnswerMode::None),
        row(AnswerMode::Rag),
        row(AnswerMode::Weights),
    ) {
        (Some(none), Some(rag), Some(weights)) => ratio(f(weights) - f(none), f(rag) - f(none)),
        _ => f64::NAN,
    };
    let (share_f1, share_contains) = (share(|s| s.token_f1), share(|s| s.contains));
    let scores: Vec<ModeScore> = scores.into_iter().map(|(_, s)| s).collect();
    let distilled = promotion.distill.clone().unwrap_or_default();
    Ok(WeightsReport {
        spec: spec.clone(),
        train_questions,
        promotion_seconds,
        logged_trained,
        self_study_questions: distilled.questions.saturating_sub(logged_trained),
        teacher_tokens_per_document: distilled.answer_tokens as f64 / passages.len().max(1) as f64,
        held_out_questions: held_out.len(),
        share_of_rag_gain_f1: share_f1,
        share_of_rag_gain_contains: share_contains,
        forgetting_percent: 100.0 * (promotion.tuned.perplexity / promotion.base.perplexity - 1.0),
        scores,
        promotion,
        samples,
    })
}

/// The answer modes a run scores, in the report's order, with their labels and rag
/// depth: the base model's rows (no context, rag, and full context when asked) unless
/// only the adapter's are wanted, then weights and weights + rag.
fn scored_modes(spec: &WeightsSpec) -> Vec<(String, AnswerMode, Option<usize>)> {
    let rag = format!("rag k={}", spec.k);
    let mut modes = Vec::new();
    if spec.rows == ScoredRows::All {
        modes.push(("no context".to_string(), AnswerMode::None, None));
        modes.push((rag.clone(), AnswerMode::Rag, Some(spec.k)));
        if spec.full_context {
            modes.push(("full context".to_string(), AnswerMode::Context, None));
        }
    }
    modes.push(("weights".to_string(), AnswerMode::Weights, None));
    if spec.rows != ScoredRows::Weights {
        modes.push((
            format!("weights + {rag}"),
            AnswerMode::WeightsRag,
            Some(spec.k),
        ));
    }
    modes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gold_questions_split_into_disjoint_train_and_test_halves() {
        let p = Passage {
            id: "p".into(),
            text: "t".into(),
            questions: vec!["a?".into(), "b?".into(), "c?".into(), "d?".into()],
            answers: vec![
                vec!["A".into()],
                vec!["B".into(), "b".into()],
                vec![],
                vec!["D".into()],
            ],
        };
        let (train, held) = split_questions(&[p]);
        assert_eq!(train.len(), 1, "c? has no answer and is skipped");
        assert_eq!(train[0].answer, "A");
        assert_eq!(
            held.iter().map(|q| q.question.as_str()).collect::<Vec<_>>(),
            ["b?", "d?"]
        );
        assert_eq!(held[0].answers.len(), 2);
    }

    #[test]
    fn the_header_names_only_the_synthetic_data_used() {
        let mut spec = WeightsSpec {
            dataset: "d".into(),
            passages: 1,
            strategies: vec!["cloze".into(), "person_qa".into()],
            rank: 1,
            steps: 1,
            k: 1,
            max_tokens: 1,
            seed: 0,
            gold_training: true,
            distill: None,
            self_study: Vec::new(),
            rows: ScoredRows::All,
            full_context: false,
            levers: DistillLevers::default(),
        };
        assert_eq!(data_label(&spec, 0, 0.0), "strategies cloze+person_qa");
        spec.distill = Some("kl".into());
        assert_eq!(data_label(&spec, 0, 12.0), "no synthetic data");
        spec.self_study = vec!["self_qa".into()];
        assert_eq!(
            data_label(&spec, 9, 41.6),
            "self-study self_qa (9 questions, 42 teacher tokens per passage)"
        );
        let labels = |spec: &WeightsSpec| -> Vec<String> {
            scored_modes(spec).into_iter().map(|m| m.0).collect()
        };
        let all = ["no context", "rag k=1", "weights", "weights + rag k=1"];
        assert_eq!(labels(&spec), all);
        spec.full_context = true;
        assert_eq!(labels(&spec)[2], "full context");
        spec.rows = ScoredRows::Adapter;
        assert_eq!(labels(&spec), all[2..]);
        spec.rows = ScoredRows::Weights;
        assert_eq!(labels(&spec), ["weights"]);
    }

    #[test]
    fn levers_change_only_what_they_name() {
        use engram_trainer::distill::DistillConfig;
        let options = engram_trainer::PromoteOptions {
            collection: "c".into(),
            cluster: None,
            synth: Default::default(),
            train: Default::default(),
            gate: Default::default(),
            work_dir: Default::default(),
            replay_texts: Vec::new(),
            eval_texts: Vec::new(),
            eval_max_tokens: 8,
            extra_pairs: Vec::new(),
            hold_out_every: 0,
            distill: Some(DistillConfig::default()),
            distill_questions: Vec::new(),
            replay_base_kl: false,
        };
        let mut plan = PromotionPlan {
            id: "p".into(),
            documents: Vec::new(),
            held_out: Vec::new(),
            options,
            logged: Default::default(),
        };
        for (list, q) in [(0, "a?"), (0, "b?"), (1, "c?")] {
            let picked = serde_json::from_value(serde_json::json!({"question": q, "ids": ["d"]}));
            let to = [&mut plan.logged.train, &mut plan.logged.held_out];
            to.into_iter().nth(list).unwrap().push(picked.unwrap());
        }
        let before = format!("{:?}", (&plan.options, plan.logged.len()));
        DistillLevers::default().apply(&mut plan);
        assert_eq!(format!("{:?}", (&plan.options, plan.logged.len())), before);
        DistillLevers {
            logged_gate_only: true,
            teacher_samples: Some(4),
            teacher_temperature: Some(0.8),
            token_weights: Some(TokenWeights::ContextGain),
            learning_rate: Some(2e-3),
            self_study_rounds: Some(6),
            replay_ratio: Some(0.4),
            replay_base_kl: Some(true),
        }
        .apply(&mut plan);
        assert!(plan.logged.train.is_empty(), "self-study alone trains");
        assert_eq!(
            plan.logged.held_out.len(),
            1,
            "the gate keeps its questions"
        );
        let cfg = plan.options.distill.as_ref().unwrap();
        assert_eq!((cfg.samples, cfg.temperature), (4, 0.8));
        assert_eq!(cfg.token_weights, TokenWeights::ContextGain);
        assert_eq!(cfg.top_k, DistillConfig::default().top_k);
        assert_eq!(plan.options.train.learning_rate, 2e-3);
        assert_eq!(plan.options.synth.self_qa_rounds, 6);
        assert_eq!(plan.options.train.replay_ratio, 0.4);
        assert!(plan.options.replay_base_kl);
    }

    #[test]
    fn the_fictional_knowledge_bases_are_disjoint_and_their_answers_in_their_documents() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
        let load = |name: &str| super::super::dataset::load(&root.join(name)).unwrap();
        let (tuning, held) = (
            load("fictional_tuning.jsonl"),
            load("fictional_heldout.jsonl"),
        );
        for kb in [&tuning, &held] {
            assert_eq!(kb.len(), 8);
            for p in kb {
                // Two phrasings per fact: the logged (even) and the test (odd) question
                // ask the same fact in other words, and the answer is in the document.
                assert_eq!(p.questions.len(), 8);
                for pair in p.answers.chunks(2) {
                    assert_eq!(pair[0], pair[1]);
                    assert!(p.text.contains(&pair[0][0]), "{}: {:?}", p.text, pair[0]);
                }
                for (q, a) in p.questions.iter().zip(&p.answers) {
                    assert!(!p.text.contains(q.trim_end_matches(['?', '.'])), "{q}");
                    assert!(!q.contains(&a[0]), "{q} gives away {a:?}");
                }
            }
        }
        // Split before tuning: no entity's name (a document's answers) recurs across them.
        let texts = |kb: &[Passage]| kb.iter().map(|p| p.text.clone()).collect::<String>();
        let (t, h) = (texts(&tuning), texts(&held));
        for (kb, other) in [(&tuning, &h), (&held, &t)] {
            for p in kb.iter() {
                for a in p.answers.iter().filter(|a| a[0].parse::<u32>().is_err()) {
                    assert!(!other.contains(&a[0]), "{a:?} is in both");
                }
            }
        }
    }
}
