//! What N machines would give a cluster's vector queries, from the CPU each
//! process spends per query here (issue 24). One 2-core machine cannot show
//! scale-out: every node, NATS server and client shares the same cores. What it
//! can measure is the work: the CPU-seconds per query of each process kind, read
//! from `/proc/PID/stat` (utime + stime) before and after each query phase.
//!
//! Setup: 3 NATS servers (JetStream R3) and 3 `engram serve --cluster` nodes, and
//! three collections of `--query-docs` 16-d documents, 8 shards each:
//! - `r3`, replication 3: every node serves every shard, so a query is answered
//!   in-process (the local fast path: one walk, then the merge; no NATS);
//! - `r2` and `r1`, replication 2 and 1: a node serves some shards and asks a
//!   replica of each other one by NATS request/reply (JSON both ways, the remote
//!   node's walk filtered to that shard); how many is read from `GET /cluster`.
//!
//! Every node still stores and applies every shard (Engram today); placement only
//! decides who answers.
//!
//! For each collection: the p50 latency of one query at a time through node 1;
//! then `--queries` vector queries (k 10) from `--clients` threads over the first
//! 1, 2 and 3 nodes, with the CPU-seconds per query of the engram nodes, the
//! NATS servers and the client (this process), and the whole machine's busy time
//! from `/proc/stat` (what other processes took meanwhile).
//!
//! The model (`engram_benches::cpu`): on N machines of C cores, with the work
//! CPU-bound and spread evenly,
//!   throughput = N * C / (CPU-s per query of the processes on those machines),
//!   capped by what the clients ask (clients / latency);
//!   latency = max(local walk, slowest remote shard's round trip + walk) + merge.
//! Checked here: with every process on the same cores, it predicts
//! cores / (total CPU-s per query, client included); each run prints that against
//! the measured rate. On a machine shared with other work that ratio is mostly the
//! share of the cores the bench got, so each run is also predicted from the CPU
//! per query of the other two node counts and the cores the other processes left
//! it (from `/proc/stat`): that checks that the work per query does not depend on
//! the node count, and that the bench used the cores it was left (no idle time).
//! The model's costs are net of what the processes spend idle (heartbeats,
//! JetStream's own traffic: measured for `--idle-secs` first, per wall second).
//! The per-remote-shard cost is a line fitted through the `r3` and `r1` runs
//! (CPU per query against remote shards per query), checked on the `r2` runs.
//! Then the projection for N = 3, 10, 30 machines: the all-local design (every
//! node stores every shard and answers alone: Engram with replication = nodes)
//! and a design where each node stores only its shards (replication 3; a query
//! asks the shards it does not hold).
//!
//! Prints one JSON line per measurement. Run:
//!   cargo build --release -p engram-db --bin engram -p engram-benches --bin cluster_model
//!   $CARGO_TARGET_DIR/release/cluster_model --query-docs 3000 --queries 1000 --clients 4

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use engram_benches::cpu::{self, fit_line, remote_shards};
use engram_benches::nodes::{
    cluster_node, doc, load, percentile, throughput, wait_created, Engram, DIM,
};
use engram_cluster::local::NatsCluster;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "CPU per query of each cluster process, and what N machines would give")]
struct Args {
    /// Client threads of the throughput runs.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Documents in each collection.
    #[arg(long, default_value_t = 3000)]
    query_docs: u64,
    /// Queries per (collection, node count) run.
    #[arg(long, default_value_t = 1000)]
    queries: u64,
    /// One-at-a-time queries timed for each collection's latency.
    #[arg(long, default_value_t = 200)]
    latency_queries: u64,
    /// Seconds of idle background CPU measured before the queries.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// Cores per machine in the projection [default: this machine's].
    #[arg(long)]
    cores: Option<f64>,
    /// Assumed network round trip between machines (ms), for the projected
    /// latency: a remote shard's request and answer each pass a NATS server, two
    /// round trips.
    #[arg(long, default_value_t = 0.2)]
    network_rtt_ms: f64,
    /// The `engram` binary [default: next to this one].
    #[arg(long)]
    engram: Option<PathBuf>,
}

/// Shards of each collection.
const SHARDS: u32 = 8;
/// The collections: name and replication.
const PATHS: [(&str, u32); 3] = [("r3", 3), ("r2", 2), ("r1", 1)];

/// CPU-seconds so far of each process kind, and the machine's busy/total ticks.
struct Snapshot {
    engram: f64,
    nats: f64,
    client: f64,
    machine: (u64, u64),
    at: Instant,
}

