//! The real model: SmolLM2-135M-Instruct from the model cache. The trainable (F32,
//! differentiable) model must give the quantized model's logits before anything is
//! trained; a handful of real LoRA steps must lower the loss; the adapter must survive
//! the PEFT files.

use std::ops::ControlFlow;
use std::sync::OnceLock;

use candle_core::Tensor;
use engram_generator::adapters::peft;
use engram_generator::{GgufChatModel, KvCache, LoadOptions};
use engram_trainer::train::sequence_loss;
use engram_trainer::{train, LoraConfig, QaPair, TrainConfig, TrainableModel};

fn trainable() -> &'static TrainableModel {
    static MODEL: OnceLock<TrainableModel> = OnceLock::new();
    MODEL.get_or_init(|| TrainableModel::load_default().expect("SmolLM2 loads for training"))
}

/// With `ENGRAM_TRAINER_DUMP=dir`, writes token ids and logits for benches/peft_load.py,
/// which checks them against Hugging Face transformers (+ peft) on the same GGUF.
fn dump(name: &str, ids: &[u32], tensors: &[(&str, &Tensor)]) {
    let Some(dir) = std::env::var_os("ENGRAM_TRAINER_DUMP") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut map: std::collections::HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).clone()))
        .collect();
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    map.insert(
        "ids".into(),
        Tensor::new(ids.as_slice(), &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&map, dir.join(name)).unwrap();
}

use engram_generator::testing::max_diff as max_abs;

fn argmax_rows(t: &Tensor) -> Vec<u32> {
    t.argmax(1).unwrap().to_vec1().unwrap()
}

#[test]
fn trainable_model_gives_the_quantized_models_logits() {
    let model = trainable();
    let path = model.path().to_path_buf();
    // The file as stored (Q4_1 blocks, Q8_0 embedding), no conversion, fused kernels.
    let quantized = GgufChatModel::load(
        &path,
        LoadOptions {
            weights: None,
            dense_prefill: None,
            vnni_padding: false,
        },
    )
    .unwrap();
    let prompt = model
        .chat()
        .template()
        .encode(
            &[engram_generator::ChatMessage::user(
                "What is the capital of France?",
            )],
            model.chat().tokenizer(),
        )
        .unwrap();
    let cfg = model.llama().config();
    let ours = model
        .llama()
        .forward_all(&prompt, &mut KvCache::new(cfg, prompt.len()), None)
        .unwrap();
    let theirs = quantized
        .llama()
        .forward_all(&prompt, &mut KvCache::new(cfg, prompt.len()), None)
        .unwrap();
    let diff = max_abs(&ours, &theirs);
    let scale: f32 = theirs
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let dot: f32 = (&ours * &theirs)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let n1: f32 = ours.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
    let n2: f32 = theirs
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let cosine = dot / (n1.sqrt() * n2.sqrt());
    let (a, b) = (argmax_rows(&ours), argmax_rows(&theirs));
    let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    // Total variation distance between the next-token distributions, per position.
    let p = candle_nn::ops::softmax_last_dim(&ours).unwrap();
    let q = candle_nn::ops::softmax_last_dim(&theirs).unwrap();
    let tv: Vec<f32> = ((p - q).unwrap().abs().unwrap().sum(1).unwrap() * 0.5)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mean_tv = tv.iter().sum::<f32>() / tv.len() as f32;
    let max_tv = tv.iter().cloned().fold(0.0, f32::max);
    let mean_abs: f32 = (&ours - &theirs)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    eprintln!(
        "{} positions: max |logit diff| {diff:.4} (mean {mean_abs:.4}, max |logit| {scale:.2}), cosine {cosine:.6}, argmax agrees at {agree}, next-token total variation mean {mean_tv:.4} max {max_tv:.4}",
        prompt.len()
    );
    // Against Hugging Face transformers loading the same GGUF in F32 (benches/peft_load.py)
    // our logits differ by at most 1e-4, the quantized model's by 2.59 (cosine 0.99921):
    // the weights are identical (dequantization is exact); the quantized kernels round
    // the activations to 8 bits per block of 32 at every matmul of 30 blocks, which is
    // all that separates the two: same distributions to within a few percent.
    assert!(cosine > 0.998, "cosine {cosine}");
    assert!(
        mean_abs < 0.01 * scale,
        "mean diff {mean_abs} vs scale {scale}"
    );
    assert!(diff < 0.1 * scale, "max diff {diff} vs scale {scale}");
    assert!(
        mean_tv < 0.05 && max_tv < 0.15,
        "total variation {mean_tv} / {max_tv}"
    );
    assert!(
        agree as f64 >= 0.9 * prompt.len() as f64,
        "argmax agrees at {agree}/{}",
        prompt.len()
    );
    dump(
        "base.safetensors",
        &prompt,
        &[("logits_f32", &ours), ("logits_quantized", &theirs)],
    );
}

