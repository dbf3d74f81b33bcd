//! `engram promote`, `engram adapters` and `engram synth show`: the admin side of
//! graduating a collection's knowledge into weights, through the server's API.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::Client;
use super::inversion::bar;
use super::Remote;
use crate::engine::PromotionStatus;
use engram_store::jobs::JobState;

#[derive(Args, Debug)]
pub struct PromoteArgs {
    pub collection: String,
    /// The cluster to promote, by rank in `engram hot` (0 is the hottest).
    #[arg(long, conflicts_with_all = ["top", "all"])]
    pub cluster: Option<usize>,
    /// Promote the hottest cluster (the default).
    #[arg(long)]
    pub top: bool,
    /// Promote the whole collection instead of one cluster.
    #[arg(long, conflicts_with = "top")]
    pub all: bool,
    /// Synthetic-data strategies, comma-separated: cloze, person_qa, self_qa, rephrase.
    #[arg(long, value_delimiter = ',')]
    pub strategy: Vec<String>,
    /// LoRA rank [default: 16].
    #[arg(long)]
    pub rank: Option<usize>,
    /// Optimiser steps [default: 60].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Documents taken from the cluster at most [default: 40].
    #[arg(long)]
    pub max_documents: Option<usize>,
    /// Activate even when the gate refuses the adapter.
    #[arg(long)]
    pub force: bool,
    /// Also learn from the questions users asked about these documents (the logged
    /// questions, answered by rag; a seeded fifth gate the adapter).
    #[arg(long)]
    pub logged_questions: bool,
    /// How the adapter learns: distill (the model with the rag passages teaches the
    /// model without them) or pairs (question-answer strings) [default: distill when
    /// two or more logged questions retrieved these documents, else pairs].
    #[arg(long, value_parser = ["distill", "pairs"])]
    pub method: Option<String>,
    /// Distillation's loss: kl (to the teacher's top-k distributions), next-token or
    /// kl+next-token (both summed) [default: kl+next-token].
    #[arg(long, value_parser = ["kl", "next-token", "kl+next-token"])]
    pub loss: Option<String>,
    /// Teacher logits kept per answer position [default: 20].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// How distillation's loss weighs the teacher answer's tokens: uniform, or
    /// context-gain (each by how much the passages raised its probability)
    /// [default: uniform].
    #[arg(long, value_parser = ["uniform", "context-gain"])]
    pub token_weights: Option<String>,
    /// The adapter kind: lora (low-rank deltas) or prefix (a trained KV prefix per
    /// layer, initialised from the documents' first tokens) [default: lora].
    #[arg(long, value_parser = ["lora", "prefix"])]
    pub adapter: Option<String>,
    /// Positions of a prefix adapter (1-2048) [default: 256].
    #[arg(long)]
    pub prefix_tokens: Option<usize>,
    /// Retrain the active adapter, from its weights, on the documents written since it
    /// learned them (the stale ones shown by `engram adapters list`); deleted ones
    /// cannot be trained away and stay stale.
    #[arg(long = "continue", conflicts_with_all = ["cluster", "all", "top", "max_documents"])]
    pub continue_training: bool,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Subcommand, Debug)]
