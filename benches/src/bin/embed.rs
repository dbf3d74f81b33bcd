//! Embedding throughput of Engram's MiniLM (texts/s) on the first N Quoref
//! passages, truncated to 256 tokens like the peers. Prints one JSON line of the
//! same shape as `peers/embed_peers.py`, so `run_embed.sh` can put them side by side.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use engram_embedder::{MiniLm, TextEncoder};

#[derive(Parser)]
struct Args {
    /// JSONL with a "text" field per line (scripts/extract_quoref.py writes it).
    #[arg(long, default_value_os_t = default_data())]
    data: PathBuf,
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Timed passes; the median is reported.
    #[arg(long, default_value_t = 3)]
    passes: usize,
}

fn default_data() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/engram/data/quoref.jsonl")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = std::fs::File::open(&args.data).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; the full Quoref extract is no longer made on a fresh machine (see benches/README.md, \"Data\"): run through benches/run_embed.sh, which reads the committed tests/data/quoref_300.jsonl for --n 300 or fewer, or pass --data",
            args.data.display()
        )
    })?;
    let mut texts = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        texts.push(v["text"].as_str().unwrap_or_default().to_string());
        if texts.len() == args.n {
            break;
        }
    }
    let model = MiniLm::load_default()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed(&refs[..64.min(refs.len())])?; // warm-up
    let mut rates = Vec::new();
    for _ in 0..args.passes {
        let t = Instant::now();
        let v = model.embed(&refs)?;
        assert_eq!(v.len(), refs.len());
        rates.push(refs.len() as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{}",
        serde_json::json!({"engine": "engram-candle", "texts": refs.len(), "max_seq_length": 256,
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "texts_per_s": median, "passes": rates})
    );
    Ok(())
}
