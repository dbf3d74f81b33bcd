//! `engram train contextual` and `engram eval contextual`: the CLI side of the learned
//! stage two (`engram_embedder::stage_two`); the work is in `crate::eval::contextual`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use engram_embedder::stage_two_train::TrainOptions;
use engram_embedder::StageTwo;
use serde_json::json;

use super::eval::{write_json, Bars};
use crate::eval::contextual::{evaluate, split, table, StateCache};
use crate::eval::{load, Dataset};
use engram_metrics::chart;

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

/// Seconds per text to embed `texts` (chunked, as a collection stores them) with each
/// encoder: the median of `rounds` alternating rounds.
fn time_encoders(texts: &[&str], rounds: usize) -> anyhow::Result<Vec<(String, f64)>> {
    use engram_embedder::{
        Chunking, ContextOptions, ContextualEncoder, CorpusContext, TextEncoder, Variant,
    };
    let base = engram_embedder::shared_minilm()?;
    let mut encoders: Vec<std::sync::Arc<dyn TextEncoder>> = vec![base.clone()];
    for variant in [Variant::IdfWhiten, Variant::Learned] {
        let context = CorpusContext::build(
            &base,
            texts,
            Chunking::default(),
            variant,
            ContextOptions::default(),
        )?;
        encoders.push(std::sync::Arc::new(ContextualEncoder::new(
            base.clone(),
            std::sync::Arc::new(context),
        )));
    }
    let mut times = vec![Vec::new(); encoders.len()];
    for _ in 0..rounds {
        for (e, t) in encoders.iter().zip(&mut times) {
            let started = std::time::Instant::now();
            e.embed_chunked(texts, Chunking::default())?;
            t.push(started.elapsed().as_secs_f64() / texts.len() as f64);
        }
    }
    Ok(encoders
        .iter()
        .zip(times)
        .map(|(e, mut t)| {
            t.sort_by(f64::total_cmp);
            (e.name().to_string(), t[t.len() / 2])
        })
        .collect())
}

/// A dataset's token states: (file, its sha256, passages used, the cache).
struct Loaded {
    path: PathBuf,
    sha256: String,
    passages: usize,
    cache: StateCache,
}

fn dataset_cache(
    dataset: Dataset,
    data: &Option<PathBuf>,
    limit: Option<usize>,
    states_cache: &Option<PathBuf>,
) -> anyhow::Result<Loaded> {
    let path = data.clone().unwrap_or_else(|| dataset.default_path());
    let mut passages = load(&path)?;
    if let Some(n) = limit {
        anyhow::ensure!(n >= 2, "--limit must be at least 2");
        passages.truncate(n);
    }
    let sha256 = engram_models::sha256_file(&path)?;
    let key = format!("{}-{}-{}", dataset.name(), &sha256[..12], passages.len());
    let base = engram_embedder::shared_minilm()?;
    let cache = StateCache::load_or_build(
        &base,
        &passages,
        states_cache.as_deref(),
        &key,
        &Bars::default(),
    )?;
    Ok(Loaded {
        path,
        sha256,
        passages: passages.len(),
        cache,
    })
}