/// The processes measured.
struct Pids {
    engram: Vec<u32>,
    nats: Vec<u32>,
    hz: f64,
}

impl Pids {
    fn snapshot(&self) -> Result<Snapshot> {
        let sum = |pids: &[u32]| -> Result<f64> {
            pids.iter().map(|&p| cpu::process_seconds(p, self.hz)).sum()
        };
        Ok(Snapshot {
            engram: sum(&self.engram)?,
            nats: sum(&self.nats)?,
            client: cpu::process_seconds(std::process::id(), self.hz)?,
            machine: cpu::machine_ticks(&std::fs::read_to_string("/proc/stat")?)?,
            at: Instant::now(),
        })
    }
}

/// What a stretch of time cost: CPU-seconds per kind, wall seconds, and the
/// machine's busy cores over it.
struct Spent {
    engram: f64,
    nats: f64,
    client: f64,
    wall: f64,
    machine_busy_cores: f64,
}

impl Spent {
    fn between(a: &Snapshot, b: &Snapshot, cores: f64) -> Spent {
        let busy = (b.machine.0 - a.machine.0) as f64;
        let total = (b.machine.1 - a.machine.1).max(1) as f64;
        Spent {
            engram: b.engram - a.engram,
            nats: b.nats - a.nats,
            client: b.client - a.client,
            wall: b.at.duration_since(a.at).as_secs_f64(),
            machine_busy_cores: cores * busy / total,
        }
    }

    fn ours(&self) -> f64 {
        self.engram + self.nats + self.client
    }
}

/// Remote shards of collection `name` for each node id: the shards whose placed
/// replicas (`GET /cluster`) do not include it.
fn remote_by_node(status: &Value, name: &str) -> Result<BTreeMap<u64, u32>> {
    let mut remote = BTreeMap::new();
    let shards = status["shards"]
        .as_array()
        .context("GET /cluster: shards")?;
    let mine: Vec<&Value> = shards.iter().filter(|s| s["collection"] == name).collect();
    if mine.len() != SHARDS as usize {
        bail!("GET /cluster lists {} shards of {name}", mine.len());
    }
    for id in 1..=3u64 {
        let served = mine
            .iter()
            .filter(|s| {
                s["replicas"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["node_id"] == id))
            })
            .count() as u32;
        remote.insert(id, SHARDS - served);
    }
    Ok(remote)
}

/// Answers with fewer than 10 hits (an approximate walk may stop short): counted and
/// printed with the model, not fatal; none are expected.
static SHORT_ANSWERS: AtomicU64 = AtomicU64::new(0);

/// One query of collection `name` for document `i`'s vector; the server's took_ms.
fn query(node: &Engram, name: &str, i: u64, min_seq: u64) -> Result<f64> {
    let v = doc(i * 7919)["documents"][0]["vector"].clone();
    let body = json!({"vector": v, "k": 10, "min_seq": min_seq});
    let r = node.call("POST", &format!("/collections/{name}/query"), body)?;
    let hits = r["hits"].as_array().map_or(0, Vec::len);
    if hits == 0 {
        bail!("a query of {name} answered no hits: {r}");
    }
    if hits < 10 {
        SHORT_ANSWERS.fetch_add(1, Ordering::Relaxed);
    }
    r["took_ms"].as_f64().context("took_ms")
}

