//! Cluster mode's write latency against one machine's, and a restarted node's
//! catch-up rate, through the real `engram` binary over HTTP on 127.0.0.1.
//!
//! 1. One `engram serve` without `--cluster` (RocksDB, synced WAL): `--writes`
//!    single-document writes (a 16-d vector and a short text each), one at a time;
//!    the latency of each, client side.
//! 2. Three NATS servers (JetStream, the stream R3) and three `engram serve
//!    --cluster` nodes: the same writes through node 1 (each answered once the stream
//!    has it on a quorum and node 1 has applied it).
//!    Then the same writes through node 1 into a collection of replication 1, split
//!    into those whose shard node 1 serves and those forwarded to another node; and
//!    as many vector queries (k 10, with text) through node 1 of each collection:
//!    replication 3 (every shard ranked and read on node 1) against replication 1
//!    (the other nodes' shards ranked by them, and their winners' documents read by
//!    them in the fetch phase).
//! 3. Node 3 stopped (`kill -9`), `--catch-up` more writes through node 1, node 3
//!    started again: the time from its start to having applied the last write
//!    (polling its `GET /cluster`), and the messages applied per second. The time
//!    includes the process start (the models are lazy: well under a second).
//!
//! 4. With `--clients C` (C > 0): concurrent single-document writes, C client
//!    threads spread over the three nodes, into a collection of 1 shard and one of 8
//!    (writes to one shard are ordered cluster-wide by its compare-and-set; to
//!    different shards they are not); then `--query-docs` documents loaded and
//!    `--queries` vector queries (k 10) from C threads spread over the first 1, 2 and
//!    3 nodes. On one 2-core machine this is not a scale-out figure: every process
//!    shares the same cores, and every node holds every shard.
//!
//! 5. With `--bootstrap-docs N` (this phase alone): N documents in batches of 100,
//!    then a new node (empty data directory) replaying the whole stream, against a
//!    new node started from a snapshot taken after them (README "Cluster mode").
//!
//! Prints one JSON line per phase. Run:
//!   cargo build --release --workspace
//!   $CARGO_TARGET_DIR/release/cluster --writes 1000 --catch-up 5000 --clients 4

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use engram_benches::nodes::{
    cluster_node, doc, load, percentile, throughput, until_applied, wait_created, Engram, DIM,
};
use engram_cluster::local::NatsCluster;
use engram_store::collection::shard_of;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Write latency in cluster mode vs one machine, and catch-up rate")]
struct Args {
    /// Single-document writes timed in each mode.
    #[arg(long, default_value_t = 1000)]
    writes: u64,
    /// Writes a stopped node has to catch up on.
    #[arg(long, default_value_t = 5000)]
    catch_up: u64,
    /// Also time the cluster writes with NATS fsyncing every message.
    #[arg(long)]
    fsync_always: bool,
    /// Client threads of the throughput phases (0: skip them).
    #[arg(long, default_value_t = 0)]
    clients: usize,
    /// Concurrent writes per shard setting in the write-throughput phase.
    #[arg(long, default_value_t = 600)]
    concurrent_writes: u64,
    /// Documents loaded before the query-throughput phase.
    #[arg(long, default_value_t = 5000)]
    query_docs: u64,
    /// Queries per node count in the query-throughput phase.
    #[arg(long, default_value_t = 2000)]
    queries: u64,
    /// Run only the bootstrap phase: a new node's start by full replay vs from a
    /// snapshot, over this many documents (0: skip it).
    #[arg(long, default_value_t = 0)]
    bootstrap_docs: u64,
    /// The `engram` binary [default: next to this one].
    #[arg(long)]
    engram: Option<PathBuf>,
}

/// Creates the collection, then times `count` single-document writes from `first`;
/// returns the latencies (ms) and the last write's sequence.
fn timed_writes(node: &Engram, first: u64, count: u64) -> Result<(Vec<f64>, u64)> {
    let mut ms = Vec::with_capacity(count as usize);
    let mut seq = 0;
    for n in first..first + count {
        let t = Instant::now();
        let r = node.call("POST", "/collections/bench/documents", doc(n))?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        seq = r["seq"].as_u64().context("a write answers its seq")?;
    }
    Ok((ms, seq))
}

fn report(mode: &str, ms: Vec<f64>) {
    report_timings(mode, "writes", ms);
}

/// One JSON line: `count` (what was timed: "writes", "queries") and the latencies'
/// median, p99 and maximum.
fn report_timings(mode: &str, count: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"mode": mode, count: ms.len(), "p50_ms": percentile(&ms, 0.5),
            "p99_ms": percentile(&ms, 0.99), "max_ms": ms[ms.len() - 1]})
    );
}

