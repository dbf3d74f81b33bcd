//! `engram train contextual` and `engram eval contextual`: the CLI side of the learned
//! stage two (`engram_embedder::stage_two`). The work is in `crate::eval::contextual`
//! (datasets, training with validation, timings) and `engram_embedder` (training,
//! the weights and manifest); this parses, shows progress and prints.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use engram_embedder::stage_two_train::TrainOptions;
use engram_embedder::{StageTwo, TrainingRecord};
use serde_json::json;

use super::eval::{write_json, Bars};
use crate::eval::contextual::{encoder_timings, table, train_and_validate, DatasetStates};
use crate::eval::contextual_mix;
use crate::eval::contextual_sizes::{self, Corpus};
use crate::eval::Dataset;
use engram_embedder::SelfCheckOptions;

#[derive(Args, Debug)]
pub struct TrainContextualArgs {
    /// Training dataset (the other one is the held-out evaluation).
    #[arg(long, value_enum, default_value = "drop")]
    pub dataset: Dataset,
    /// The dataset file [default: ~/.cache/engram/data/DATASET.jsonl].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N passages.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Where to write stage_two.safetensors, stage_two.json and stage_two_loss.svg.
    #[arg(long, default_value = "embedder/weights")]
    pub out: PathBuf,
    /// Every Nth passage (and its questions) is held out for validation.
    #[arg(long, default_value_t = 10)]
    pub validate_every: usize,
    /// Also evaluate every variant on this dataset's passages (default: the other one).
    #[arg(long, value_enum)]
    pub heldout: Option<Dataset>,
    /// Held-out passages used (the first N) [default: all].
    #[arg(long)]
    pub heldout_limit: Option<usize>,
    /// Skip the held-out evaluation.
    #[arg(long)]
    pub no_heldout: bool,
    /// Keep stage one's token states of each dataset in DIR (several GB) and reuse them.
    #[arg(long)]
    pub states_cache: Option<PathBuf>,
    /// Parts of stage two that learn, comma-separated: gate, query_gate, idf,
    /// correction, centroids.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gate,query_gate,idf,correction,centroids"
    )]
    pub parts: Vec<String>,
    #[arg(long, default_value_t = TrainOptions::default().steps)]
    pub steps: usize,
    #[arg(long, default_value_t = TrainOptions::default().batch)]
    pub batch: usize,
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    pub lr: f64,
    #[arg(long, default_value_t = TrainOptions::default().weight_decay)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = TrainOptions::default().rank)]
    pub rank: usize,
    #[arg(long, default_value_t = TrainOptions::default().temperature)]
    pub temperature: f64,
    #[arg(long, default_value_t = TrainOptions::default().refit_every)]
    pub refit_every: usize,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u64,
    /// Train on this mix of corpora instead of `--dataset` (as `eval contextual-sizes
    /// --corpus` names them; each keeps its own context); no validation split: leave
    /// whole corpora out and measure them with `eval contextual-sizes --weights`.
    #[arg(long, value_delimiter = ',')]
    pub mix: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EvalContextualArgs {
    #[arg(long, value_enum, default_value = "quoref")]
    pub dataset: Dataset,
    /// The dataset file [default: ~/.cache/engram/data/DATASET.jsonl].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N passages (and their questions).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Stage-two weights for the learned variant [default: the ones Engram ships].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Write the table as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep stage one's token states in DIR (several GB) and reuse them.
    #[arg(long)]
    pub states_cache: Option<PathBuf>,
    /// Also time embedding the first N of the evaluated passages (64-token windows) with MiniLM and
    /// with each contextual encoder, 3 alternating rounds, and print the medians.
    #[arg(long, default_value_t = 0)]
    pub timing: usize,
}

#[derive(Args, Debug)]
pub struct EvalContextualSizesArgs {
    /// Corpora: `quoref` or `drop` (the extract, or for Quoref the committed 300
    /// passages; a missing DROP is skipped), or a niche corpus file [default: the
    /// tuning corpora; the held-out ones are named on purpose].
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "quoref,tests/data/niche_phones.json,tests/data/niche_hotels.json,tests/data/niche_insurers.json"
    )]
    pub corpus: Vec<String>,
    /// Collection sizes; those above a corpus's size are replaced by the whole corpus.
    #[arg(long, value_delimiter = ',', default_value = "50,100,300,1000,3000")]
    pub sizes: Vec<usize>,
    /// The self-check's margin: what the lower bound of the mean gain (nDCG@10, 0 to 1)
    /// must exceed.
    #[arg(long, default_value_t = SelfCheckOptions::default().margin)]
    pub margin: f64,
    /// Standard errors below the mean gain the self-check's bound lies (0 to 10).
    #[arg(long, default_value_t = SelfCheckOptions::default().z)]
    pub z: f64,
    /// Let centring also go live on its bound on the pair pseudo-queries alone (off by
    /// default: it broke "never worse" on held-out collections; README, "Self-check").
    #[arg(long)]
    pub pair_route: bool,
    /// Write every figure (with each self-check) as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stage-two weights for the learned variant, in its rows and its self-check
    /// [default: the ones Engram ships].
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