/// Latency of one query at a time through `node` (node 1); prints it and
/// returns the client-side p50 (ms).
fn latency(
    node: &Engram,
    name: &str,
    remote: u32,
    replication: u32,
    last: u64,
    args: &Args,
) -> Result<f64> {
    for i in 0..20 {
        query(node, name, i, last)?;
    }
    let mut client_ms = Vec::new();
    let mut server_ms = Vec::new();
    for i in 0..args.latency_queries {
        let t = Instant::now();
        server_ms.push(query(node, name, i, last)?);
        client_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    client_ms.sort_by(f64::total_cmp);
    server_ms.sort_by(f64::total_cmp);
    let p50 = percentile(&client_ms, 0.5);
    println!(
        "{}",
        json!({"mode": "latency", "collection": name, "replication": replication,
            "remote_shards": remote, "queries": args.latency_queries,
            "p50_ms": p50, "p99_ms": percentile(&client_ms, 0.99),
            "server_p50_ms": percentile(&server_ms, 0.5)})
    );
    Ok(p50)
}

/// One (collection, node count) run's figures, kept for the fit.
struct Run {
    path: &'static str,
    remote: f64,
    /// CPU-s per query of the nodes and the NATS servers (the client left out).
    servers_cpu: f64,
    engram_cpu: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match args.engram.clone() {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("engram"),
    };
    if args.clients == 0 || args.queries == 0 || args.latency_queries == 0 {
        bail!("--clients, --queries and --latency-queries must be at least 1");
    }
    if args.query_docs < 10 {
        bail!("--query-docs must be at least 10 (the queries ask for 10 hits)");
    }
    let here_cores = std::thread::available_parallelism()?.get() as f64;
    let cores = args.cores.unwrap_or(here_cores);
    if !(cores > 0.0 && cores.is_finite()) {
        bail!("--cores must be a positive number, not {cores}");
    }
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<std::io::Result<_>>()?;
    let nats = NatsCluster::start(3);
    let nodes = (0..3)
        .map(|i| cluster_node(&bin, &nats, dirs[i].path(), i))
        .collect::<Result<Vec<_>>>()?;
    let all: Vec<&Engram> = nodes.iter().collect();
    let pids = Pids {
        engram: nodes.iter().filter_map(Engram::pid).collect(),
        nats: cpu::children_named(std::process::id(), "nats-server")?,
        hz: cpu::clock_ticks()?,
    };
    if pids.nats.len() != 3 || pids.engram.len() != 3 {
        bail!(
            "found {:?} nats-servers and {:?} nodes",
            pids.nats,
            pids.engram
        );
    }

    let mut last = 0;
    for (name, replication) in PATHS {
        let body = json!({"dimension": DIM, "shards": SHARDS, "replication": replication});
        all[0].call("PUT", &format!("/collections/{name}"), body)?;
        wait_created(&all, name)?;
        last = last.max(load(all[0], name, args.query_docs)?);
    }
    // Every node re-plans which shards it answers every 2 s (scatter::REPLAN_EVERY).
    std::thread::sleep(Duration::from_secs(5));
    let status = all[0].call("GET", "/cluster", Value::Null)?;

    let idle = pids.snapshot()?;
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let s = Spent::between(&idle, &pids.snapshot()?, here_cores);
    println!(
        "{}",
        json!({"mode": "idle background", "seconds": s.wall, "cores_used": {
            "engram": s.engram / s.wall, "nats": s.nats / s.wall, "client": s.client / s.wall},
            "machine_busy_cores": s.machine_busy_cores, "machine_cores": here_cores,
            "load_average": std::fs::read_to_string("/proc/loadavg")?.trim()})
    );

    let background = [s.engram / s.wall, s.nats / s.wall, s.client / s.wall];

    let mut runs = Vec::new();
    let mut p50 = BTreeMap::new();
    for (name, replication) in PATHS {
        let remote = remote_by_node(&status, name)?;
        p50.insert(
            name,
            latency(all[0], name, remote[&1], replication, last, &args)?,
        );
        let cap = args.clients as f64 * 1000.0 / p50[name];
        let mut lines = Vec::new();
        for n in 1..=3usize {
            let one = |node: &Engram, i: u64| query(node, name, i, last).map(drop);
            throughput(&all[..n], args.clients, 100, one)?; // warm-up
            let before = pids.snapshot()?;
            let qps = throughput(&all[..n], args.clients, args.queries, one)?;
            let s = Spent::between(&before, &pids.snapshot()?, here_cores);
            // Client thread t asks node t mod n, an equal share of the queries each.
            let remote_per_query = (0..args.clients)
                .map(|t| f64::from(remote[&((t % n + 1) as u64)]))
                .sum::<f64>()
                / args.clients as f64;
            let q = args.queries as f64;
            let raw = [s.engram / q, s.nats / q, s.client / q];
            // Less what the processes spend idle (heartbeats, JetStream's own
            // traffic) over the run's wall time: the per-query work alone.
            let net: Vec<f64> = (0..3)
                .map(|k| (raw[k] - background[k] * s.wall / q).max(0.0))
                .collect();
            let total = s.ours() / q;
            let others = (s.machine_busy_cores - s.ours() / s.wall).max(0.0);
            let predicted = cpu::throughput(1.0, here_cores, total, cap);
            let ms = |v: &[f64]| {
                json!({"engram": 1000.0 * v[0], "nats": 1000.0 * v[1],
                "client": 1000.0 * v[2], "total": 1000.0 * v.iter().sum::<f64>()})
            };
            lines.push((
                json!({"mode": "query cpu", "collection": name, "replication": replication,
                    "nodes": n, "clients": args.clients, "documents": args.query_docs,
                    "queries": args.queries, "remote_shards_per_query": remote_per_query,
                    "queries_per_s": qps, "cpu_ms_per_query": ms(&raw),
                    "cpu_ms_per_query_less_idle": ms(&net),
                    "cores_used_by_bench": s.ours() / s.wall, "cores_used_by_others": others,
                    "machine_idle_cores": here_cores - s.machine_busy_cores,
                    "client_cap_qps": cap, "predicted_qps_all_cores": predicted,
                    "ratio_all_cores": qps / predicted}),
                total,
                others,
            ));
            runs.push(Run {
                path: name,
                remote: remote_per_query,
                servers_cpu: net[0] + net[1],
                engram_cpu: net[0],
            });
        }
        // The cross check: each run predicted from the CPU per query of the other
        // two node counts and the cores the other processes left it.
        for (i, (mut line, _, others)) in lines.clone().into_iter().enumerate() {
            let other_cpu = lines
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, l)| l.1)
                .sum::<f64>()
                / (lines.len() - 1) as f64;
            let predicted = cpu::throughput(1.0, here_cores - others, other_cpu, cap);
            let qps = line["queries_per_s"].as_f64().context("qps")?;
            let o = line.as_object_mut().context("object")?;
            o.insert("predicted_qps_from_other_runs".into(), json!(predicted));
            o.insert("ratio_from_other_runs".into(), json!(qps / predicted));
            println!("{line}");
        }
    }
    model(&args, cores, &runs, &p50)
}

