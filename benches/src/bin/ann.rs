//! Engram's side of the ANN benchmark: builds `engram_store::index::VectorIndex` on a
//! data set made by `scripts/ann_data.py` and sweeps ef, printing one JSON line per
//! ef in the same shape as `benches/peers/ann_peers.py`:
//!
//! {"engine":"engram","dataset":"glove-50-angular","m":16,"ef_construction":200,
//!  "ef":40,"k":10,"recall@10":0.87,"qps":12345.6,"build_s":61.2,
//!  "build_threads":2,"search_threads":1,"n":390000,"n_test":10000}
//!
//! Build: one `insert_batch` of the whole train set (the graph searches for
//! new nodes' neighbours on every core: build_threads is the core count). Search: one thread, a plain loop over the test
//! queries; qps is the median of `--passes` passes. recall@10 is the mean of
//! |returned top-10 ∩ exact top-10| / 10 over the test queries (ids).
//!
//! Run: benches/run_ann.sh, or
//!   cargo build --release -p engram-benches --bin ann
//!   $CARGO_TARGET_DIR/release/ann --dataset ~/.cache/engram/bench/glove-50-angular

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use engram_benches::{median, meta_usize, read_le4, AnnMeta};
use engram_store::index::{IndexParams, Quantization, VectorIndex};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Engram HNSW recall / QPS sweep on an ann_data.py data set")]
struct Args {
    /// Folder made by scripts/ann_data.py (meta.json, train.f32, test.f32, gt.i32).
    #[arg(long)]
    dataset: PathBuf,
    /// HNSW links per node.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// Search breadth while building.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Comma-separated ef values to sweep.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40,80,120,200,400")]
    ef: Vec<usize>,
    /// Neighbours asked for per query (recall is measured at 10).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Walk the graph on the f32 vectors (the collection setting
    /// `"hnsw": {"quantization": "none"}`) instead of the default int8 codes.
    #[arg(long)]
    f32: bool,
    /// Passes over all test queries per ef; qps is their median.
    #[arg(long, default_value_t = 3)]
    passes: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args.dataset.clone();
    let meta = AnnMeta::read(&dir)?;
    let (name, n, n_test, dim, metric) = (meta.name, meta.n, meta.n_test, meta.dim, meta.metric);
    let gt_k = meta_usize(&meta.json, "k")?;
    if args.k > gt_k || args.k < 10 {
        bail!("--k must be between 10 and {gt_k}");
    }
    if args.passes == 0 {
        bail!("--passes must be at least 1");
    }

    let train = read_le4(&dir.join("train.f32"), n * dim, f32::from_le_bytes)?;
    let test = read_le4(&dir.join("test.f32"), n_test * dim, f32::from_le_bytes)?;
    let gt = read_le4(&dir.join("gt.i32"), n_test * gt_k, i32::from_le_bytes)?;
    let truth: Vec<HashSet<u64>> = gt
        .chunks_exact(gt_k)
        .map(|row| row[..10].iter().map(|&i| i as u64).collect())
        .collect();

    // The build searches for neighbours on rayon's pool: one thread per core.
    let build_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "[engram] building {name} n={n} dim={dim} M={} efC={} threads={build_threads}",
        args.m, args.ef_construction
    );
    let params = IndexParams {
        m: args.m,
        ef_construction: args.ef_construction,
        quantization: if args.f32 {
            Quantization::None
        } else {
            Quantization::Int8
        },
    };
    let index = VectorIndex::new(dim, metric, params, n);
    let items: Vec<(u64, &[f32])> = train
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    let t0 = Instant::now();
    index.insert_batch(&items);
    let build_s = t0.elapsed().as_secs_f64();
    if index.len() != n {
        bail!("index holds {} vectors, expected {n}", index.len());
    }
    drop(items);

    for &ef in &args.ef {
        let mut times = Vec::with_capacity(args.passes);
        let mut results: Vec<Vec<(u64, f32)>> = Vec::with_capacity(n_test);
        for _ in 0..args.passes {
            results.clear();
            let t = Instant::now();
            for q in test.chunks_exact(dim) {
                results.push(index.search(q, args.k, ef));
            }
            times.push(t.elapsed().as_secs_f64());
        }
        let hits: usize = results
            .iter()
            .zip(&truth)
            .map(|(res, want)| {
                res.iter()
                    .take(10)
                    .filter(|(id, _)| want.contains(id))
                    .count()
            })
            .sum();
        let secs = median(times);
        let recall = hits as f64 / (10 * n_test) as f64;
        let row = json!({
            "engine": if args.f32 { "engram-f32" } else { "engram" },
            "dataset": name,
            "m": args.m,
            "ef_construction": args.ef_construction,
            "ef": ef,
            "k": args.k,
            "recall@10": (recall * 1e4).round() / 1e4,
            "qps": (n_test as f64 / secs * 10.0).round() / 10.0,
            "build_s": (build_s * 100.0).round() / 100.0,
            "build_threads": build_threads,
            "quantization": if args.f32 { "none" } else { "int8" },
            "bytes_per_vector": (index.bytes_per_vector() * 10.0).round() / 10.0,
            "search_threads": 1,
            "n": n,
            "n_test": n_test,
        });
        println!("{row}");
    }
    Ok(())
}
