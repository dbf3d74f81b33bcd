//! `engram eval retrieval`: runs the library harness (`crate::eval`) in a
//! temporary database with progress bars, prints the table, writes the JSON.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::cell::RefCell;

use super::EvalRetrievalArgs;
use crate::engine::Engine;
use crate::eval::{load, run_retrieval, Progress, RetrievalSpec};
use crate::limits::Limits;

/// indicatif bars for the harness's steps.
#[derive(Default)]
struct Bars {
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

pub fn retrieval(args: &EvalRetrievalArgs) -> anyhow::Result<()> {
    let path = args
        .data
        .clone()
        .unwrap_or_else(|| args.dataset.default_path());
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
        sweep: if args.sweep {
            crate::eval::fusion_sweep()
        } else {
            Vec::new()
        },
    };
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let engine = Engine::open(dir.path(), Limits::default()).with_context(|| {
        format!(
            "cannot open a temporary database in {}",
            dir.path().display()
        )
    })?;
    let report = run_retrieval(&engine, &spec, &passages, &Bars::default())?;
    println!("{}", report.table());
    println!(
        "(passages embedded and inserted in {:.1} s; data {})",
        report.insert_seconds,
        path.display()
    );
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(out, json + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("results written to {}", out.display());
    }
    Ok(())
}
