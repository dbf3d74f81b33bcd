//! `engram train inverter`, `engram eval inversion` and `engram audit`: the CLI side
//! of the leakage audit (`engram_inverter`). Training and evaluation run locally on
//! the dataset files; `audit` is a client of a running server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use engram_embedder::MiniLm;
use engram_inverter::audit::{self, AuditDoc, AuditInput, AuditQuery};
use engram_inverter::corpus::{self, HELD_OUT_RULE};
use engram_inverter::lexicon::Lexicon;
use engram_inverter::lm_prior::{LanguagePrior, SmolLmPrior};
use engram_inverter::pii::AttackStrength;
use engram_inverter::probe;
use engram_inverter::train_probe::{
    self, DatasetFile, PassageText, ProbeCorpus, ProbeTraining, TrainingEvent, TEXT_TOKENS,
};
use engram_inverter::{AuditOptions, AuditReport, Defence, Probe, SearchOptions, TrainOptions};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::client::Client;
use crate::engine::AuditStatus;
use crate::eval::{load, Dataset, Passage};
use engram_store::jobs::JobState;

#[derive(Subcommand, Debug)]
pub enum TrainWhat {
    /// Train the inverter's bag-of-words probe on DROP and the non-held-out Quoref
    /// passages and write the artifact (weights + manifest).
    Inverter(TrainInverterArgs),
    /// Train the learned contextual stage two on DROP (or Quoref) and write its weights,
    /// manifest and loss chart [default: embedder/weights].
    Contextual(super::contextual::TrainContextualArgs),
}