/// `count` vector queries (k 10, text and metadata included) of `collection`
/// through `node`, one at a time: the latency of each, client side.
/// `count` timed queries of `collection` through `node`: by vector, or hybrid (the
/// vector and a document's words: BM25's counts gathered from every shard first).
fn timed_queries(node: &Engram, collection: &str, count: u64, hybrid: bool) -> Result<Vec<f64>> {
    let path = format!("/collections/{collection}/query");
    let mut ms = Vec::with_capacity(count as usize);
    for i in 0..count {
        let d = doc(i * 7919)["documents"][0].clone();
        let body = if hybrid {
            json!({"vector": d["vector"], "text": d["text"], "mode": "hybrid", "k": 10})
        } else {
            json!({"vector": d["vector"], "k": 10})
        };
        let t = Instant::now();
        let r = node.call("POST", &path, body)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if r["hits"].as_array().is_none_or(|h| h.is_empty()) {
            bail!("a query of {collection} found nothing: {r}");
        }
    }
    Ok(ms)
}

fn create(node: &Engram) -> Result<()> {
    node.call("PUT", "/collections/bench", json!({"dimension": DIM}))?;
    Ok(())
}

/// Phase 5 (`--bootstrap-docs N`, run alone): N documents written in batches of 100
/// (a message per shard each) with no snapshot; a new node with an empty data
/// directory starts and replays the whole stream; then a snapshot is taken (and the
/// stream trimmed), and another new node starts from it. Each: seconds to healthy
/// (a bootstrap happens before the node listens) and to having applied the last
/// write.
fn bootstrap_phase(bin: &Path, docs: u64) -> Result<()> {
    let dirs: Vec<tempfile::TempDir> = (0..5)
        .map(|_| tempfile::tempdir())
        .collect::<std::io::Result<_>>()?;
    let nats = NatsCluster::start(3);
    // Snapshots only when asked: the full replay must find the whole stream.
    let node = |i: usize| {
        let extra = [
            "--cluster".to_string(),
            nats.urls(),
            "--node-id".into(),
            (i + 1).to_string(),
            "--snapshot-every-writes".into(),
            "0".into(),
            "--snapshot-every-secs".into(),
            "0".into(),
        ];
        Engram::start(bin, dirs[i].path(), &extra)
    };
    let nodes = (0..3).map(node).collect::<Result<Vec<_>>>()?;
    create(&nodes[0])?;
    wait_created(&nodes.iter().collect::<Vec<_>>(), "bench")?;
    let last = load(&nodes[0], "bench", docs)?;
    let fresh = |i: usize, mode: &str, extra: Value| -> Result<()> {
        let started = Instant::now();
        let n = node(i)?;
        let healthy = started.elapsed().as_secs_f64();
        let caught_up = until_applied(&n, last, started)?;
        let mut line = json!({"mode": mode, "documents": docs, "messages": last,
            "seconds_to_healthy": healthy, "seconds_to_caught_up": caught_up});
        line.as_object_mut()
            .expect("object")
            .extend(extra.as_object().cloned().unwrap_or_default());
        println!("{line}");
        Ok(())
    };
    fresh(3, "new node, full replay", json!({}))?;
    let t = nodes[0].call("POST", "/cluster/snapshot", json!({}))?;
    fresh(
        4,
        "new node, from a snapshot",
        json!({"snapshot_bytes": t["snapshot"]["bytes"], "snapshot_seconds": t["seconds"],
            "stream_first_seq": t["stream_first_seq"]}),
    )
}

