//! Start-up time of a store with and without its graph dump, on an ANN data set made
//! by `scripts/ann_data.py` (the train vectors as a bring-your-own-vector collection).
//!
//! The first run loads the data through `Store::upsert` (1,000 documents per batch)
//! into `--data-dir` and writes the dump (`Store::persist_graphs`, as a clean shutdown
//! does); later runs reuse it. Then, `--repeat` times each, alternating: `Store::open`
//! with the dump (the graph read, caught up and checked against RocksDB), and
//! `Store::open` with the dump removed (the graph rebuilt from RocksDB, as before dumps
//! existed; the dump that open writes in the background is waited for, untimed, and
//! serves the next run). Each open is timed to its return, the store's whole start-up
//! (documents, keyword index and graph). Prints one JSON line per open, then the
//! medians and their ratio.
//!
//! Run: benches/run_startup.sh, or
//!   cargo build --release --workspace
//!   $CARGO_TARGET_DIR/release/startup --dataset ~/.cache/engram/bench/glove-50-angular

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use engram_benches::{median, read_le4, AnnMeta};
use engram_store::api::{CreateCollection, DocumentInput};
use engram_store::graph_dump::{GraphDumps, Opened};
use engram_store::limits::Limits;
use engram_store::Store;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Store start-up time with and without the graph dump")]
struct Args {
    /// Folder made by scripts/ann_data.py (meta.json, train.f32).
    #[arg(long)]
    dataset: PathBuf,
    /// Where the store lives (made and loaded on the first run); default
    /// ~/.cache/engram/startup/<data set>.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Opens of each kind; the figures are their medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

const COLLECTION: &str = "bench";

fn open(dir: &std::path::Path) -> Result<(Store, f64)> {
    let t = Instant::now();
    let store = Store::open(dir, Limits::default())?;
    Ok((store, t.elapsed().as_secs_f64()))
}

/// Loads the train vectors into a new store in `dir` and writes its dump.
fn load(dir: &std::path::Path, meta: &AnnMeta, train: &[f32]) -> Result<()> {
    let (store, _) = open(dir)?;
    let req = CreateCollection {
        dimension: Some(meta.dim),
        distance: Some(meta.metric),
        durability: Some(engram_store::collection::Durability::Fast),
        ..Default::default()
    };
    store.create_collection(COLLECTION, req)?;
    let t = Instant::now();
    for (b, batch) in train.chunks(1000 * meta.dim).enumerate() {
        let docs = batch
            .chunks_exact(meta.dim)
            .enumerate()
            .map(|(i, v)| DocumentInput {
                id: Some(format!("{}", b * 1000 + i)),
                vector: Some(v.to_vec()),
                ..Default::default()
            })
            .collect();
        store.upsert(COLLECTION, docs)?;
    }
    store.persist_graphs();
    eprintln!(
        "[startup] loaded {} vectors in {:.1} s",
        meta.n,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let meta = AnnMeta::read(&args.dataset)?;
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
        PathBuf::from(home)
            .join(".cache/engram/startup")
            .join(&meta.name)
    });
    if !dir.exists() {
        let train = read_le4(
            &args.dataset.join("train.f32"),
            meta.n * meta.dim,
            f32::from_le_bytes,
        )?;
        load(&dir, &meta, &train)?;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..args.repeat {
        for dump in [true, false] {
            if !dump {
                std::fs::remove_file(GraphDumps::file_in(&dir, COLLECTION))?;
            }
            let (store, secs) = open(&dir)?;
            let opened = store.graph_dumps().opened(COLLECTION);
            let vectors = store.collection(COLLECTION)?.index().len();
            match (&opened, dump) {
                (Some(Opened::Dump { .. }), true) | (Some(Opened::Rebuilt(_)), false) => {}
                _ => bail!("open {round} (dump: {dump}) went {opened:?}"),
            }
            if vectors != meta.n {
                bail!("{vectors} vectors after the open, expected {}", meta.n);
            }
            store.wait_for_graph_dumps();
            println!(
                "{}",
                json!({"dataset": meta.name, "n": meta.n, "dim": meta.dim, "round": round,
                       "graph": if dump { "dump" } else { "rebuild" }, "open_s": (secs * 1000.0).round() / 1000.0,
                       "threads": threads})
            );
            if dump {
                with.push(secs);
            } else {
                without.push(secs);
            }
        }
    }
    let (w, r) = (median(with), median(without));
    println!(
        "{}",
        json!({"dataset": meta.name, "n": meta.n, "dim": meta.dim, "threads": threads,
               "median_open_with_dump_s": (w * 1000.0).round() / 1000.0,
               "median_open_rebuild_s": (r * 1000.0).round() / 1000.0,
               "speedup": (r / w * 10.0).round() / 10.0, "repeat": args.repeat})
    );
    Ok(())
}