#[derive(Args, Debug)]
pub struct TrainInverterArgs {
    /// DROP file [default: ~/.cache/engram/data/drop.jsonl].
    #[arg(long)]
    pub drop: Option<PathBuf>,
    /// Quoref file [default: ~/.cache/engram/data/quoref.jsonl].
    #[arg(long)]
    pub quoref: Option<PathBuf>,
    /// Where to write probe.safetensors and probe.json [default: inverter/artifacts].
    #[arg(long, env = "ENGRAM_INVERTER_DIR")]
    pub out: Option<PathBuf>,
    /// Vocabulary size (most frequent words of the training text).
    #[arg(long, default_value_t = 20_000)]
    pub vocab: usize,
    /// Training texts used at most (a seeded sample of all windows).
    #[arg(long, default_value_t = 100_000)]
    pub max_texts: usize,
    #[arg(long, default_value_t = 4)]
    pub seed: u64,
    /// Reuse (or write) the training texts' embeddings here: retraining with other
    /// settings then skips the slow part. Keyed by the texts' SHA-256.
    #[arg(long)]
    pub embeddings_cache: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalInversionArgs {
    /// Quoref file [default: ~/.cache/engram/data/quoref.jsonl].
    #[arg(long)]
    pub quoref: Option<PathBuf>,
    /// Probe directory [default: inverter/artifacts].
    #[arg(long, env = "ENGRAM_INVERTER_DIR")]
    pub probe: Option<PathBuf>,
    /// Evaluate on this PII benchmark file (JSON lines of texts with planted secrets,
    /// e.g. inverter/data/pii_eval.jsonl) instead of the Quoref held-out windows, and
    /// tally the names, e-mails and numbers recovered at each budget.
    #[arg(long)]
    pub pii: Option<PathBuf>,
    /// Held-out texts evaluated (at most 200).
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Step budgets reported (comma-separated); the search runs to the largest.
    #[arg(long, default_value = "5,10,20,40", value_delimiter = ',')]
    pub steps: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    pub beam: usize,
    /// Candidate texts embedded per step.
    #[arg(long, default_value_t = 128)]
    pub candidates: usize,
    /// Weight of the bigram prior in the search's ranking (0: cosine alone).
    #[arg(long, default_value_t = 0.03)]
    pub fluency: f32,
    /// Weight of SmolLM2's mean log-probability per token in the ranking of each
    /// step's best candidates (0: no language model).
    #[arg(long, default_value_t = 0.0)]
    pub lm_weight: f32,
    /// Candidates per step the language model re-ranks.
    #[arg(long, default_value_t = 8)]
    pub lm_candidates: usize,
    /// Steps without improvement before a search jumps to a perturbed copy of its best text.
    #[arg(long, default_value_t = 4)]
    pub patience: usize,
    /// Seed of the search's random proposals (another seed is another attacker run).
    #[arg(long, default_value_t = 4)]
    pub seed: u64,
    /// Also run the audit over the held-out passages with these defences (comma-
    /// separated, e.g. none,noise:0.5,rotation:7) and their Quoref questions.
    #[arg(long, value_delimiter = ',')]
    pub defences: Vec<String>,
    /// Also propose MiniLM's WordPiece pieces, the name dictionary, and e-mail and
    /// number guesses built from them (`--lexicon false`: the probe's words only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub lexicon: bool,
    /// For tuning with --pii: hide the benchmark's own names and e-mail domains
    /// from the lexicon (all but whole WordPiece words), so they must be spelled
    /// from pieces as names outside the attacker's dictionary are.
    #[arg(long)]
    pub hide_secrets: bool,
    /// With the lexicon: also spell words piece by piece from MiniLM's `##`
    /// continuation pieces (`--pieces false`: whole words only, the ablation).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pieces: bool,
    /// With the lexicon: width of the slot beam over the best hypothesis's e-mail
    /// address and a digit string every step (0: off; see
    /// inverter/src/slot_beam.rs).
    #[arg(long, default_value_t = SearchOptions::default().slot_width)]
    pub slot_width: usize,
    /// Sentences the slot beam scores per step at most.
    #[arg(long, default_value_t = SearchOptions::default().slot_budget)]
    pub slot_budget: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With --defences: write the audit's HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    pub collection: String,
    /// Documents inverted.
    #[arg(long, default_value_t = 10)]
    pub sample: usize,
    /// Correction steps per document.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub beam: usize,
    /// Defences compared (comma-separated) [default: none,noise:0.5,rotation:1].
    #[arg(long, value_delimiter = ',')]
    pub defences: Vec<String>,
    /// Write the HTML report here.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    #[command(flatten)]
    pub remote: super::Remote,
}

pub(super) fn bar(len: usize, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template("{msg:24} {bar:40} {pos}/{len}  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    b.set_message(what.to_string());
    b
}

/// The library's view of a dataset file's passages.
fn dataset_file<'a>(path: &'a Path, passages: &'a [Passage]) -> DatasetFile<'a> {
    DatasetFile {
        path,
        passages: passages
            .iter()
            .map(|p| PassageText {
                id: &p.id,
                text: &p.text,
            })
            .collect(),
    }
}

pub fn train(what: &TrainWhat) -> anyhow::Result<()> {
    let args = match what {
        TrainWhat::Inverter(args) => args,
        TrainWhat::Contextual(args) => return super::contextual::train(args),
    };
    let drop_path = Dataset::Drop.locate(args.drop.as_deref())?;
    let quoref_path = Dataset::Quoref.locate(args.quoref.as_deref())?;
    let drop = load(&drop_path)?;
    let quoref = load(&quoref_path)?;
    let corpus = ProbeCorpus {
        drop: dataset_file(&drop_path, &drop),
        quoref: dataset_file(&quoref_path, &quoref),
    };
    let options = ProbeTraining {
        fit: TrainOptions {
            vocab: args.vocab,
            seed: args.seed,
            ..TrainOptions::default()
        },
        max_texts: args.max_texts,
        embeddings_cache: args.embeddings_cache.clone(),
    };
    let minilm = engram_embedder::shared_minilm()?;
    let mut embedding: Option<ProgressBar> = None;
    let mut show = |event: TrainingEvent| match event {
        TrainingEvent::TextsChosen {
            texts,
            windows,
            drop_passages,
            quoref_passages,
        } => println!(
            "{texts} training texts of up to {TEXT_TOKENS} tokens (of {windows}) \
             from {drop_passages} DROP and {quoref_passages} Quoref passages"
        ),
        TrainingEvent::Embedding { done, total } => embedding
            .get_or_insert_with(|| bar(total, "embedding"))
            .set_position(done as u64),
    };
    let trained = train_probe::train(&corpus, &minilm, &options, &mut show)?;
    if let Some(b) = embedding {
        b.finish();
    }
    let probe = trained.probe;
    let dir = args.out.clone().unwrap_or_else(probe::default_dir);
    probe.save(&dir)?;
    let m = &probe.manifest;
    println!(
        "probe: {} words, lambda {}, threshold {:.2}, validation bag F1 {:.3} ({} s); written to {}",
        probe.vocab().len(),
        m.lambda,
        probe.threshold,
        m.validation_f1,
        trained.elapsed.as_secs(),
        dir.display()
    );
    Ok(())
}

/// The held-out Quoref passages (never seen by the probe) and their first full
/// 32-token windows, at most `limit`.
fn held_out(path: &Path, limit: usize, m: &MiniLm) -> anyhow::Result<(Vec<Passage>, Vec<String>)> {
    let passages: Vec<Passage> = load(path)?
        .into_iter()
        .filter(|p| corpus::is_held_out(&p.id))
        .collect();
    let texts = train_probe::evaluation_texts(passages.iter().map(|p| p.text.as_str()), limit, m);
    Ok((passages, texts))
}

pub fn eval_inversion(args: &EvalInversionArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=200).contains(&args.limit), "--limit must be 1 to 200");
    let path = Dataset::Quoref.locate(args.quoref.as_deref())?;
    let probe = Arc::new(match &args.probe {
        Some(dir) => Probe::load(dir)?,
        None => Probe::default_probe()?,
    });
    let minilm = engram_embedder::shared_minilm()?;
    let planted = match &args.pii {
        Some(p) => {
            let mut t = engram_inverter::pii::load(p)?;
            t.truncate(args.limit);
            Some(t)
        }
        None => None,
    };
    let (passages, texts) = match &planted {
        Some(t) => (Vec::new(), t.iter().map(|t| t.text.clone()).collect()),
        None => held_out(&path, args.limit, &minilm)?,
    };
    let opts = SearchOptions {
        beam: args.beam,
        candidates: args.candidates,
        fluency: args.fluency,
        lm_weight: args.lm_weight,
        lm_candidates: args.lm_candidates,
        slot_width: args.slot_width,
        slot_budget: args.slot_budget,
        patience: args.patience,
        seed: args.seed,
        ..SearchOptions::default()
    };
    let lm: Option<Arc<dyn LanguagePrior>> = if args.lm_weight > 0.0 {
        Some(Arc::new(SmolLmPrior::load_default()?))
    } else {
        None
    };
    anyhow::ensure!(
        !args.hide_secrets || (args.lexicon && planted.is_some()),
        "--hide-secrets needs --pii and the lexicon"
    );
    let lexicon = if !args.lexicon {
        None
    } else if args.hide_secrets || !args.pieces {
        let mut lex = Lexicon::minilm(minilm.as_ref())?;
        if let (true, Some(t)) = (args.hide_secrets, &planted) {
            let hidden: Vec<String> = engram_inverter::pii::dictionary_words(t)
                .into_iter()
                .filter(|w| lex.split(w).is_none_or(|p| p.len() > 1))
                .collect();
            println!(
                "hiding {} of the benchmark's name and domain words from the lexicon",
                hidden.len()
            );
            lex.hide(hidden);
        }
        if !args.pieces {
            lex = lex.without_pieces();
        }
        Some(Arc::new(lex))
    } else {
        Some(Lexicon::shared_minilm(minilm.as_ref())?)
    };
    let b = bar(texts.len(), "inverting");
    let attack = engram_inverter::eval::Attack {
        probe: probe.clone(),
        lm,
        lexicon: lexicon.clone(),
        opts,
    };
    let report = engram_inverter::eval::evaluate(
        &texts,
        minilm.as_ref(),
        attack,
        &args.steps,
        &|done, _| b.set_position(done as u64),
    )?;
    b.finish();
    match (&args.pii, &planted) {
        (Some(p), Some(t)) => println!("{} texts of the PII benchmark {}", t.len(), p.display()),
        _ => println!(
            "{} held-out {TEXT_TOKENS}-token Quoref texts ({HELD_OUT_RULE})",
            report.texts
        ),
    }
    println!("{}", report.table());
    let mut out = json!({"inversion": report});
    if let (Some(p), Some(t)) = (&args.pii, &planted) {
        let strength = AttackStrength {
            benchmark: p.display().to_string(),
            rows: report.pii_rows(t),
        };
        print_pii(&strength);
        out["pii"] = serde_json::to_value(&strength)?;
    }
    if !args.defences.is_empty() {
        let defences = args
            .defences
            .iter()
            .map(|d| Defence::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        let targets: Vec<AuditDoc> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| AuditDoc {
                id: planted
                    .as_ref()
                    .map_or_else(|| format!("text-{i}"), |p| p[i].id.clone()),
                text: t.clone(),
            })
            .collect();
        let input = if planted.is_some() {
            AuditInput {
                collection: "PII benchmark".into(),
                queries: audit::known_item_queries(&targets, 5),
                corpus: targets.clone(),
                targets,
                query_source: "known-item spans of 5 words from the benchmark texts".into(),
            }
        } else {
            AuditInput {
                collection: "quoref (held out)".into(),
                targets,
                corpus: passages
                    .iter()
                    .map(|p| AuditDoc {
                        id: p.id.clone(),
                        text: p.text.clone(),
                    })
                    .collect(),
                queries: passages
                    .iter()
                    .flat_map(|p| {
                        p.questions.iter().map(|q| AuditQuery {
                            text: q.clone(),
                            relevant: p.id.clone(),
                        })
                    })
                    .collect(),
                query_source: "Quoref questions of the held-out passages".into(),
            }
        };
        let audit_opts = AuditOptions {
            sample: texts.len(),
            steps: *args.steps.iter().max().unwrap_or(&10),
            beam: args.beam,
            defences,
        };
        let b = bar(0, "auditing defences");
        let report = audit::run(
            &input,
            minilm.as_ref(),
            probe,
            lexicon,
            &audit_opts,
            &|done, total| {
                b.set_length(total as u64);
                b.set_position(done as u64);
                std::ops::ControlFlow::Continue(())
            },
        )?;
        b.finish();
        print_defences(&report);
        if let Some(html) = &args.html {
            std::fs::write(html, report.to_html())
                .with_context(|| format!("cannot write {}", html.display()))?;
            println!("HTML report written to {}", html.display());
        }
        out["defences"] = serde_json::to_value(&report.defences)?;
    }
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(())
}