/// The corpus an `--corpus` entry names; `None` (with a note) for a missing DROP.
fn sizes_corpus(entry: &str) -> anyhow::Result<Option<Corpus>> {
    let dataset = match entry {
        "quoref" => Dataset::Quoref,
        "drop" => Dataset::Drop,
        path => return Ok(Some(Corpus::niche(std::path::Path::new(path))?)),
    };
    match dataset.locate(None) {
        Ok(path) => Ok(Some(Corpus::dataset(dataset.name(), &path)?)),
        Err(e) if dataset == Dataset::Drop => {
            eprintln!("note: skipping drop: {e}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn eval_sizes(args: &EvalContextualSizesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.margin),
        "--margin must be within 0 and 1"
    );
    anyhow::ensure!(
        (0.0..=10.0).contains(&args.z),
        "--z must be within 0 and 10"
    );
    anyhow::ensure!(
        args.sizes.iter().all(|&n| n >= 2),
        "every size must be at least 2"
    );
    let options = SelfCheckOptions {
        margin: args.margin,
        z: args.z,
        pair_route: args.pair_route,
        ..SelfCheckOptions::default()
    };
    let base = engram_embedder::shared_minilm()?;
    let net = match &args.weights {
        Some(path) => Arc::new(StageTwo::from_file(path)?),
        None => StageTwo::bundled()?,
    };
    let mut figures = Vec::new();
    for entry in &args.corpus {
        let Some(corpus) = sizes_corpus(entry)? else {
            continue;
        };
        let mut sizes: Vec<usize> = args
            .sizes
            .iter()
            .map(|&n| n.min(corpus.texts.len()))
            .collect();
        sizes.dedup();
        for n in sizes {
            let started = std::time::Instant::now();
            let f = contextual_sizes::evaluate(&base, &net, &corpus.subset(n), &options)?;
            eprintln!(
                "{} {n}: {:.0} s; {}",
                corpus.name,
                started.elapsed().as_secs_f64(),
                f.self_check.decision
            );
            figures.push(f);
        }
    }
    println!("{}", contextual_sizes::table(&figures));
    let gains: Vec<f64> = figures
        .iter()
        .map(|f| f.self_checked - f.score("minilm").unwrap_or(0.0))
        .collect();
    println!(
        "self-checked minus minilm: mean {:+.3}, worst {:+.3} over {} rows",
        gains.iter().sum::<f64>() / gains.len().max(1) as f64,
        gains.iter().copied().fold(f64::MAX, f64::min),
        gains.len()
    );
    if let Some(out) = &args.out {
        write_json(
            out,
            &json!({ "margin": args.margin, "z": args.z, "pair_route": args.pair_route, "figures": figures }),
        )?;
    }
    Ok(())
}

/// `dataset`'s first `limit` passages through stage one, or their states from
/// `states_cache`, with progress bars.
fn dataset_states(
    dataset: Dataset,
    data: &Option<PathBuf>,
    limit: Option<usize>,
    states_cache: &Option<PathBuf>,
) -> anyhow::Result<DatasetStates> {
    anyhow::ensure!(limit.is_none_or(|n| n >= 2), "--limit must be at least 2");
    let base = engram_embedder::shared_minilm()?;
    let progress = Bars::default();
    let states = DatasetStates::load(
        &base,
        dataset,
        data.as_deref(),
        limit,
        states_cache.as_deref(),
        &progress,
    )?;
    Ok(states)
}

pub fn eval(args: &EvalContextualArgs) -> anyhow::Result<()> {
    let net = match &args.weights {
        Some(p) => Arc::new(StageTwo::from_file(p)?),
        None => StageTwo::bundled()?,
    };
    let states = dataset_states(args.dataset, &args.data, args.limit, &args.states_cache)?;
    let base = engram_embedder::shared_minilm()?;
    let figures = states.figures(&base, &net)?;
    println!(
        "{}: {} passages ({} windows), {} questions, exact search\n",
        args.dataset.name(),
        figures.passages,
        states.cache.docs.windows(),
        figures.questions
    );
    println!("{}", table(&figures.rows));
    let mut timing = Vec::new();
    if args.timing > 0 {
        // The passages are in memory already: the cache keeps their texts.
        let texts: Vec<&str> = states
            .cache
            .texts
            .iter()
            .take(args.timing)
            .map(|t| t.as_str())
            .collect();
        timing = encoder_timings(&texts, 3)?;
        let base = timing[0].1;
        println!("| encoder | ms per passage (median of 3) | vs minilm |\n|---|---|---|");
        for (name, t) in &timing {
            println!("| {name} | {:.1} | {:.2}x |", t * 1000.0, t / base);
        }
    }
    if let Some(out) = &args.out {
        let mut value = serde_json::to_value(&figures)?;
        value["timing_seconds_per_passage"] = json!(timing);
        value["weights"] = json!(args
            .weights
            .as_ref()
            .map_or("bundled".into(), |p| p.display().to_string()));
        write_json(out, &value)?;
    }
    Ok(())
}

pub fn train(args: &TrainContextualArgs) -> anyhow::Result<()> {
    let options = TrainOptions {
        parts: args.parts.clone(),
        steps: args.steps,
        batch: args.batch,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        rank: args.rank,
        temperature: args.temperature,
        refit_every: args.refit_every,
        seed: args.seed,
    };
    anyhow::ensure!(options.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(options.batch >= 2, "--batch must be at least 2");
    anyhow::ensure!(options.rank > 0, "--rank must be at least 1");
    if !args.mix.is_empty() {
        return train_mix(args, &options);
    }
    let states = dataset_states(args.dataset, &args.data, args.limit, &args.states_cache)?;
    let base = engram_embedder::shared_minilm()?;
    let run = train_and_validate(
        &base,
        &states.cache,
        args.validate_every,
        &options,
        &Bars::default(),
    )?;
    println!(
        "validation: {} held-out questions of {} ({} passages, every {}th held out)\n",
        run.questions,
        args.dataset.name(),
        states.passages,
        args.validate_every
    );
    println!("{}", table(&run.rows));
    let [idf_power, mix, sharpness, gate, query_gate, up] = run.trained.net.summary()?;
    println!(
        "learned: idf exponent {idf_power:.3}, centroid mix {mix:.3}, sharpness {sharpness:.1}, |gate| {gate:.3}, |query gate| {query_gate:.3}, |up| {up:.3}; {:.0} s",
        run.seconds
    );

    let questions = states.cache.answers.len();
    // Stage one's states of the training set are not needed any more: free them
    // before the held-out set's come in.
    drop(states.cache);
    let heldout = if args.no_heldout {
        None
    } else {
        let dataset = args.heldout.unwrap_or(match args.dataset {
            Dataset::Drop => Dataset::Quoref,
            Dataset::Quoref => Dataset::Drop,
        });
        let held = dataset_states(dataset, &None, args.heldout_limit, &args.states_cache)?;
        let figures = held.figures(&base, &run.trained.net)?;
        println!(
            "\nheld out: {} ({} passages, {} questions, all of them)\n",
            dataset.name(),
            figures.passages,
            figures.questions
        );
        println!("{}", table(&figures.rows));
        Some(serde_json::to_value(&figures)?)
    };

    let record = TrainingRecord {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        dataset: args.dataset.name().to_string(),
        data_file: states
            .path
            .file_name()
            .map(|f| f.to_string_lossy().to_string()),
        data_sha256: states.sha256,
        passages: states.passages,
        questions,
        validate_every: args.validate_every,
        seconds: run.seconds,
        validation: serde_json::to_value(&run.rows)?,
        heldout,
    };
    let saved = run.trained.save(&args.out, &options, &record)?;
    println!("results written to {}", saved.manifest.display());
    println!(
        "wrote {} and {}",
        saved.weights.display(),
        saved.chart.display()
    );
    Ok(())
}

/// `engram train contextual --mix`: stage two trained on several corpora at once.
fn train_mix(args: &TrainContextualArgs, options: &TrainOptions) -> anyhow::Result<()> {
    let base = engram_embedder::shared_minilm()?;
    let (mut members, mut sources) = (Vec::new(), Vec::new());
    for entry in &args.mix {
        let Some(corpus) = sizes_corpus(entry)? else {
            continue;
        };
        let started = std::time::Instant::now();
        let member = contextual_mix::MixMember::embed(&base, &corpus)?;
        eprintln!(
            "{}: {} documents, {} query-document pairs embedded in {:.0} s",
            member.name,
            member.texts.len(),
            member.answers.len(),
            started.elapsed().as_secs_f64()
        );
        if let Ok(sha) = engram_models::sha256_file(std::path::Path::new(entry)) {
            sources.push(format!("{entry}:{sha}"));
        } else {
            sources.push(entry.clone());
        }
        members.push(member);
    }
    anyhow::ensure!(!members.is_empty(), "--mix names no corpus that is present");
    let started = std::time::Instant::now();
    let trained = contextual_mix::train(&base, &members, options, &mut |step, loss| {
        if step % 50 == 0 {
            eprintln!("step {step}: loss {loss:.3}");
        }
    })?;
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let record = TrainingRecord {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        dataset: format!("a mix of {}", names.join(", ")),
        data_file: None,
        data_sha256: sources.join(" "),
        passages: members.iter().map(|m| m.texts.len()).sum(),
        questions: members.iter().map(|m| m.answers.len()).sum(),
        validate_every: 0,
        seconds: started.elapsed().as_secs_f64(),
        validation: serde_json::Value::Null,
        heldout: None,
    };
    let saved = trained.save(&args.out, options, &record)?;
    println!(
        "trained on {} in {:.0} s; wrote {}, {} and {}",
        record.dataset,
        record.seconds,
        saved.weights.display(),
        saved.manifest.display(),
        saved.chart.display()
    );
    Ok(())
}