/// Creates the collection through `node` and reports the timed writes.
/// Phase 2b: write latency through node 1 into a collection of replication 1 (8
/// shards over the three nodes), split by where each document's shard is placed: a
/// write to one of node 1's shards is built and published there; one to another
/// node's shard is forwarded to that node first (README "Forwarded writes"). Both
/// kinds alternate in one run, so they share the machine's state.
fn forwarded_writes(nodes: &[Engram], writes: u64) -> Result<()> {
    let all: Vec<&Engram> = nodes.iter().collect();
    let body = json!({"dimension": DIM, "shards": 8, "replication": 1});
    all[0].call("PUT", "/collections/solo", body)?;
    wait_created(&all, "solo")?;
    // Node 1's shards, once its graph holds only them.
    let started = Instant::now();
    let mine: BTreeSet<u32> = loop {
        let info = all[0].call("GET", "/collections/solo", Value::Null)?;
        if let Some(list) = info["indexed_shards"].as_array() {
            break list
                .iter()
                .filter_map(|s| s.as_u64())
                .map(|s| s as u32)
                .collect();
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("node 1's graph never held only its shards: {info}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut local, mut forwarded) = (Vec::new(), Vec::new());
    let mut n = 3_000_000;
    while local.len() < writes as usize || forwarded.len() < writes as usize {
        n += 1;
        let here = mine.contains(&shard_of(&format!("d{n}"), 8));
        let into = if here { &mut local } else { &mut forwarded };
        if into.len() >= writes as usize {
            continue;
        }
        let t = Instant::now();
        all[0].call("POST", "/collections/solo/documents", doc(n))?;
        into.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report(
        "cluster, replication 1: to a shard of the node asked",
        local,
    );
    report(
        "cluster, replication 1: forwarded to the shard's node",
        forwarded,
    );
    // Queries through node 1: every shard local (replication 3) against most shards
    // ranked, and their winners' documents read, by another node (replication 1).
    // Hybrid queries add, with remote shards, the round that gathers BM25's counts.
    for (mode, collection, hybrid) in [
        (
            "query, replication 3: every shard on the node asked",
            "bench",
            false,
        ),
        (
            "query, replication 1: other shards ranked and fetched remotely",
            "solo",
            false,
        ),
        (
            "hybrid query, replication 3: every shard on the node asked",
            "bench",
            true,
        ),
        (
            "hybrid query, replication 1: BM25 counts gathered, shards ranked and fetched remotely",
            "solo",
            true,
        ),
    ] {
        timed_queries(all[0], collection, 20, hybrid)?; // warm-up
        let ms = timed_queries(all[0], collection, writes, hybrid)?;
        report_timings(mode, "queries", ms);
    }
    Ok(())
}

fn cluster_writes(mode: &str, node: &Engram, writes: u64) -> Result<()> {
    create(node)?;
    timed_writes(node, 1_000_000, 20)?; // warm-up
    report(mode, timed_writes(node, 0, writes)?.0);
    Ok(())
}

/// Phase 4: concurrent writes into 1 vs 8 shards, then queries through 1, 2, 3 nodes.
fn throughput_phases(nodes: &[Engram], args: &Args) -> Result<()> {
    let all: Vec<&Engram> = nodes.iter().collect();
    for shards in [1, 8] {
        let name = format!("shards{shards}");
        all[0].call(
            "PUT",
            &format!("/collections/{name}"),
            json!({"dimension": DIM, "shards": shards}),
        )?;
        wait_created(&all, &name)?;
        let path = format!("/collections/{name}/documents");
        let per_s = throughput(&all, args.clients, args.concurrent_writes, |node, n| {
            node.call("POST", &path, doc(n)).map(drop)
        })?;
        println!(
            "{}",
            json!({"mode": "concurrent writes", "shards": shards, "clients": args.clients,
                "nodes": 3, "writes": args.concurrent_writes, "writes_per_s": per_s})
        );
    }
    let last = load(all[0], "shards8", args.query_docs)?;
    for n in 1..=3 {
        let query = |node: &Engram, i: u64| {
            let v = doc(i * 7919)["documents"][0]["vector"].clone();
            let body = json!({"vector": v, "k": 10, "min_seq": last});
            node.call("POST", "/collections/shards8/query", body)
                .map(drop)
        };
        throughput(&all[..n], args.clients, 100, query)?; // warm-up
        let qps = throughput(&all[..n], args.clients, args.queries, query)?;
        println!(
            "{}",
            json!({"mode": "query throughput", "nodes": n, "clients": args.clients,
                "documents": args.query_docs.max(args.concurrent_writes), "queries": args.queries, "queries_per_s": qps})
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match args.engram.clone() {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("engram"),
    };
    if args.bootstrap_docs > 0 {
        return bootstrap_phase(&bin, args.bootstrap_docs);
    }
    let dirs: Vec<tempfile::TempDir> = (0..7)
        .map(|_| tempfile::tempdir())
        .collect::<std::io::Result<_>>()?;

    let single = Engram::start(&bin, dirs[3].path(), &[])?;
    cluster_writes("embedded (one node, synced WAL)", &single, args.writes)?;
    drop(single);

    if args.fsync_always {
        // The same writes with every NATS server fsyncing each message before its ack.
        let nats = NatsCluster::start_with(3, true);
        let nodes = (0..3)
            .map(|i| cluster_node(&bin, &nats, dirs[4 + i].path(), i))
            .collect::<Result<Vec<_>>>()?;
        cluster_writes("cluster, NATS sync_interval always", &nodes[0], args.writes)?;
    }
    let nats = NatsCluster::start(3);
    let mut nodes = (0..3)
        .map(|i| cluster_node(&bin, &nats, dirs[i].path(), i))
        .collect::<Result<Vec<_>>>()?;
    cluster_writes("cluster (3 NATS, R3; 3 nodes)", &nodes[0], args.writes)?;
    forwarded_writes(&nodes, args.writes)?;
    if args.clients > 0 {
        throughput_phases(&nodes, &args)?;
    }

    nodes[2].kill9();
    let (_, last) = timed_writes(&nodes[0], 2_000_000, args.catch_up)?;
    let started = Instant::now();
    nodes[2] = cluster_node(&bin, &nats, dirs[2].path(), 2)?;
    let healthy = started.elapsed().as_secs_f64();
    let seconds = until_applied(&nodes[2], last, started)?;
    println!(
        "{}",
        json!({"mode": "catch-up", "messages": args.catch_up, "seconds_to_healthy": healthy,
            "seconds_to_caught_up": seconds, "applied_per_s": args.catch_up as f64 / seconds})
    );
    Ok(())
}
