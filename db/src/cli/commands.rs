//! What each `engram` subcommand does.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::client::Client;
use super::{
    Cli, CollectionsAction, Command, EvalAction, FusionArgs, ModelsAction, Remote, ServeArgs,
};
use crate::answer::ModelSlot;
use crate::api_types::{CollectionInfo, DocumentInput, QueryMode, QueryResponse, UpsertResponse};
use crate::config::{Overrides, ServerConfig};
use crate::engine::Engine;
use crate::server::{BackupResponse, ServerBuilder};
use engram_store::jobs::JobState;
use engram_store::DEFAULT_EMBEDDER;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Collections { action, remote } => collections(action, &client(&remote)),
        Command::Import {
            collection,
            file,
            batch,
            create,
            remote,
        } => import(&client(&remote), &collection, &file, batch, create),
        Command::Query {
            collection,
            text,
            k,
            filter,
            mode,
            fusion,
            remote,
        } => {
            let search = Search {
                text: &text,
                k,
                filter: filter.as_deref(),
                mode,
                fusion: &fusion,
            };
            query(&client(&remote), &collection, &search)
        }
        Command::Ask(args) => super::ask::run(&client(&args.remote), &args),
        Command::Eval {
            action: EvalAction::Retrieval(args),
        } => super::eval::retrieval(&args),
        Command::Eval {
            action: EvalAction::Answers(args),
        } => super::eval::answers(&args),
        Command::Eval {
            action: EvalAction::Inversion(args),
        } => super::inversion::eval_inversion(&args),
        Command::Eval {
            action: EvalAction::Weights(args),
        } => super::eval::weights(&args),
        Command::Eval {
            action: EvalAction::Contextual(args),
        } => super::contextual::eval(&args),
        Command::Eval {
            action: EvalAction::ContextualSizes(args),
        } => super::contextual::eval_sizes(&args),
        Command::Audit(args) => super::inversion::audit(&args),
        Command::Promote(args) => super::promote::promote(&args),
        Command::Adapters { action } => super::promote::adapters(&action),
        Command::Synth { action } => super::promote::synth(&action),
        Command::Train { what } => super::inversion::train(&what),
        Command::Cluster { action } => super::cluster::run(&action),
        Command::Hot {
            collection,
            k,
            top,
            remote,
        } => hot(&client(&remote), &collection, k, top),
        Command::Backup { dir, remote } => {
            let dir = std::path::absolute(&dir)?;
            let r: BackupResponse =
                client(&remote).call("POST", "/admin/backup", Some(&json!({"path": dir})))?;
            println!("backup written to {}", r.path);
            Ok(())
        }
        Command::Restore {
            dir,
            data_dir,
            force,
        } => restore(&dir, &data_dir, force),
        Command::Models {
            action: ModelsAction::Fetch,
        } => {
            engram_models::ensure_all()?;
            println!("models are in {}", engram_models::cache_dir().display());
            Ok(())
        }
    }
}

/// Prints the collection's clusters, hottest first.
fn hot(client: &Client, collection: &str, k: Option<usize>, top: usize) -> anyhow::Result<()> {
    let mut path = format!("/collections/{collection}/clusters?top={top}");
    if let Some(k) = k {
        path.push_str(&format!("&k={k}"));
    }
    let r: Value = client.call("GET", &path, None::<&()>)?;
    let clusters: Vec<engram_store::hot::ClusterInfo> =
        serde_json::from_value(r["clusters"].clone())?;
    println!(
        "{:>7} {:>9} {:>9} {:>6}  top documents",
        "cluster", "documents", "hits", "share"
    );
    for c in clusters {
        println!(
            "{:>7} {:>9} {:>9.1} {:>5.1}%  {}",
            c.cluster,
            c.documents,
            c.hits,
            c.hit_share * 100.0,
            c.top.first().map_or("", |d| d.id.as_str())
        );
        for d in &c.top {
            println!(
                "{:>36} {:<24} {}",
                format!("{:.1} hits", d.hits),
                d.id,
                d.snippet
            );
        }
        if c.questions > 0 {
            println!(
                "{:>36} asked of it, newest first:",
                format!("{} questions", c.questions)
            );
            for q in &c.sample_questions {
                println!("{:>36} {}", "", q.question);
            }
        }
    }
    Ok(())
}

