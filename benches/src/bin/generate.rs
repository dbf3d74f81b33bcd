//! Language-model speed: prefill time of an N-token prompt and greedy decode tokens/s,
//! Engram's SmolLM2 on candle. Prints one JSON line per pass, of the same shape as
//! `peers/llm_peer.py` (llama-cpp-python on the same GGUF file), so `run_generate.sh`
//! can put them side by side; `--ids-out` writes the prompt's token ids so the peer
//! runs exactly the same tokens.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use candle_core::DType;
use clap::Parser;
use engram_generator::{GgufChatModel, KvCache, LanguageModel, LoadOptions};
use engram_models::ModelId;

#[derive(Parser)]
struct Args {
    /// JSONL with a "text" field per line: the prompt is its texts joined, cut to
    /// exactly --prompt-tokens tokens.
    #[arg(long, default_value = "tests/data/quoref_300.jsonl")]
    data: PathBuf,
    #[arg(long, default_value_t = 1024)]
    prompt_tokens: usize,
    /// Tokens generated (greedy, stop tokens ignored) after the prompt.
    #[arg(long, default_value_t = 128)]
    decode: usize,
    /// Timed passes (each with a fresh KV cache); the driver reports medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Weights for decoding: q8_0 (default), q4_0, f32, or stored (the file's Q4_1).
    #[arg(long, default_value = "q8_0")]
    weights: String,
    /// Dense copies for prompt processing: f32 (default), f16, or none.
    #[arg(long, default_value = "f32")]
    dense: String,
    /// Do not pad Q8_0 matrices for the AVX-512 VNNI kernel (see Llama::with_vnni_padding).
    #[arg(long)]
    no_vnni_padding: bool,
    /// Write the prompt's token ids here (JSON array) for the peer.
    #[arg(long)]
    ids_out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let weights = match args.weights.as_str() {
        "q8_0" => Some(GgmlDType::Q8_0),
        "q4_0" => Some(GgmlDType::Q4_0),
        "f32" => Some(GgmlDType::F32),
        "stored" => None,
        other => anyhow::bail!("--weights {other}: use q8_0, q4_0, f32 or stored"),
    };
    let dense_prefill = match args.dense.as_str() {
        "f32" => Some(DType::F32),
        "f16" => Some(DType::F16),
        "none" => None,
        other => anyhow::bail!("--dense {other}: use f32, f16 or none"),
    };
    let dir = engram_models::ensure(ModelId::SmolLm2_135mInstruct)?;
    let file = dir.join(
        ModelId::SmolLm2_135mInstruct
            .spec()
            .file_names()
            .next()
            .unwrap_or_default(),
    );
    let load = Instant::now();
    let model = GgufChatModel::load(
        &file,
        LoadOptions {
            weights,
            dense_prefill,
            vnni_padding: !args.no_vnni_padding,
        },
    )?;
    let load_s = load.elapsed().as_secs_f64();

    let prompt = prompt_ids(&model, &args)?;
    if let Some(path) = &args.ids_out {
        std::fs::write(path, serde_json::to_string(&prompt)?)?;
    }
    let llama = model.llama();
    let threads = std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "default".into());
    for pass in 0..args.repeat {
        let mut cache = KvCache::new(llama.config(), prompt.len() + args.decode + 1);
        let t = Instant::now();
        let mut logits = llama.forward(&prompt, &mut cache, None)?;
        let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        for _ in 0..args.decode {
            let next = logits.argmax(0)?.to_scalar::<u32>()?;
            logits = llama.forward(&[next], &mut cache, None)?;
        }
        let decode_s = t.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "engine": "engram-candle",
                "weights": model.info().weights,
                "threads": threads,
                "vnni_padding": !args.no_vnni_padding,
                "pass": pass,
                "prompt_tokens": prompt.len(),
                "prefill_ms": prefill_ms,
                "decode_tokens": args.decode,
                "decode_tokens_per_s": args.decode as f64 / decode_s,
                "load_s": load_s,
            })
        );
    }
    Ok(())
}

/// The texts of `args.data` joined with blank lines, tokenized, cut to the length asked.
fn prompt_ids(model: &GgufChatModel, args: &Args) -> anyhow::Result<Vec<u32>> {
    let data = std::fs::read_to_string(&args.data).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (run from the repository root)",
            args.data.display()
        )
    })?;
    let mut ids = Vec::new();
    for line in data.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let text = format!("{}\n\n", v["text"].as_str().unwrap_or_default());
        ids.extend(model.tokenizer().encode(&text)?);
        if ids.len() >= args.prompt_tokens {
            ids.truncate(args.prompt_tokens);
            return Ok(ids);
        }
    }
    anyhow::bail!(
        "{} has fewer than {} tokens",
        args.data.display(),
        args.prompt_tokens
    )
}