/// The per-remote-shard cost (a line through the all-local and the replication-1
/// runs, checked on the replication-2 runs), then the projection to N machines.
fn model(args: &Args, cores: f64, runs: &[Run], p50: &BTreeMap<&str, f64>) -> Result<()> {
    let points: Vec<(f64, f64)> = runs
        .iter()
        .filter(|r| r.path != "r2")
        .map(|r| (r.remote, r.servers_cpu))
        .collect();
    let (base, per_remote) = fit_line(&points).context("no remote shards in any run")?;
    for r in runs.iter().filter(|r| r.path == "r2") {
        let predicted = base + per_remote * r.remote;
        println!(
            "{}",
            json!({"mode": "fit check", "collection": "r2", "remote_shards_per_query": r.remote,
                "predicted_cpu_ms": 1000.0 * predicted, "measured_cpu_ms": 1000.0 * r.servers_cpu,
                "ratio": r.servers_cpu / predicted})
        );
    }
    let mean = |path: &str, f: fn(&Run) -> f64| {
        let xs: Vec<f64> = runs.iter().filter(|r| r.path == path).map(f).collect();
        xs.iter().sum::<f64>() / xs.len() as f64
    };
    // All-local: the nodes alone (NATS carries no query), mean of the r3 runs.
    let local_cpu = mean("r3", |r| r.engram_cpu);
    // The scatter round-trip part of latency here: r1's p50 less r3's, per the
    // remote shards node 1 asks.
    let rtt_here = p50["r1"] - p50["r3"];
    println!(
        "{}",
        json!({"mode": "model", "cpu_ms_all_local_query": 1000.0 * local_cpu,
            "cpu_ms_base": 1000.0 * base, "cpu_ms_per_remote_shard": 1000.0 * per_remote,
            "fit_points": points.len(), "scatter_latency_extra_ms_here": rtt_here,
            "answers_under_10_hits": SHORT_ANSWERS.load(Ordering::Relaxed),
            "cores_per_machine": cores, "network_rtt_ms": args.network_rtt_ms})
    );
    for machines in [3u32, 10, 30] {
        let n = f64::from(machines);
        let remote = remote_shards(SHARDS, 3, machines);
        let own_cpu = base + per_remote * remote;
        println!(
            "{}",
            json!({"mode": "projection", "machines": machines, "cores_per_machine": cores,
                "every_node_stores_every_shard": {
                    "cpu_ms_per_query": 1000.0 * local_cpu,
                    "queries_per_s": cpu::throughput(n, cores, local_cpu, f64::INFINITY),
                    "p50_ms": p50["r3"], "memory_per_node": "all documents",
                    "note": "Engram today with replication = nodes"},
                "each_node_stores_its_shards": {
                    "replication": 3, "remote_shards_per_query": remote,
                    "cpu_ms_per_query": 1000.0 * own_cpu,
                    "queries_per_s": cpu::throughput(n, cores, own_cpu, f64::INFINITY),
                    "p50_ms": if remote > 0.0 { p50["r1"] + 2.0 * args.network_rtt_ms } else { p50["r3"] },
                    "memory_per_node": format!("{:.0}% of the documents", 100.0 * 3.0_f64.min(n) / n)}})
        );
    }
    Ok(())
}