fn client(remote: &Remote) -> Client {
    Client::new(&remote.url, remote.api_key.clone())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = ServerConfig::load(
        args.config.as_deref(),
        Overrides {
            data_dir: args.data_dir,
            host: args.host,
            port: args.port,
            api_keys: args.api_keys,
            cluster: args.cluster,
            node_id: args.node_id,
            snapshot_every_writes: args.snapshot_every_writes,
            snapshot_every_secs: args.snapshot_every_secs,
            shard_records: args.shard_records,
        },
    )?;
    // Cluster mode: a node behind the stream's trim (or new) starts from a snapshot.
    crate::server::bootstrap_cluster(&cfg)?;
    tracing::info!(data_dir = %cfg.data_dir.display(), "opening the database");
    let engine = Arc::new(
        Engine::open(&cfg.data_dir, cfg.limits.clone())
            .map_err(|e| {
                let dir = cfg.data_dir.display();
                // A damaged file is not fixed by retrying: say how to get the data back.
                let hint = if e.to_string().contains("Corruption") {
                    format!("; the files are damaged: restore the latest backup with `engram restore BACKUP --data-dir {dir} --force`")
                } else {
                    String::new()
                };
                anyhow::anyhow!("cannot open the database in {dir}: {e}{hint}")
            })?
            .with_language_model(ModelSlot::smollm2().with_limits(cfg.generation.clone())),
    );
    if !args.lazy_models {
        // Fetch (first run) and load the default model before accepting requests,
        // so the first insert does not pay for it.
        engine
            .store()
            .encoder(DEFAULT_EMBEDDER)
            .context("cannot load the default embedding model")?;
        // The language model (fetched on first run) loads in the background: the store
        // serves at once, and the first answer waits only for what is left of the load.
        let warm = engine.clone();
        std::thread::spawn(move || {
            if let Err(e) = warm.language_model() {
                tracing::warn!(error = %e, "the language model did not load; answers will retry");
            }
        });
    }
    let cluster = crate::server::start_cluster(&engine, &cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stopping = engine.clone();
    runtime.block_on(
        ServerBuilder::new(engine)
            .with_cluster(cluster)
            .with_keys(cfg.api_keys.clone())
            .with_allowed(cfg.allowed_origins.clone(), cfg.allowed_hosts.clone())
            .serve(cfg.addr()),
    )?;
    // A clean shutdown dumps the graphs, so the next start loads them.
    stopping.store().persist_graphs();
    Ok(())
}

fn collections(action: CollectionsAction, client: &Client) -> anyhow::Result<()> {
    match action {
        CollectionsAction::List => {
            let r: Value = client.call("GET", "/collections", None::<&()>)?;
            println!(
                "{:<24} {:>10} {:>10} {:>6} {:<10} embedder",
                "name", "documents", "vectors", "dim", "distance"
            );
            for c in r["collections"].as_array().into_iter().flatten() {
                let c: CollectionInfo = serde_json::from_value(c.clone())?;
                println!(
                    "{:<24} {:>10} {:>10} {:>6} {:<10} {}",
                    c.config.name,
                    c.documents,
                    c.vectors,
                    c.config.dimension,
                    format!("{:?}", c.config.distance).to_lowercase(),
                    c.config.embedder.as_deref().unwrap_or("(own vectors)")
                );
            }
        }
        CollectionsAction::Info { name } => {
            let r: Value = client.call("GET", &format!("/collections/{name}"), None::<&()>)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        CollectionsAction::Create {
            name,
            dimension,
            distance,
            durability,
            embedder,
        } => {
            let mut body = json!({});
            if let Some(e) = embedder {
                body["embedder"] = json!(e);
            }
            if let Some(d) = dimension {
                body["dimension"] = json!(d);
            }
            if let Some(d) = distance {
                body["distance"] = json!(d);
            }
            if let Some(d) = durability {
                body["durability"] = json!(d);
            }
            let r: Value = client.call("PUT", &format!("/collections/{name}"), Some(&body))?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        CollectionsAction::Delete { name } => {
            let _: Value = client.call("DELETE", &format!("/collections/{name}"), None::<&()>)?;
            println!("deleted collection {name}");
        }
        CollectionsAction::Recontextualize { name, no_wait } => {
            let path = format!("/collections/{name}");
            let _: Value = client.call("POST", &format!("{path}/recontextualize"), None::<&()>)?;
            if no_wait {
                println!("started; follow it with `engram collections info {name}`");
                return Ok(());
            }
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "{msg:>10} [{bar:40}] {pos}/{len} documents ({eta} left)",
                )
                .expect("valid template"),
            );
            loop {
                let info: CollectionInfo =
                    serde_json::from_value(client.call("GET", &path, None::<&()>)?)?;
                let (Some(context), Some(job)) = (
                    info.corpus_context.clone(),
                    info.corpus_context.and_then(|c| c.job),
                ) else {
                    break;
                };
                bar.set_length(job.job.total as u64);
                bar.set_position(job.job.done as u64);
                bar.set_message(job.job.stage.clone());
                match job.job.state {
                    JobState::Done => {
                        bar.finish();
                        println!(
                            "{name}: corpus context version {} ({} documents sampled, {} tokens)",
                            context.version, context.sampled_documents, context.vocabulary
                        );
                        break;
                    }
                    JobState::Failed | JobState::Cancelled | JobState::Interrupted => {
                        bar.abandon();
                        anyhow::bail!(
                            "recontextualize {}: {}",
                            job.job.state,
                            job.job.error.unwrap_or_default()
                        );
                    }
                    JobState::Running => std::thread::sleep(std::time::Duration::from_millis(500)),
                }
            }
        }
    }
    Ok(())
}

fn import(
    client: &Client,
    collection: &str,
    file: &Path,
    batch: usize,
    create: bool,
) -> anyhow::Result<()> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut docs = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not valid JSON", file.display(), n + 1))?;
        // Accept extra fields (e.g. questions in test data) by keeping only ours.
        let doc = DocumentInput {
            id: v.get("id").and_then(|x| x.as_str()).map(String::from),
            text: v.get("text").and_then(|x| x.as_str()).map(String::from),
            vector: v
                .get("vector")
                .map(|x| serde_json::from_value(x.clone()))
                .transpose()
                .with_context(|| {
                    format!(
                        "{}:{}: 'vector' must be a list of numbers",
                        file.display(),
                        n + 1
                    )
                })?,
            metadata: v.get("metadata").cloned(),
        };
        docs.push(doc);
    }
    if create {
        let _: Value = client.call(
            "PUT",
            &format!("/collections/{collection}"),
            Some(&json!({})),
        )?;
    }
    let bar = ProgressBar::new(docs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} documents  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    for chunk in docs.chunks(batch.max(1)) {
        let _: UpsertResponse = client.call(
            "POST",
            &format!("/collections/{collection}/documents"),
            Some(&json!({ "documents": chunk })),
        )?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    println!("imported {} documents into {collection}", docs.len());
    Ok(())
}

