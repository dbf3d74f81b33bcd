//! What a cluster node's memory and disk hold as replication falls below the node
//! count (issue 24): each node's graph holds only the shards placed on it
//! (`store/src/shard_scope.rs`), and by default (`--shard-records placed`, since the
//! fifteenth session) so do its records (RocksDB) and keyword index; until then
//! they stayed whole (the tenth session's rows in the results file). Side by side in one run, on fresh clusters of 3 NATS servers (R3) and 3
//! `engram serve --cluster` nodes: one collection of `--docs` 16-d documents in 8
//! shards at replication 3 (every node's graph holds everything: one machine's
//! graph) and at replication 1 (each about a third).
//!
//! Per node: documents counted (the whole collection's, summed over shards), the
//! shards whose records it keeps, the size of its data directory, vectors in its
//! graph (`indexed_vectors`), the graph's
//! size from `index_bytes_per_vector` (the vector, its int8 codes, its links), and
//! the process's resident memory (`VmRSS`) before the load and after it settled, so
//! the growth holds the records' caches, the keyword index and the graph. The
//! difference of the growths between the two replications is what the graph's
//! placement saves; the ratio of graph sizes is what it should be.
//!
//! Prints one JSON line per node and a summary line. Run:
//!   cargo build --release -p engram-db --bin engram -p engram-benches --bin cluster_memory
//!   $CARGO_TARGET_DIR/release/cluster_memory --docs 100000

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use engram_benches::nodes::{cluster_node, load, wait_created, Engram, DIM};
use engram_cluster::local::NatsCluster;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Memory per cluster node at replication 3 and 1")]
struct Args {
    /// Documents in the collection.
    #[arg(long, default_value_t = 100_000)]
    docs: u64,
    /// The `engram` binary [default: next to this one].
    #[arg(long)]
    engram: Option<PathBuf>,
}

/// Shards of the collection.
const SHARDS: u32 = 8;
const NAME: &str = "mem";

/// A process's resident memory in MiB, from `/proc/PID/status`.
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()?;
    Ok(kib / 1024.0)
}

fn info(node: &Engram) -> Result<Value> {
    node.call("GET", &format!("/collections/{NAME}"), Value::Null)
}

/// The bytes under `dir`, in MiB.
fn dir_mib(dir: &Path) -> Result<f64> {
    let mut bytes = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            bytes += (dir_mib(&entry.path())? * 1024.0 * 1024.0) as u64;
        } else {
            bytes += meta.len();
        }
    }
    Ok(bytes as f64 / (1024.0 * 1024.0))
}

/// Waits until `probe` holds on every node (polling every 200 ms, up to `secs`).
fn until(nodes: &[Engram], secs: u64, what: &str, probe: impl Fn(&Value) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut all = true;
        for node in nodes {
            all &= probe(&info(node)?);
        }
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not reached within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One fresh cluster with the collection at `replication`: a JSON line per node.
fn measure(bin: &Path, docs: u64, replication: u32) -> Result<Vec<Value>> {
    let nats = NatsCluster::start(3);
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let nodes: Vec<Engram> = (0..3)
        .map(|i| cluster_node(bin, &nats, dirs[i].path(), i))
        .collect::<Result<_>>()?;
    nodes[0].call(
        "PUT",
        &format!("/collections/{NAME}"),
        json!({"dimension": DIM, "distance": "cosine", "shards": SHARDS, "replication": replication}),
    )?;
    wait_created(&nodes.iter().collect::<Vec<_>>(), NAME)?;
    // Placement settles (the planner runs every 2 s) before anything is loaded.
    let placed = |i: &Value| {
        replication >= 3 || (i.get("indexed_shards").is_some() && i.get("record_shards").is_some())
    };
    until(&nodes, 30, "graphs placed", placed)?;
    let before: Vec<f64> = nodes
        .iter()
        .map(|n| rss_mib(n.pid().context("running")?))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    load(&nodes[0], NAME, docs)?;
    let load_secs = started.elapsed().as_secs_f64();
    until(&nodes, 120, "every node applied the load", |i| {
        i["vectors"].as_u64() == Some(docs)
    })?;
    // Background graph dumps and compactions finish.
    std::thread::sleep(Duration::from_secs(5));
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let info = info(node)?;
            let indexed = info["indexed_vectors"]
                .as_f64()
                .context("indexed_vectors")?;
            let per_vector = info["index_bytes_per_vector"].as_f64().context("bytes")?;
            let rss = rss_mib(node.pid().context("running")?)?;
            Ok(json!({
                "replication": replication,
                "node": i + 1,
                "documents": info["documents"],
                "indexed_vectors": indexed,
                "indexed_shards": info.get("indexed_shards").cloned().unwrap_or(json!("all")),
                "record_shards": info.get("record_shards").cloned().unwrap_or(json!("all")),
                "disk_mib": dir_mib(dirs[i].path())?,
                "graph_mib": indexed * per_vector / (1024.0 * 1024.0),
                "rss_before_mib": before[i],
                "rss_after_mib": rss,
                "rss_growth_mib": rss - before[i],
                "load_secs": load_secs,
            }))
        })
        .collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match args.engram {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("engram"),
    };
    let mut growth = Vec::new();
    let mut graph = Vec::new();
    let mut disk = Vec::new();
    for replication in [3, 1] {
        let rows = measure(&bin, args.docs, replication)?;
        for r in &rows {
            println!("{r}");
        }
        let mean = |key: &str| rows.iter().filter_map(|r| r[key].as_f64()).sum::<f64>() / 3.0;
        growth.push(mean("rss_growth_mib"));
        graph.push(mean("graph_mib"));
        disk.push(mean("disk_mib"));
    }
    println!(
        "{}",
        json!({
            "summary": "mean per node, replication 3 vs 1",
            "docs": args.docs,
            "graph_mib": graph,
            "graph_ratio_r1_over_r3": graph[1] / graph[0],
            "rss_growth_mib": growth,
            "rss_growth_saved_mib": growth[0] - growth[1],
            "disk_mib": disk,
            "disk_ratio_r1_over_r3": disk[1] / disk[0],
        })
    );
    Ok(())
}
