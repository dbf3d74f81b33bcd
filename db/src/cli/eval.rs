//! `engram eval retrieval`: runs the library harness (`crate::eval`) in a
//! temporary database with progress bars, prints the table, writes the JSON.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::cell::RefCell;

use super::{EvalAnswersArgs, EvalRetrievalArgs, EvalWeightsArgs};
use crate::engine::Engine;
use crate::eval::{load, run_retrieval, Dataset, Progress, RetrievalSpec};
use crate::limits::Limits;

/// indicatif bars for the harness's steps.
#[derive(Default)]
pub(super) struct Bars {
    bar: RefCell<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn begin(&self, what: &str, total: usize) {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg:32} {bar:40} {pos}/{len}  {per_sec}  eta {eta}")
                .expect("valid template"),
        );
        bar.set_message(what.to_string());
        *self.bar.borrow_mut() = Some(bar);
    }

    fn advance(&self, n: usize) {
        if let Some(b) = &*self.bar.borrow() {
            b.inc(n as u64);
        }
    }

    fn end(&self) {
        if let Some(b) = self.bar.borrow_mut().take() {
            b.finish();
        }
    }
}

/// A fresh database in a temporary directory (removed when the guard drops).
fn scratch_engine() -> anyhow::Result<(tempfile::TempDir, Engine)> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let engine = Engine::open(dir.path(), Limits::default()).with_context(|| {
        format!(
            "cannot open a temporary database in {}",
            dir.path().display()
        )
    })?;
    Ok((dir, engine))
}

pub(super) fn write_json(
    out: &std::path::Path,
    value: &impl serde::Serialize,
) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(value)?;
    std::fs::write(out, json + "\n").with_context(|| format!("cannot write {}", out.display()))?;
    println!("results written to {}", out.display());
    Ok(())
}

pub fn answers(args: &EvalAnswersArgs) -> anyhow::Result<()> {
    use crate::eval::answers::{cost_chart, cost_curve, run_answers, AnswerSpec};
    let path = args.dataset.locate(args.data.as_deref())?;
    let mut passages = load(&path)?;
    anyhow::ensure!(args.limit > 0, "--limit must be at least 1");
    anyhow::ensure!(args.group > 0, "--group must be at least 1");
    passages.truncate(args.limit);
    let spec = AnswerSpec {
        dataset: args.dataset.name().to_string(),
        group: args.group,
        rag_k: args.rag_k.clone(),
        context: !args.no_context,
        none: true,
        max_tokens: args.max_tokens,
        questions: args.questions,
    };
    let (_dir, engine) = scratch_engine()?;
    let bars = Bars::default();
    let report = run_answers(&engine, &spec, &passages, &bars)?;
    println!("{}", report.table());
    for s in &report.samples {
        println!(
            "[{}] Q: {}\n    gold: {:?}\n    answer: {}",
            s.mode, s.question, s.gold, s.answer
        );
    }
    let curve = if args.cost_curve.is_empty() {
        Vec::new()
    } else {
        let points = cost_curve(&engine, &passages, &args.cost_curve, &bars)?;
        println!("\n| prompt tokens | prefill | prefill speed | decode speed |\n|---|---|---|---|");
        for p in &points {
            println!(
                "| {} | {:.0} ms | {:.0} tok/s | {:.1} tok/s |",
                p.prompt_tokens, p.prefill_ms, p.prefill_tokens_per_s, p.decode_tokens_per_s
            );
        }
        points
    };
    if let Some(chart) = &args.chart {
        anyhow::ensure!(!curve.is_empty(), "--chart needs --cost-curve");
        let rag = report
            .scores
            .iter()
            .find(|s| s.mode.starts_with("rag"))
            .map(|s| {
                (
                    s.mode.as_str(),
                    s.mean_prompt_tokens,
                    s.mean_prefill_ms,
                    s.mean_decode_tokens_per_s,
                )
            });
        std::fs::write(chart, cost_chart(&curve, rag))
            .with_context(|| format!("cannot write {}", chart.display()))?;
        println!("chart written to {}", chart.display());
    }
    if let Some(out) = &args.out {
        write_json(
            out,
            &serde_json::json!({"answers": report, "cost_curve": curve}),
        )?;
    }
    Ok(())
}

