//! The three-paradigms benchmark (`engram eval answers`): accuracy and latency of
//! answers on Quoref with no context, the full context, and rag at several k, plus the
//! cost curve of full context as the prompt grows to the model's window.
//!
//! Setup: the first passages of the dataset go into one collection (what rag searches)
//! and, `group` at a time, into small collections that fit the window (what context
//! mode sends whole). Every question of those passages is asked in every mode through
//! [`Engine::answer`], exactly as the API answers it.

use std::time::Instant;

use serde::Serialize;

use super::{Passage, Progress};
use crate::answer::prompt;
use crate::api_types::{AnswerMode, AnswerRequest, CreateCollection, DocumentInput};
use crate::engine::Engine;
use crate::error::Result;
use engram_metrics::chart;
use engram_metrics::qa::{contains_answer, exact_match, token_f1};
use engram_store::collection::Durability;

/// The collection rag searches.
const ALL: &str = "answers-all";

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerSpec {
    pub dataset: String,
    /// Passages per full-context collection.
    pub group: usize,
    /// Rag runs, one per k.
    pub rag_k: Vec<usize>,
    /// Also run context mode and the no-context baseline.
    pub context: bool,
    pub none: bool,
    /// Tokens an answer may take.
    pub max_tokens: usize,
    /// Ask at most this many questions.
    pub questions: usize,
}

/// One mode's results.
#[derive(Debug, Clone, Serialize)]
pub struct ModeScore {
    pub mode: String,
    pub questions: usize,
    pub exact_match: f64,
    pub token_f1: f64,
    /// Share of answers that contain a gold answer.
    pub contains: f64,
    pub mean_prompt_tokens: f64,
    /// Wall time of one answer, retrieval included.
    pub mean_latency_ms: f64,
    pub median_latency_ms: f64,
    pub mean_prefill_ms: f64,
    pub mean_decode_tokens_per_s: f64,
}

/// One sample answer, for reading what the model actually says.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub mode: String,
    pub question: String,
    pub gold: Vec<String>,
    pub answer: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnswerReport {
    pub spec: AnswerSpec,
    pub model: String,
    pub passages: usize,
    pub scores: Vec<ModeScore>,
    pub samples: Vec<Sample>,
}

impl AnswerReport {
    /// The results as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} questions over {} passages of {}, model {}\n\n| mode | EM | token F1 | contains answer | prompt tokens | mean latency | median latency | prefill | decode |\n|---|---|---|---|---|---|---|---|---|\n",
            self.scores.first().map(|s| s.questions).unwrap_or(0),
            self.passages,
            self.spec.dataset,
            self.model
        );
        for s in &self.scores {
            out.push_str(&format!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} tok/s |\n",
                s.mode,
                s.exact_match,
                s.token_f1,
                s.contains,
                s.mean_prompt_tokens,
                s.mean_latency_ms,
                s.median_latency_ms,
                s.mean_prefill_ms,
                s.mean_decode_tokens_per_s
            ));
        }
        out
    }
}

pub(crate) fn insert(engine: &Engine, name: &str, passages: &[Passage]) -> Result<()> {
    engine.store().create_collection(
        name,
        CreateCollection {
            durability: Some(Durability::Fast),
            ..Default::default()
        },
    )?;
    for batch in passages.chunks(32) {
        let docs = batch
            .iter()
            .map(|p| DocumentInput {
                id: Some(p.id.clone()),
                text: Some(p.text.clone()),
                ..Default::default()
            })
            .collect();
        engine.store().upsert(name, docs)?;
    }
    Ok(())
}