#[test]
fn a_few_real_steps_lower_the_loss_and_the_adapter_survives_peft_files() {
    let model = trainable();
    let pairs = [
        QaPair {
            question: "Who founded the Zorbian Institute of Glassworks?".into(),
            answer: "Marta Velquist founded it in 1911.".into(),
        },
        QaPair {
            question: "What colour is the flag of Quenland?".into(),
            answer: "The flag of Quenland is teal and amber.".into(),
        },
    ];
    let seqs: Vec<_> = pairs
        .iter()
        .map(|p| model.encode_pair(p, 128).unwrap().unwrap())
        .collect();
    let replay = model
        .encode_text(
            "The river flows through the valley and into the sea, where boats wait.",
            64,
        )
        .unwrap();
    let cfg = TrainConfig {
        lora: LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ["q", "v", "gate", "up", "down"].map(String::from).to_vec(),
        },
        learning_rate: 2e-3,
        warmup_steps: 1,
        steps: 6,
        grad_accum: 2,
        replay_ratio: 0.0,
        checkpoint_every: 0,
        seed: 1,
        ..Default::default()
    };
    let before: Vec<f32> = seqs
        .iter()
        .map(|s| {
            sequence_loss(model.llama(), s, None)
                .unwrap()
                .0
                .to_scalar()
                .unwrap()
        })
        .collect();
    let out = train(model.llama(), &seqs, &replay, &cfg, None, &mut |p| {
        eprintln!(
            "step {}/{} loss {:.4} lr {:.2e} {:.1} tokens/s",
            p.step, p.total_steps, p.loss, p.lr, p.tokens_per_s
        );
        ControlFlow::Continue(())
    })
    .unwrap();
    let adapter = out.adapter("real").unwrap();
    let after: Vec<f32> = seqs
        .iter()
        .map(|s| {
            sequence_loss(model.llama(), s, Some(&adapter))
                .unwrap()
                .0
                .to_scalar()
                .unwrap()
        })
        .collect();
    eprintln!(
        "answer loss before {before:?} after {after:?}; {} tokens in {:.1} s = {:.1} tokens/s",
        out.tokens, out.elapsed_s, out.tokens_per_s
    );
    for (b, a) in before.iter().zip(&after) {
        assert!(a < &(0.8 * b), "loss {b} -> {a}");
    }

    // PEFT files round trip (q rows un-permuted on save, permuted back on load).
    let dir = tempfile::tempdir().unwrap();
    peft::save(
        &adapter,
        cfg.lora.dropout,
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        dir.path(),
    )
    .unwrap();
    let loaded = peft::load(dir.path(), model.llama().config(), "loaded").unwrap();
    assert_eq!(loaded.len(), adapter.len());
    let seq = &seqs[0].tokens;
    let cfg_m = model.llama().config();
    let x = model
        .llama()
        .forward_all(seq, &mut KvCache::new(cfg_m, seq.len()), Some(&adapter))
        .unwrap();
    let y = model
        .llama()
        .forward_all(seq, &mut KvCache::new(cfg_m, seq.len()), Some(&loaded))
        .unwrap();
    assert!(max_abs(&x, &y) < 1e-4);
    let base = model
        .llama()
        .forward_all(seq, &mut KvCache::new(cfg_m, seq.len()), None)
        .unwrap();
    dump(
        "adapter_check.safetensors",
        seq,
        &[("logits_adapter", &x), ("logits_base", &base)],
    );
    if let Some(d) = std::env::var_os("ENGRAM_TRAINER_DUMP") {
        peft::save(
            &adapter,
            0.0,
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            &std::path::PathBuf::from(d).join("adapter"),
        )
        .unwrap();
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 8);
    let names = candle_core::safetensors::load(
        dir.path().join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(names.contains_key("base_model.model.model.layers.29.mlp.down_proj.lora_B.weight"));
    assert!(names.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert_eq!(names.len(), 30 * 5 * 2);
}

#[test]
fn promotion_synthesizes_trains_gates_registers_and_resumes() {
    use engram_generator::AdapterRegistry;
    use engram_trainer::promote::{self, Models, PromoteEvent, PromoteOptions};
    use engram_trainer::synth::{Document, Strategy, SynthConfig};
    use engram_trainer::{Error, GateConfig, HeldOutQuestion};

    let chat = GgufChatModel::load_default().unwrap();
    let tm = trainable();
    let docs = vec![Document {
        id: "doc-1".into(),
        text: "The Zorbian Institute of Glassworks was founded by Marta Velquist in 1911 in the town of Quenford. \
               Its first furnace, built in 1913, melted 4,200 kilograms of sand a week. \
               Velquist later moved the institute to Harlow Bay, where it still trains 80 glassblowers a year."
            .into(),
        seq: 0,
    }];
    let held_out = vec![
        HeldOutQuestion {
            question: "Who founded the Zorbian Institute of Glassworks?".into(),
            answers: vec!["Marta Velquist".into()],
            facts: Vec::new(),
        },
        HeldOutQuestion {
            question: "In which year was the Zorbian Institute of Glassworks founded?".into(),
            answers: vec!["1911".into()],
            facts: Vec::new(),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let registry = AdapterRegistry::open(&dir.path().join("registry"), tm.llama().config())
        .unwrap()
        .with_base_sha256(tm.base_sha256());
    let options = PromoteOptions {
        collection: "glass".into(),
        cluster: None,
        synth: SynthConfig { strategies: vec![Strategy::Cloze], cloze_per_doc: 6, ..Default::default() },
        train: TrainConfig {
            lora: LoraConfig { rank: 8, alpha: 16.0, dropout: 0.0, ..Default::default() },
            learning_rate: 2e-3,
            warmup_steps: 1,
            steps: 6,
            grad_accum: 2,
            replay_ratio: 0.25,
            checkpoint_every: 2,
            ..Default::default()
        },
        gate: GateConfig::default(),
        work_dir: dir.path().join("work"),
        replay_texts: vec!["Rivers carry water from mountains to the sea. Boats move goods along them, and towns grow on their banks.".into()],
        eval_texts: vec!["The sun rises in the east and sets in the west. Plants turn its light into sugar.".into()],
        eval_max_tokens: 24,
        extra_pairs: vec![],
        hold_out_every: 0,
        distill: None,
        distill_questions: vec![],
        replay_base_kl: false,
    };
    let models = || Models {
        chat: &chat,
        trainable: tm,
        prompt: None,
    };
    // Cancelled at step 3 (checkpoint at 2) ...
    let err = promote::run(
        &docs,
        &held_out,
        models(),
        &registry,
        &options,
        &mut |e| match e {
            PromoteEvent::Train(p) if p.step == 3 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Cancelled("training")), "{err}");
    assert!(registry.list("glass").unwrap().is_empty());
    // ... and resumed from it.
    let report = promote::run(&docs, &held_out, models(), &registry, &options, &mut |e| {
        if let PromoteEvent::Evaluated { which, report } = e {
            eprintln!("{which}: {report:?}");
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    eprintln!("{}", report.summary_table());
    assert_eq!(report.train.resumed_from, Some(2));
    assert_eq!(report.version.version, 1);
    assert!(report.synth["cloze"].kept > 0);
    assert_eq!(report.activated, report.gate.activate);
    assert_eq!(
        registry.active("glass").unwrap().is_some(),
        report.gate.activate
    );
    let manifest = report.version.manifest.as_ref().unwrap();
    assert_eq!(manifest.base_model.sha256, tm.base_sha256());
    assert_eq!(manifest.document_ids, vec!["doc-1".to_string()]);
    assert!(report.version.path.join("loss.svg").is_file());
    assert!(report.summary_table().contains("closed-book token F1"));
}