fn print_pii(s: &AttackStrength) {
    println!("| steps | full names exact / partly | first names exact | e-mails exact / partly | numbers exact / partly | s / text |\n|---|---|---|---|---|---|");
    let pct = |t: &engram_inverter::pii::KindTally| {
        format!(
            "{:.0}% / {:.0}% (of {})",
            100.0 * t.share(),
            100.0 * t.partly_share(),
            t.total
        )
    };
    for r in &s.rows {
        println!(
            "| {} | {} | {:.0}% | {} | {} | {:.2} |",
            r.steps,
            pct(&r.names),
            100.0 * r.first_names.share(),
            pct(&r.emails),
            pct(&r.numbers),
            r.seconds_per_text
        );
    }
}

fn print_defences(r: &AuditReport) {
    println!("| defence | token F1 | BLEU-4 | cosine | nDCG@10 | nDCG@10 cost (points) |\n|---|---|---|---|---|---|");
    for d in &r.defences {
        println!(
            "| {} | {:.3} | {:.1} | {:.3} | {} | {} |",
            d.defence,
            d.token_f1,
            d.bleu,
            d.cosine,
            d.ndcg_at_10.map_or("n/a".into(), |v| format!("{v:.3}")),
            d.ndcg_loss_points
                .map_or("n/a".into(), |v| format!("{v:.1}"))
        );
    }
    println!("grade {}: {}", r.grade, r.verdict);
}