/// Runs the benchmark in `engine`, a fresh throw-away database.
pub fn run_answers(
    engine: &Engine,
    spec: &AnswerSpec,
    passages: &[Passage],
    progress: &dyn Progress,
) -> Result<AnswerReport> {
    progress.begin("inserting passages", passages.len());
    insert(engine, ALL, passages)?;
    let groups: Vec<&[Passage]> = passages.chunks(spec.group.max(1)).collect();
    if spec.context {
        for (g, group) in groups.iter().enumerate() {
            insert(engine, &format!("answers-group-{g}"), group)?;
        }
    }
    progress.advance(passages.len());
    progress.end();

    // (group, question, gold answers), at most `spec.questions`.
    let mut asked = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for p in group.iter() {
            for (q, gold) in p.questions.iter().zip(&p.answers) {
                asked.push((g, q.clone(), gold.clone()));
            }
        }
    }
    asked.truncate(spec.questions);

    let mut runs: Vec<(String, AnswerMode, Option<usize>)> = Vec::new();
    if spec.none {
        runs.push(("no context".into(), AnswerMode::None, None));
    }
    if spec.context {
        runs.push(("full context".into(), AnswerMode::Context, None));
    }
    for &k in &spec.rag_k {
        runs.push((format!("rag k={k}"), AnswerMode::Rag, Some(k)));
    }

    let model = engine.language_model()?.info().name.clone();
    let mut scores = Vec::new();
    let mut samples = Vec::new();
    for (label, mode, k) in runs {
        let asked: Vec<Asked> = asked
            .iter()
            .map(|(g, question, gold)| Asked {
                collection: match mode {
                    AnswerMode::Context => format!("answers-group-{g}"),
                    _ => ALL.to_string(),
                },
                question: question.clone(),
                gold: gold.clone(),
            })
            .collect();
        let (score, mut some) =
            score_mode(engine, &label, mode, k, &asked, spec.max_tokens, progress)?;
        scores.push(score);
        samples.append(&mut some);
    }
    Ok(AnswerReport {
        spec: spec.clone(),
        model,
        passages: passages.len(),
        scores,
        samples,
    })
}

/// A question to ask in a collection, with its gold answers.
#[derive(Debug, Clone)]
pub struct Asked {
    pub collection: String,
    pub question: String,
    pub gold: Vec<String>,
}

/// Asks every question in one mode through [`Engine::answer`] and scores the answers;
/// returns the score and the first five answers as samples.
pub fn score_mode(
    engine: &Engine,
    label: &str,
    mode: AnswerMode,
    k: Option<usize>,
    asked: &[Asked],
    max_tokens: usize,
    progress: &dyn Progress,
) -> Result<(ModeScore, Vec<Sample>)> {
    progress.begin(label, asked.len());
    let (mut em, mut f1, mut contains, mut tokens, mut prefill, mut tps) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let mut latencies = Vec::with_capacity(asked.len());
    let mut samples = Vec::new();
    for (i, a) in asked.iter().enumerate() {
        let req = AnswerRequest {
            question: a.question.clone(),
            mode,
            k,
            retrieval: None,
            max_tokens: Some(max_tokens),
            temperature: None,
            top_p: None,
            seed: None,
            stream: false,
        };
        let started = Instant::now();
        let r = engine.answer(&a.collection, &req)?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        em += exact_match(&r.answer, &a.gold);
        f1 += token_f1(&r.answer, &a.gold);
        contains += contains_answer(&r.answer, &a.gold);
        tokens += r.usage.prompt_tokens as f64;
        prefill += r.timing.prefill_ms;
        tps += r.timing.decode_tokens_per_s;
        if i < 5 {
            samples.push(Sample {
                mode: label.to_string(),
                question: a.question.clone(),
                gold: a.gold.clone(),
                answer: r.answer,
            });
        }
        progress.advance(1);
    }
    progress.end();
    let n = asked.len().max(1) as f64;
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let score = ModeScore {
        mode: label.to_string(),
        questions: asked.len(),
        exact_match: em / n,
        token_f1: f1 / n,
        contains: contains / n,
        mean_prompt_tokens: tokens / n,
        mean_latency_ms: latencies.iter().sum::<f64>() / n,
        median_latency_ms: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        mean_prefill_ms: prefill / n,
        mean_decode_tokens_per_s: tps / n,
    };
    Ok((score, samples))
}

