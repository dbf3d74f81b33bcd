//! `engram eval inversion`: how much of held-out text the attack recovers.
//!
//! One search per text at the largest step budget serves every smaller budget: the
//! search is deterministic and a budget only cuts it short, so the best hypothesis
//! after step s (and the time it was reached) is exactly what a run with budget s
//! returns.

use std::sync::Arc;

use engram_embedder::TextEncoder;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::inverter::Inverter;
use crate::lexicon::Lexicon;
use crate::lm_prior::LanguagePrior;
use crate::metrics::{bleu4, cosine, exact_match, token_f1};
use crate::pii::{PiiRow, PlantedText};
use crate::probe::Probe;
use crate::search::{CosineSearch, SearchOptions};

/// One method's means over the evaluation texts.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub method: String,
    pub token_f1: f64,
    pub bleu: f64,
    pub exact_match: f64,
    pub cosine: f64,
    pub seconds_per_text: f64,
}

/// An example for the report: the original and what each method made of it.
#[derive(Debug, Clone, Serialize)]
pub struct EvalExample {
    pub original: String,
    pub bag: String,
    pub hypothesis: String,
    pub corrected: String,
    pub cosine: f32,
    /// The reconstruction at each of the report's budgets, in `budgets` order.
    pub by_budget: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub texts: usize,
    pub options: SearchOptions,
    pub budgets: Vec<usize>,
    /// Mean seconds per text to reach each budget's reconstruction, in `budgets` order.
    pub budget_seconds: Vec<f64>,
    pub rows: Vec<EvalRow>,
    /// Every text with its reconstructions (at the largest budget), in eval order.
    pub examples: Vec<EvalExample>,
}

impl EvalReport {
    /// The table `engram eval inversion` prints (markdown).
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| method | token F1 | BLEU-4 | exact match | cosine | s / text |\n|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            s += &format!(
                "| {} | {:.3} | {:.1} | {:.3} | {:.3} | {:.2} |\n",
                r.method, r.token_f1, r.bleu, r.exact_match, r.cosine, r.seconds_per_text
            );
        }
        s
    }

    /// The PII benchmark's tally at each budget above 0; `texts` are the planted
    /// texts this report evaluated, in order.
    pub fn pii_rows(&self, texts: &[PlantedText]) -> Vec<PiiRow> {
        self.budgets
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b > 0)
            .map(|(k, &b)| {
                let recs: Vec<&str> = self
                    .examples
                    .iter()
                    .map(|e| e.by_budget[k].as_str())
                    .collect();
                PiiRow::tally(texts, &recs, b, self.budget_seconds[k])
            })
            .collect()
    }
}

#[derive(Default)]
struct Sums {
    f1: f64,
    bleu: f64,
    em: f64,
    cos: f64,
    secs: f64,
}

impl Sums {
    fn add(&mut self, original: &str, text: &str, cos: f32, secs: f64) {
        self.f1 += token_f1(original, text);
        self.bleu += bleu4(original, text);
        self.em += exact_match(original, text) as u8 as f64;
        self.cos += cos as f64;
        self.secs += secs;
    }

    fn row(&self, method: String, n: usize) -> EvalRow {
        let n = n.max(1) as f64;
        EvalRow {
            method,
            token_f1: self.f1 / n,
            bleu: self.bleu / n,
            exact_match: self.em / n,
            cosine: self.cos / n,
            seconds_per_text: self.secs / n,
        }
    }
}

/// The attack under evaluation: the probe, and what else the search may use.
pub struct Attack {
    pub probe: Arc<Probe>,
    /// Re-ranks the search's candidates when `opts.lm_weight` is set.
    pub lm: Option<Arc<dyn LanguagePrior>>,
    /// Adds its proposals (see `candidates.rs`).
    pub lexicon: Option<Arc<Lexicon>>,
    pub opts: SearchOptions,
}

/// Inverts every text's embedding; `budgets` are the step budgets to report (the
/// search runs to the largest). `progress(done, total)` after every text.
pub fn evaluate(
    texts: &[String],
    encoder: &dyn TextEncoder,
    attack: Attack,
    budgets: &[usize],
    progress: &dyn Fn(usize, usize),
) -> Result<EvalReport> {
    let Attack {
        probe,
        lm,
        lexicon,
        opts,
    } = attack;
    if texts.is_empty() {
        return Err(Error::invalid("texts", "nothing to evaluate"));
    }
    let mut budgets = budgets.to_vec();
    budgets.sort_unstable();
    budgets.dedup();
    let max = budgets.last().copied().unwrap_or(0);
    let mut search = CosineSearch::new(probe, SearchOptions { steps: max, ..opts })?;
    if let Some(lm) = lm {
        search = search.with_language_prior(lm);
    }
    if let Some(lex) = lexicon {
        search = search.with_lexicon(lex);
    }
    let (mut bow, mut hyp) = (Sums::default(), Sums::default());
    let mut per_budget: Vec<Sums> = budgets.iter().map(|_| Sums::default()).collect();
    let mut examples = Vec::new();
    for (i, original) in texts.iter().enumerate() {
        let target = encoder.embed(&[original])?.remove(0);
        let t0 = std::time::Instant::now();
        let bag = search.bag(&target).join(" ");
        let bag_secs = t0.elapsed().as_secs_f64();
        let bag_cos = if bag.is_empty() {
            0.0
        } else {
            cosine(&encoder.embed(&[&bag])?[0], &target)
        };
        bow.add(original, &bag, bag_cos, bag_secs);
        let inv = search.invert(&target, encoder)?;
        let first = &inv.trajectory[0];
        hyp.add(original, &first.text, first.cosine, first.seconds);
        let mut by_budget = Vec::with_capacity(budgets.len());
        for (b, sums) in budgets.iter().zip(&mut per_budget) {
            // The best hypothesis after step b (or the last, if the search stopped early).
            let h = inv
                .trajectory
                .iter()
                .take_while(|h| h.step <= *b)
                .last()
                .unwrap_or(first);
            sums.add(original, &h.text, h.cosine, h.seconds);
            by_budget.push(h.text.clone());
        }
        examples.push(EvalExample {
            original: original.clone(),
            bag: bag.clone(),
            hypothesis: first.text.clone(),
            corrected: inv.text.clone(),
            cosine: inv.cosine,
            by_budget,
        });
        progress(i + 1, texts.len());
    }
    let n = texts.len();
    let mut rows = vec![
        bow.row("BoW probe (baseline)".into(), n),
        hyp.row("hypothesis only".into(), n),
    ];
    for (b, sums) in budgets.iter().zip(&per_budget) {
        if *b > 0 {
            rows.push(sums.row(format!("hypothesis + correction, {b} steps"), n));
        }
    }
    let budget_seconds = per_budget.iter().map(|s| s.secs / n as f64).collect();
    Ok(EvalReport {
        texts: n,
        budget_seconds,
        options: search.options(),
        budgets,
        rows,
        examples,
    })
}