pub fn audit(args: &AuditArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.remote.url, args.remote.api_key.clone());
    let mut body = json!({"sample": args.sample, "steps": args.steps, "beam": args.beam});
    if !args.defences.is_empty() {
        body["defences"] = json!(args.defences);
    }
    let path = format!("/collections/{}/audits", args.collection);
    let started: AuditStatus = client.call(
        "POST",
        &format!("/collections/{}/audit", args.collection),
        Some(&body),
    )?;
    let id = started.job.id;
    let b = bar(0, "auditing");
    loop {
        let status: AuditStatus =
            client.call("GET", &format!("{path}/{id}/status"), None::<&()>)?;
        b.set_length(status.job.total as u64);
        b.set_position(status.job.done as u64);
        match status.job.state {
            JobState::Done => break,
            JobState::Running => std::thread::sleep(std::time::Duration::from_millis(500)),
            state => {
                b.abandon();
                anyhow::bail!(
                    "audit {id} {state}: {}",
                    status.job.error.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }
    b.finish();
    let report: AuditReport =
        serde_json::from_value(client.call("GET", &format!("{path}/{id}"), None::<&()>)?)?;
    print_defences(&report);
    std::fs::write(&args.out, report.to_html())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("audit {id}: HTML report written to {}", args.out.display());
    Ok(())
}