pub enum AdaptersAction {
    /// The collection's adapter versions and their gate metrics.
    List {
        collection: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make a version the one `weights` answers use.
    Activate {
        collection: String,
        version: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Go back to the previously active version.
    Rollback {
        collection: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop answering with an adapter.
    Deactivate {
        collection: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a version (not the active one).
    Delete {
        collection: String,
        version: u32,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
pub enum SynthAction {
    /// Print the synthetic training data of a promotion (the latest by default).
    Show {
        collection: String,
        /// The promotion id (see `GET /collections/{name}/promotions`).
        #[arg(long)]
        promotion: Option<String>,
        /// Items printed at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
}

fn client(remote: &Remote) -> Client {
    Client::new(&remote.url, remote.api_key.clone())
}

/// Starts the promotion, follows it with a progress bar per stage, prints the summary.
pub fn promote(args: &PromoteArgs) -> anyhow::Result<()> {
    let client = client(&args.remote);
    let mut body =
        json!({"all": args.all, "force": args.force, "logged_questions": args.logged_questions});
    let set = |body: &mut Value, key: &str, v: Option<Value>| {
        if let Some(v) = v {
            body[key] = v;
        }
    };
    set(&mut body, "cluster", args.cluster.map(|c| json!(c)));
    set(&mut body, "rank", args.rank.map(|c| json!(c)));
    set(&mut body, "steps", args.steps.map(|c| json!(c)));
    set(&mut body, "method", args.method.as_ref().map(|c| json!(c)));
    set(&mut body, "loss", args.loss.as_ref().map(|c| json!(c)));
    set(&mut body, "top_k", args.top_k.map(|c| json!(c)));
    set(
        &mut body,
        "token_weights",
        args.token_weights.as_ref().map(|c| json!(c)),
    );
    set(
        &mut body,
        "adapter",
        args.adapter.as_ref().map(|c| json!(c)),
    );
    set(
        &mut body,
        "prefix_tokens",
        args.prefix_tokens.map(|c| json!(c)),
    );
    set(
        &mut body,
        "max_documents",
        args.max_documents.map(|c| json!(c)),
    );
    if args.continue_training {
        body["continue"] = json!(true);
    }
    if !args.strategy.is_empty() {
        body["strategies"] = json!(args.strategy);
    }
    let name = &args.collection;
    let started: PromotionStatus =
        client.call("POST", &format!("/collections/{name}/promote"), Some(&body))?;
    let id = started.job.id;
    println!(
        "promotion {id} of {} documents of '{name}' started",
        started.documents
    );
    let mut stage = String::new();
    let mut b = bar(0, "starting");
    let status = loop {
        let s: PromotionStatus = client.call(
            "GET",
            &format!("/collections/{name}/promotions/{id}"),
            None::<&()>,
        )?;
        if s.job.stage != stage && s.job.state.is_running() {
            b.finish();
            b = bar(0, &s.job.stage);
            stage = s.job.stage.clone();
        }
        b.set_length(s.job.total as u64);
        b.set_position(s.job.done as u64);
        if let Some(loss) = s.loss {
            b.set_message(format!("{stage} (loss {loss:.3})"));
        }
        if !s.job.state.is_running() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    b.finish();
    match status.job.state {
        JobState::Done => {
            println!("{}", status.summary.unwrap_or_default());
            Ok(())
        }
        state => anyhow::bail!(
            "promotion {id} {state}: {}",
            status.job.error.as_deref().unwrap_or("unknown error")
        ),
    }
}

/// Prints versions as a table: version, active, kind, gate metrics, stale documents.
fn print_versions(reply: &Value) {
    println!(
        "{:>7} {:>6} {:>6} {:>9} {:>11} {:>9} {:>12} {:>9}  created",
        "version", "active", "kind", "base F1", "adapter F1", "base ppl", "adapter ppl", "stale"
    );
    for v in reply["adapters"].as_array().into_iter().flatten() {
        let m = &v["manifest"]["metrics"];
        let f = |k: &str| m[k].as_f64().map_or("-".into(), |x| format!("{x:.3}"));
        let s = &v["staleness"];
        let stale = match (
            s["stale_documents"].as_u64(),
            s["learned_documents"].as_u64(),
        ) {
            (Some(stale), Some(learned)) => format!("{stale}/{learned}"),
            _ => "unknown".into(),
        };
        println!(
            "{:>7} {:>6} {:>6} {:>9} {:>11} {:>9} {:>12} {:>9}  {}",
            v["version"],
            if v["active"] == true { "yes" } else { "" },
            v["kind"].as_str().unwrap_or("-"),
            f("base_f1"),
            f("adapter_f1"),
            f("base_perplexity"),
            f("adapter_perplexity"),
            stale,
            v["manifest"]["created_unix"]
        );
        if let Some(from) = v["manifest"]["continued_from"].as_u64() {
            println!("        continued from version {from}");
        }
        let ids = s["stale_ids"].as_array().into_iter().flatten();
        let ids: Vec<&str> = ids.filter_map(Value::as_str).collect();
        if !ids.is_empty() {
            println!(
                "        stale (written or deleted since): {}",
                ids.join(", ")
            );
        }
    }
}

pub fn adapters(action: &AdaptersAction) -> anyhow::Result<()> {
    let reply: Value = match action {
        AdaptersAction::List { collection, remote } => client(remote).call(
            "GET",
            &format!("/collections/{collection}/adapters"),
            None::<&()>,
        )?,
        AdaptersAction::Activate {
            collection,
            version,
            remote,
        } => client(remote).call(
            "POST",
            &format!("/collections/{collection}/adapters/{version}/activate"),
            None::<&()>,
        )?,
        AdaptersAction::Rollback { collection, remote } => client(remote).call(
            "POST",
            &format!("/collections/{collection}/adapters/rollback"),
            None::<&()>,
        )?,
        AdaptersAction::Deactivate { collection, remote } => client(remote).call(
            "POST",
            &format!("/collections/{collection}/adapters/deactivate"),
            None::<&()>,
        )?,
        AdaptersAction::Delete {
            collection,
            version,
            remote,
        } => client(remote).call(
            "DELETE",
            &format!("/collections/{collection}/adapters/{version}"),
            None::<&()>,
        )?,
    };
    print_versions(&reply);
    Ok(())
}

pub fn synth(action: &SynthAction) -> anyhow::Result<()> {
    let SynthAction::Show {
        collection,
        promotion,
        limit,
        remote,
    } = action;
    let client = client(remote);
    let id = match promotion {
        Some(id) => id.clone(),
        None => {
            let list: Value = client.call(
                "GET",
                &format!("/collections/{collection}/promotions"),
                None::<&()>,
            )?;
            list["promotions"]
                .as_array()
                .and_then(|p| p.last())
                .and_then(|p| p["id"].as_str())
                .with_context(|| format!("collection '{collection}' has no promotions yet; run `engram promote {collection}`"))?
                .to_string()
        }
    };
    let data: Value = client.call(
        "GET",
        &format!("/collections/{collection}/promotions/{id}/data"),
        None::<&()>,
    )?;
    let items = data["items"].as_array().cloned().unwrap_or_default();
    println!("promotion {id}: {} synthetic items", items.len());
    for item in items.iter().take(*limit) {
        let what = match item["kind"].as_str() {
            Some("qa") => format!(
                "Q: {}\n    A: {}",
                item["question"].as_str().unwrap_or_default(),
                item["answer"].as_str().unwrap_or_default()
            ),
            _ => item["text"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
        };
        println!(
            "[{} {}] {what}",
            item["doc_id"].as_str().unwrap_or_default(),
            item["strategy"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
