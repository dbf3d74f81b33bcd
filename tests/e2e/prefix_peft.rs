//! Prefix adapters in PEFT's prefix-tuning format, checked against Python `peft` on the
//! real SmolLM2-135M (pinned torch, transformers, peft and gguf in a venv the test makes
//! under `~/.cache/engram/peft-check`, once; several GB, like the peers' venv).
//!
//! Engram exports a prefix made from a passage's KV cache (so it is far from zero and
//! moves the logits a lot); `tests/e2e/python/peft_prefix_check.py` loads the GGUF with
//! transformers (dequantized to F32), the files with `PeftModel.from_pretrained`, and
//! computes the prompt's logits and greedy continuation with the prefix; they must
//! match Engram's own F32 computation (the trainer's dequantized model) with the same
//! prefix. Then the reverse: a prefix written by `peft`'s `save_pretrained` loads in
//! Engram and gives transformers + peft's logits.
//!
//! Tolerance: both sides run the same dequantized F32 weights; what differs is only
//! the order of floating-point sums (matmul blocking, softmax, the rotary tables), which
//! without any adapter already gives a max |diff| of about 1e-4 over 49,152 logits
//! (`benches/peft_load.py`). 1e-2 is two orders above that and three below what a
//! layout error costs: a wrong rotary half-order, swapped key/value slots or a wrong
//! head grouping changes the prefix's attention in every block, and the prefix here
//! moves the logits by more than 1 (asserted, so the check cannot pass vacuously).

use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use engram_generator::adapters::peft;
use engram_generator::{ChatMessage, KvCache, KvPrefix, Llama, LoraAdapter};
use engram_trainer::TrainableModel;
use serde_json::Value;

/// What the check was written and measured against.
const PINS: &[&str] = &[
    "torch==2.15.0",
    "transformers==5.25.0",
    "peft==0.21.2",
    "gguf==0.19.0",
    "safetensors==0.8.0",
    "numpy==2.4.6",
];
const TOLERANCE: f64 = 1e-2;
const PASSAGE: &str =
    "Quillfeather Robotics was founded in 2019 in Tromsø by Ingrid Salvesen, a marine engineer.";
const SECOND: &str =
    "The Ostrava glassworks shipped 4,200 lamps to Lisbon in 1911, mostly by rail.";
const QUESTION: &str = "In which city was Quillfeather Robotics founded?";
const GREEDY_TOKENS: usize = 12;

fn logits(llama: &Llama, prompt: &[u32], adapter: Option<&LoraAdapter>) -> Tensor {
    let mut cache = KvCache::new(llama.config(), prompt.len());
    llama.forward_all(prompt, &mut cache, adapter).unwrap()
}

fn greedy(llama: &Llama, prompt: &[u32], adapter: &LoraAdapter) -> Vec<u32> {
    let mut cache = KvCache::new(llama.config(), prompt.len() + GREEDY_TOKENS);
    let mut next = llama.forward(prompt, &mut cache, Some(adapter)).unwrap();
    let mut out = Vec::new();
    for _ in 0..GREEDY_TOKENS {
        let token: u32 = next.argmax(0).unwrap().to_scalar().unwrap();
        out.push(token);
        next = llama.forward(&[token], &mut cache, Some(adapter)).unwrap();
    }
    out
}

fn ids(tokens: &[u32]) -> Tensor {
    let v: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::new(v.as_slice(), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    engram_generator::testing::max_diff(a, b) as f64
}

#[test]
#[ignore = "installs torch with its CUDA wheels (~3 GB download, 5.6 GB venv) on first run: not yet sized for CI; run with --ignored (passed 2026-12-06, README)"]
fn engram_prefix_adapters_load_in_peft_and_peft_prefixes_load_in_engram() {
    let python =
        crate::support::python_venv("peft-check", PINS, "import torch, transformers, peft, gguf")
            .join("bin/python");
    let model = TrainableModel::load_default().expect("SmolLM2 loads for training (F32)");
    let (llama, cfg) = (model.llama(), model.llama().config().clone());
    let tokenizer = model.chat().tokenizer();
    let passage = tokenizer.encode(&format!("{PASSAGE}\n\n")).unwrap();
    let second = tokenizer.encode(&format!("{SECOND}\n\n")).unwrap();
    let prompt = model
        .chat()
        .template()
        .encode(&[ChatMessage::user(QUESTION)], tokenizer)
        .unwrap();

    // Engram's export: the F32 model's KV cache of the passage, through the registry's
    // writer (which dispatches on the adapter's kind).
    let prefix = KvPrefix::from_tokens(llama, &passage).unwrap();
    let adapter = LoraAdapter::prefix_only("passage", &cfg, prefix).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path();
    peft::save(
        &adapter,
        0.0,
        "SmolLM2-135M-Instruct",
        &dump.join("engram_prefix"),
    )
    .unwrap();
    let with_prefix = logits(llama, &prompt, Some(&adapter));
    let ours_greedy = greedy(llama, &prompt, &adapter);
    let tensors = [
        ("passage", ids(&passage)),
        ("second", ids(&second)),
        ("prompt", ids(&prompt)),
        ("with_prefix", with_prefix),
        ("without", logits(llama, &prompt, None)),
        ("greedy", ids(&ours_greedy)),
    ];
    let map: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    candle_core::safetensors::save(&map, dump.join("engram.safetensors")).unwrap();

    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/python/peft_prefix_check.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(dump)
        .arg(model.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    eprintln!("peft check: {report:#}");

    let num = |path: &[&str]| -> f64 {
        path.iter()
            .fold(&report, |v, k| &v[*k])
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} in {report}"))
    };
    assert!(
        num(&["exported_vs_transformers_cache"]) < TOLERANCE,
        "the exported tensor is not transformers' cache of the same passage: {report}"
    );
    assert!(num(&["without_prefix", "max_diff"]) < TOLERANCE, "{report}");
    assert!(num(&["with_prefix", "max_diff"]) < TOLERANCE, "{report}");
    assert_eq!(num(&["with_prefix", "argmax_agreement"]), 1.0, "{report}");
    assert!(num(&["prefix_moves_logits_by"]) > 1.0, "{report}");
    assert_eq!(
        report["greedy_peft"], report["greedy_engram"],
        "greedy continuation with the prefix"
    );

    // The reverse: peft's own files, loaded by Engram's registry loader.
    let theirs =
        candle_core::safetensors::load(dump.join("peft.safetensors"), &Device::Cpu).unwrap();
    let loaded = peft::load(&dump.join("peft_prefix"), &cfg, "peft").unwrap();
    assert_eq!(loaded.prefix_len(), second.len());
    let ours = logits(llama, &prompt, Some(&loaded));
    let reverse = max_diff(&ours, &theirs["logits"]);
    let moved = max_diff(&ours, &map["without"]);
    eprintln!("peft-written prefix in Engram: max |diff| {reverse:.6} (it moves the logits by {moved:.3})");
    assert!(reverse < TOLERANCE && moved > 1.0, "{reverse} {moved}");
}