/// What `engram query` asks for.
struct Search<'a> {
    text: &'a str,
    k: usize,
    filter: Option<&'a str>,
    mode: QueryMode,
    fusion: &'a FusionArgs,
}

fn query(client: &Client, collection: &str, search: &Search<'_>) -> anyhow::Result<()> {
    let mut body = json!({ "text": search.text, "k": search.k, "mode": search.mode });
    if let Some(f) = search.filter {
        body["filter"] = serde_json::from_str(f).context("--filter is not valid JSON")?;
    }
    if search.mode == QueryMode::Hybrid {
        body["fusion"] = json!(search.fusion.fusion());
    }
    let r: QueryResponse = client.call(
        "POST",
        &format!("/collections/{collection}/query"),
        Some(&body),
    )?;
    for (rank, hit) in r.hits.iter().enumerate() {
        let text = hit.text.as_deref().unwrap_or("");
        let span = text
            .get(hit.chunk.start as usize..hit.chunk.end as usize)
            .unwrap_or(text);
        let snippet: String = span.chars().take(160).collect();
        println!(
            "{:>2}. {:.4}  {}  {}",
            rank + 1,
            hit.score,
            hit.id,
            snippet.replace('\n', " ")
        );
    }
    println!("({} hits in {:.1} ms)", r.hits.len(), r.took_ms);
    Ok(())
}

/// Restores a backup into a data directory, all or nothing (`engine::restore`
/// stages, verifies, then swaps).
fn restore(backup: &Path, data_dir: &Path, force: bool) -> anyhow::Result<()> {
    let restored = crate::engine::restore(backup, data_dir, force)?;
    if let Some(aside) = restored.aside {
        println!("moved the old data directory to {}", aside.display());
    }
    println!(
        "restored {} into {}; start the server with `engram serve --data-dir {}`",
        backup.display(),
        data_dir.display(),
        data_dir.display()
    );
    Ok(())
}