pub fn eval(args: &EvalContextualArgs) -> anyhow::Result<()> {
    let net = match &args.weights {
        Some(p) => std::sync::Arc::new(StageTwo::from_file(p)?),
        None => StageTwo::bundled()?,
    };
    let Loaded {
        sha256,
        passages,
        cache,
        ..
    } = dataset_cache(args.dataset, &args.data, args.limit, &args.states_cache)?;
    let base = engram_embedder::shared_minilm()?;
    let rows = evaluate(&base, &cache, &net, None)?;
    println!(
        "{}: {passages} passages ({} windows), {} questions, exact search\n",
        args.dataset.name(),
        cache.docs.windows(),
        cache.answers.len()
    );
    println!("{}", table(&rows));
    let mut timing = Vec::new();
    if args.timing > 0 {
        // The passages are in memory already: the cache keeps their texts.
        let texts: Vec<&str> = cache
            .texts
            .iter()
            .take(args.timing)
            .map(|t| t.as_str())
            .collect();
        timing = time_encoders(&texts, 3)?;
        let base = timing[0].1;
        println!("| encoder | ms per passage (median of 3) | vs minilm |\n|---|---|---|");
        for (name, t) in &timing {
            println!("| {name} | {:.1} | {:.2}x |", t * 1000.0, t / base);
        }
    }
    if let Some(out) = &args.out {
        let value = json!({
            "timing_seconds_per_passage": timing,
            "dataset": args.dataset.name(),
            "data_sha256": sha256,
            "passages": passages,
            "questions": cache.answers.len(),
            "weights": args.weights.as_ref().map_or("bundled".into(), |p| p.display().to_string()),
            "rows": rows,
        });
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
    let Loaded {
        path,
        sha256,
        passages,
        cache,
    } = dataset_cache(args.dataset, &args.data, args.limit, &args.states_cache)?;
    let base = engram_embedder::shared_minilm()?;
    let (train_docs, val_queries) = split(&cache, args.validate_every);
    let started = std::time::Instant::now();
    let trained =
        crate::eval::contextual::train(&base, &cache, &train_docs, &options, &Bars::default())?;
    let seconds = started.elapsed().as_secs_f64();
    let rows = evaluate(&base, &cache, &trained.net, Some(&val_queries))?;
    println!(
        "validation: {} held-out questions of {} ({} passages, every {}th held out)\n",
        val_queries.len(),
        args.dataset.name(),
        passages,
        args.validate_every
    );
    println!("{}", table(&rows));
    let [idf_power, mix, sharpness, gate, query_gate, up] = trained.net.summary()?;
    println!(
        "learned: idf exponent {idf_power:.3}, centroid mix {mix:.3}, sharpness {sharpness:.1}, |gate| {gate:.3}, |query gate| {query_gate:.3}, |up| {up:.3}; {seconds:.0} s"
    );

    let questions = cache.answers.len();
    drop(cache);
    let heldout = if args.no_heldout {
        None
    } else {
        let dataset = args.heldout.unwrap_or(match args.dataset {
            Dataset::Drop => Dataset::Quoref,
            Dataset::Quoref => Dataset::Drop,
        });
        let held = dataset_cache(dataset, &None, args.heldout_limit, &args.states_cache)?;
        let rows = evaluate(&base, &held.cache, &trained.net, None)?;
        println!(
            "\nheld out: {} ({} passages, {} questions, all of them)\n",
            dataset.name(),
            held.passages,
            held.cache.answers.len()
        );
        println!("{}", table(&rows));
        Some(json!({
            "dataset": dataset.name(),
            "data_sha256": held.sha256,
            "passages": held.passages,
            "questions": held.cache.answers.len(),
            "rows": rows,
        }))
    };

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let weights = args.out.join("stage_two.safetensors");
    std::fs::write(&weights, trained.net.to_bytes()?)
        .with_context(|| format!("cannot write {}", weights.display()))?;
    let window = 20.min(trained.losses.len()).max(1);
    let smoothed: Vec<(f64, f64)> = trained
        .losses
        .windows(window)
        .enumerate()
        .map(|(i, w)| {
            (
                (i + window) as f64,
                w.iter().sum::<f32>() as f64 / window as f64,
            )
        })
        .collect();
    let svg = chart::side_by_side(
        &format!("Stage two, trained on {}", args.dataset.name()),
        &[chart::line_panel(
            &format!("InfoNCE loss ({window}-step mean)"),
            "step",
            &smoothed,
            None,
        )],
    );
    let chart_path = args.out.join("stage_two_loss.svg");
    std::fs::write(&chart_path, svg)
        .with_context(|| format!("cannot write {}", chart_path.display()))?;
    let manifest = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "engram_version": env!("CARGO_PKG_VERSION"),
        "dataset": args.dataset.name(),
        "data_file": path.file_name().map(|f| f.to_string_lossy().to_string()),
        "data_sha256": sha256,
        "passages": passages,
        "questions": questions,
        "validate_every": args.validate_every,
        "options": options,
        "seconds": seconds,
        "first_loss": trained.losses.first(),
        "last_loss_mean": smoothed.last().map(|p| p.1),
        "loss_mean_by_100_steps": trained
            .losses
            .chunks(100)
            .map(|c| c.iter().sum::<f32>() / c.len() as f32)
            .collect::<Vec<_>>(),
        "weights_sha256": engram_models::sha256_file(&weights)?,
        "validation": rows,
        "heldout": heldout,
    });
    write_json(&args.out.join("stage_two.json"), &manifest)?;
    println!("wrote {} and {}", weights.display(), chart_path.display());
    Ok(())
}
