//! A shard's records arriving on a node that lacks them, two ways, in one run on the
//! same documents (README "Records that follow placement"):
//!
//! 1. Copy: three NATS servers and two `engram serve --cluster --shard-records
//!    placed` nodes; a collection of one shard at replication 1 (its records on one
//!    node), `--docs` documents (a 16-d vector and a short text each) in batches of
//!    100; then a placement override moves the shard to the other node, which copies
//!    it from the first through the object store and indexes it: the seconds from the
//!    override to that node keeping the shard's records, and to its graph holding it.
//!    Meanwhile a client writes one document at a time through the node copying the
//!    shard (each write is to the shard being copied): the latency of those writes
//!    against the same client's writes before the copy (a node whose follower were
//!    held during the copy would answer them only after it), and, once copied, the
//!    node must hold every one of them.
//! 2. Replay (the peer): a third node, new, keeping every shard's records, replays
//!    the whole stream: the seconds from its start to having applied the last write
//!    (its graph built as it applies).
//!
//! Prints one JSON line per way and their ratio. Run:
//!   cargo build --release --workspace
//!   $CARGO_TARGET_DIR/release/cluster_copy --docs 20000

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use engram_benches::nodes::{doc, load, percentile, until_applied, wait_created, Engram, DIM};
use engram_cluster::local::NatsCluster;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "A shard copied to a node against a new node replaying the stream")]
struct Args {
    /// Documents in the shard.
    #[arg(long, default_value_t = 20_000)]
    docs: u64,
    /// The `engram` binary [default: next to this one].
    #[arg(long)]
    engram: Option<PathBuf>,
}

/// Whether `node` keeps every shard of `bench` (`record_shards` absent) or none
/// (empty), and the same of its graph (`indexed_shards`).
fn holds(node: &Engram) -> Option<(bool, bool)> {
    let info = node.call("GET", "/collections/bench", Value::Null).ok()?;
    let all = |v: &Value| match v {
        Value::Null => Some(true),
        v if v == &json!([]) => Some(false),
        _ => None,
    };
    Some((all(&info["record_shards"])?, all(&info["indexed_shards"])?))
}

/// Writes documents `first..` one a request through `node`, one every 20 ms, while
/// `more` says so (at least `at_least`); their latencies in ms and the last sequence.
fn write_one_by_one(
    node: &Engram,
    first: u64,
    at_least: usize,
    more: impl Fn() -> bool,
) -> Result<(Vec<f64>, u64)> {
    let (mut ms, mut last) = (Vec::new(), 0);
    for n in first.. {
        if ms.len() >= at_least && !more() {
            break;
        }
        let sent = Instant::now();
        let r = node.call("POST", "/collections/bench/documents", doc(n))?;
        ms.push(sent.elapsed().as_secs_f64() * 1e3);
        last = r["seq"].as_u64().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((ms, last))
}

/// p50, p99 and max of latencies in ms.
fn spread(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({"writes": ms.len(), "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99),
        "max_ms": ms.last().copied().unwrap_or(0.0)})
}

/// Polls until `check` holds; the seconds since `started`.
fn until(what: &str, started: Instant, mut check: impl FnMut() -> bool) -> Result<f64> {
    while !check() {
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("{what}: not within 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match args.engram.clone() {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("engram"),
    };
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<std::io::Result<_>>()?;
    let nats = NatsCluster::start(3);
    let node = |i: usize, records: &str| {
        let extra = [
            "--cluster".to_string(),
            nats.urls(),
            "--node-id".into(),
            (i + 1).to_string(),
            "--shard-records".into(),
            records.into(),
            "--snapshot-every-writes".into(),
            "0".into(),
            "--snapshot-every-secs".into(),
            "0".into(),
        ];
        Engram::start(&bin, dirs[i].path(), &extra)
    };
    let nodes = [node(0, "placed")?, node(1, "placed")?];
    nodes[0].call(
        "PUT",
        "/collections/bench",
        json!({"dimension": DIM, "shards": 1, "replication": 1}),
    )?;
    wait_created(&[&nodes[0], &nodes[1]], "bench")?;
    let last = load(&nodes[0], "bench", args.docs)?;
    let settled = Instant::now();
    until("one node keeps the shard", settled, || {
        let (a, b) = (Some((true, true)), Some((false, false)));
        let held: Vec<_> = nodes.iter().map(holds).collect();
        held == [a, b] || held == [b, a]
    })?;
    for n in &nodes {
        until_applied(n, last, settled)?;
    }
    let target = usize::from(holds(&nodes[0]) == Some((true, true)));
    let (before, _) = write_one_by_one(&nodes[target], args.docs, 50, || false)?;
    let written = args.docs + before.len() as u64;
    let started = Instant::now();
    nodes[0].call(
        "PUT",
        "/cluster/placement/bench/0",
        json!({"nodes": [target + 1]}),
    )?;
    let indexed = std::sync::atomic::AtomicBool::new(false);
    let (copied, copy, (during, last)) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            write_one_by_one(&nodes[target], written, 1, || {
                !indexed.load(std::sync::atomic::Ordering::SeqCst)
            })
        });
        let copied = until("the shard copied", started, || {
            holds(&nodes[target]).is_some_and(|h| h.0)
        });
        let copy = until("the shard indexed", started, || {
            holds(&nodes[target]) == Some((true, true))
        });
        indexed.store(true, std::sync::atomic::Ordering::SeqCst);
        let wrote = writer.join().expect("writer thread");
        Ok::<_, anyhow::Error>((copied?, copy?, wrote?))
    })?;
    let total = written + during.len() as u64;
    until_applied(&nodes[target], last, started)?;
    let held = nodes[target].call("GET", "/collections/bench", Value::Null)?["documents"].clone();
    if held != json!(total) {
        bail!("the node that copied the shard holds {held} documents, {total} were written");
    }
    println!(
        "{}",
        json!({"mode": "shard copy (placement override, --shard-records placed)",
            "documents": args.docs, "seconds_to_records": copied, "seconds": copy,
            "documents_per_s": args.docs as f64 / copy,
            "writes_before": spread(before), "writes_during": spread(during),
            "documents_after": total})
    );
    let started = Instant::now();
    let fresh = node(2, "all")?;
    let replay = until_applied(&fresh, last, started)?;
    println!(
        "{}",
        json!({"mode": "new node, full replay of the stream", "documents": total,
            "messages": last, "seconds": replay, "documents_per_s": total as f64 / replay,
            "replay_over_copy": replay / copy})
    );
    Ok(())
}