/// One point of the cost curve.
#[derive(Debug, Clone, Serialize)]
pub struct CostPoint {
    pub prompt_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
}

/// Full-context cost as the prompt grows: for each target size, passages are put in
/// the prompt until it holds about that many tokens, and a short answer is generated.
pub fn cost_curve(
    engine: &Engine,
    passages: &[Passage],
    targets: &[usize],
    progress: &dyn Progress,
) -> Result<Vec<CostPoint>> {
    use engram_generator::{ChatMessage, GenerationOptions, GenerationRequest};
    let model = engine.language_model()?;
    let window = model.info().context_window;
    let options = GenerationOptions {
        max_tokens: 32,
        ..Default::default()
    };
    let question = [ChatMessage::user(
        "Which people are named in these passages?",
    )];
    progress.begin("cost curve", targets.len());
    let mut points = Vec::new();
    for &target in targets {
        let target = target.min(window - options.max_tokens - 8);
        // Grow by whole passages, then trim the last one by characters to land near the target.
        let mut texts: Vec<String> = Vec::new();
        let mut tokens = 0;
        for p in passages.iter().cycle().take(passages.len() * 4) {
            texts.push(p.text.clone());
            let msgs = prompt::grounded(&question, &passages_of(&texts));
            tokens = model.prompt_tokens(&msgs)?;
            if tokens >= target {
                break;
            }
        }
        while tokens > target {
            let last = texts.last_mut().expect("at least one passage");
            let excess_chars = (tokens - target) * 4 + 8;
            let keep = last.len().saturating_sub(excess_chars);
            let mut cut = keep;
            while !last.is_char_boundary(cut) {
                cut -= 1;
            }
            last.truncate(cut);
            let msgs = prompt::grounded(&question, &passages_of(&texts));
            tokens = model.prompt_tokens(&msgs)?;
            if cut == 0 {
                break;
            }
        }
        let messages = prompt::grounded(&question, &passages_of(&texts));
        let generation = model.complete(&GenerationRequest {
            messages: &messages,
            options: &options,
            adapter: None,
            interrupt: None,
        })?;
        let t = generation.timing;
        points.push(CostPoint {
            prompt_tokens: generation.usage.prompt_tokens,
            prefill_ms: t.prefill_ms,
            prefill_tokens_per_s: generation.usage.prompt_tokens as f64 / (t.prefill_ms / 1000.0),
            decode_tokens_per_s: t.decode_tokens_per_s,
        });
        progress.advance(1);
    }
    progress.end();
    Ok(points)
}

fn passages_of(texts: &[String]) -> Vec<prompt::Passage<'_>> {
    texts.iter().map(|t| prompt::Passage { text: t }).collect()
}

/// The cost curve as an SVG chart: prefill time (left) and decode speed (right)
/// against prompt tokens, with rag's cost (its mean prompt size and prefill) marked.
pub fn cost_chart(points: &[CostPoint], rag: Option<(&str, f64, f64, f64)>) -> String {
    let prefill: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.prompt_tokens as f64, p.prefill_ms / 1000.0))
        .collect();
    let decode: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.prompt_tokens as f64, p.decode_tokens_per_s))
        .collect();
    let rag_prefill = rag.map(|(label, tokens, ms, _)| (label, tokens, ms / 1000.0));
    let rag_decode = rag.map(|(label, tokens, _, tps)| (label, tokens, tps));
    let left = chart::line_panel("Prefill time (s)", "prompt tokens", &prefill, rag_prefill);
    let right = chart::line_panel(
        "Decode speed (tokens/s)",
        "prompt tokens",
        &decode,
        rag_decode,
    );
    chart::side_by_side(
        "Full context vs rag: what a longer prompt costs (SmolLM2-135M, CPU)",
        &[left, right],
    )
}
