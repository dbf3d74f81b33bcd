//! Training throughput of our LoRA training on SmolLM2 (CPU), for the side-by-side with
//! torch + peft in benches/train_peer.py (benches/run_train.sh runs both).
//!
//! Builds training sequences (ChatML cloze pairs over the first Quoref passages, loss on
//! the answers), writes them to `<out>/sequences.json` so the peer trains on the very
//! same tokens, trains `steps` steps and prints tokens/s (all positions, forward and
//! backward) and the loss curve.
//!
//! cargo run --release -p engram-trainer --example train_bench -- OUT_DIR [STEPS] [ACCUM] [RANK]

use std::ops::ControlFlow;
use std::path::PathBuf;

use engram_trainer::synth::{cloze_questions, Content};
use engram_trainer::{train, LoraConfig, QaPair, TrainConfig, TrainableModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(
        args.get(1)
            .ok_or("usage: train_bench OUT_DIR [STEPS] [ACCUM] [RANK]")?,
    );
    let steps: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let accum: usize = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let rank: usize = args.get(4).map_or(Ok(16), |s| s.parse())?;
    std::fs::create_dir_all(&out)?;
    let model = TrainableModel::load_default()?;
    // The full extract when there is one, else the committed first 300 passages: the
    // bench reads 8, and the extract's source package is no longer served.
    let data = std::env::var("QUOREF").unwrap_or_else(|_| {
        let full = format!(
            "{}/.cache/engram/data/quoref.jsonl",
            std::env::var("HOME").unwrap_or_default()
        );
        if std::path::Path::new(&full).is_file() {
            full
        } else {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/data/quoref_300.jsonl"
            )
            .to_string()
        }
    });
    let text = std::fs::read_to_string(&data).map_err(|e| format!("{data}: {e}"))?;
    let mut seqs = Vec::new();
    for line in text.lines().take(8) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let passage = v["text"].as_str().unwrap_or_default();
        for c in cloze_questions(passage, 4, 0) {
            if let Content::Qa { question, answer } = c {
                if let Some(s) = model.encode_pair(&QaPair { question, answer }, 256)? {
                    seqs.push(s);
                }
            }
        }
    }
    let dump: Vec<serde_json::Value> = seqs
        .iter()
        .map(|s| serde_json::json!({"tokens": s.tokens, "loss_from": s.loss_from}))
        .collect();
    std::fs::write(out.join("sequences.json"), serde_json::to_vec(&dump)?)?;
    let cfg = TrainConfig {
        lora: LoraConfig {
            rank,
            alpha: 2.0 * rank as f64,
            dropout: 0.0,
            ..Default::default()
        },
        learning_rate: 1e-3,
        warmup_steps: 2,
        steps,
        grad_accum: accum,
        replay_ratio: 0.0,
        checkpoint_every: 0,
        seed: 0,
        ..Default::default()
    };
    let mean_len = seqs.iter().map(|s| s.tokens.len()).sum::<usize>() as f64 / seqs.len() as f64;
    println!("{} sequences, mean {:.1} tokens; {steps} steps x {accum} sequences, rank {rank}, all 7 targets", seqs.len(), mean_len);
    let outcome = train(model.llama(), &seqs, &[], &cfg, None, &mut |p| {
        println!(
            "step {:>3}/{} loss {:.4} {:.1} tokens/s",
            p.step, p.total_steps, p.loss, p.tokens_per_s
        );
        ControlFlow::Continue(())
    })?;
    outcome.write_loss_curve(&out)?;
    let line = serde_json::json!({
        "impl": "engram (candle)", "tokens": outcome.tokens, "seconds": outcome.elapsed_s,
        "tokens_per_s": outcome.tokens_per_s,
        "first_loss": outcome.losses.first().map(|l| l.loss), "last_loss": outcome.losses.last().map(|l| l.loss),
    });
    println!("{line}");
    std::fs::write(out.join("engram.json"), line.to_string())?;
    Ok(())
}