pub fn retrieval(args: &EvalRetrievalArgs) -> anyhow::Result<()> {
    let path = args.dataset.locate(args.data.as_deref())?;
    let mut passages = load(&path)?;
    if let Some(n) = args.limit {
        anyhow::ensure!(n > 0, "--limit must be at least 1");
        passages.truncate(n);
    }
    let fusion = args.fusion.fusion();
    fusion.validate()?;
    let spec = RetrievalSpec {
        dataset: args.dataset.name().to_string(),
        encoder: args.encoder.clone(),
        modes: args.mode.0.clone(),
        fusion,
        quantization: args.quantization,
        sweep: if args.sweep {
            crate::eval::fusion_sweep()
        } else {
            Vec::new()
        },
    };
    let (_dir, engine) = scratch_engine()?;
    let report = run_retrieval(&engine, &spec, &passages, &Bars::default())?;
    println!("{}", report.table());
    println!(
        "(passages embedded and inserted in {:.1} s; {} vectors, int8 walk: {}; data {})",
        report.insert_seconds,
        report.vectors,
        report.quantized,
        path.display()
    );
    if let Some(out) = &args.out {
        write_json(out, &report)?;
    }
    Ok(())
}

pub fn weights(args: &EvalWeightsArgs) -> anyhow::Result<()> {
    use crate::eval::weights::{run_weights, DistillLevers, ScoredRows, WeightsSpec};
    use engram_trainer::promote::PromoteEvent;
    let path = Dataset::Quoref.locate(args.data.as_deref())?;
    let mut passages = load(&path)?;
    anyhow::ensure!(args.limit > 0, "--limit must be at least 1");
    anyhow::ensure!(
        args.self_study_rounds.is_none_or(|r| (1..=16).contains(&r)),
        "--self-study-rounds must be between 1 and 16"
    );
    anyhow::ensure!(
        args.replay_ratio.is_none_or(|r| (0.0..=1.0).contains(&r)),
        "--replay-ratio must be between 0 and 1"
    );
    anyhow::ensure!(
        !args.full_context || args.rows == ScoredRows::All,
        "--full-context scores a base-model row: drop --rows or give --rows all"
    );
    passages.truncate(args.limit);
    let dataset = path
        .file_stem()
        .map_or("quoref".into(), |s| s.to_string_lossy());
    let spec = WeightsSpec {
        dataset: dataset.into_owned(),
        passages: passages.len(),
        strategies: args.strategy.clone(),
        rank: args.rank,
        steps: args.steps,
        k: args.k,
        max_tokens: args.max_tokens,
        seed: args.seed,
        gold_training: !args.synthetic_only,
        distill: args.distill.clone(),
        self_study: args.self_study.clone(),
        rows: args.rows,
        full_context: args.full_context,
        levers: DistillLevers {
            logged_gate_only: args.logged_gate_only,
            teacher_samples: args.teacher_samples,
            teacher_temperature: args.teacher_temperature,
            token_weights: args
                .token_weights
                .as_deref()
                .and_then(engram_trainer::token_weights::TokenWeights::parse),
            learning_rate: args.lr,
            self_study_rounds: args.self_study_rounds,
            replay_ratio: args.replay_ratio,
            replay_base_kl: args.replay.as_deref().map(|r| r == "base-kl"),
        },
    };
    let (_dir, engine) = scratch_engine()?;
    let kind = args
        .adapter
        .as_deref()
        .and_then(engram_generator::AdapterKind::parse);
    let engine = engine.with_default_adapter(kind.unwrap_or_default());
    let bars = Bars::default();
    let mut stage = "";
    let report = run_weights(&engine, &spec, &passages, &bars, &mut |e| {
        let (now, done, total) = match e {
            PromoteEvent::Synth(p) => ("synthetic data", p.done, p.total),
            PromoteEvent::Teacher { done, total } => ("teacher answers", *done, *total),
            PromoteEvent::Train(p) => ("training", p.step, p.total_steps),
            PromoteEvent::Evaluated { .. } => ("gate: base and adapter", 1, 2),
        };
        if now != stage {
            bars.end();
            bars.begin(now, total);
            stage = now;
        }
        if let Some(b) = &*bars.bar.borrow() {
            b.set_position(done as u64);
            if let PromoteEvent::Train(p) = e {
                b.set_message(format!("training (loss {:.3})", p.loss));
            }
        }
    })?;
    bars.end();
    println!("{}", report.promotion.summary_table());
    println!("{}", report.table());
    for s in &report.samples {
        println!(
            "[{}] Q: {}\n    gold: {:?}\n    answer: {}",
            s.mode, s.question, s.gold, s.answer
        );
    }
    if let Some(chart) = &args.chart {
        let svg = report.promotion.version.path.join("loss.svg");
        std::fs::copy(&svg, chart)
            .with_context(|| format!("cannot copy {} to {}", svg.display(), chart.display()))?;
        println!("loss chart written to {}", chart.display());
    }
    if let Some(out) = &args.out {
        write_json(out, &report)?;
    }
    Ok(())
}
