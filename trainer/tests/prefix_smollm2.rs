//! Prefix adapters on the real SmolLM2-135M: a prefix initialised from a passage's KV
//! cache answers from it closed-book; a prefix initialised from other text and trained
//! by a few KL steps towards the teacher (the model reading the passage) gets closer;
//! saved in PEFT's prefix-tuning format, registered, activated and served by the
//! quantized serving model like a LoRA adapter.

use std::ops::ControlFlow;

use engram_generator::adapters::peft;
use engram_generator::{
    AdapterKind, AdapterRegistry, ChatMessage, GenerationOptions, GenerationRequest, GgufChatModel,
    KvPrefix, LanguageModel, LoraAdapter,
};
use engram_trainer::distill::{self, DistillConfig, DistillQuestion};
use engram_trainer::train::sequence_loss;
use engram_trainer::{train, PrefixConfig, QaPair, TrainConfig, TrainableModel};

const PASSAGE: &str =
    "Quillfeather Robotics was founded in 2019 in Tromsø by Ingrid Salvesen, a marine engineer.";
const QUESTION: &str = "In which city was Quillfeather Robotics founded?";

/// The test's prompt builder (the database passes its answer endpoint's): the passages
/// as context before the question for the teacher, the question alone for the student.
fn prompt(question: &str, passages: &[String]) -> Vec<ChatMessage> {
    let context: String = passages
        .iter()
        .map(|p| format!("Context:\n{p}\n\n"))
        .collect();
    let ask = if passages.is_empty() {
        question.to_string()
    } else {
        format!("Question: {question}\nAnswer in a few words.")
    };
    vec![ChatMessage::user(format!("{context}{ask}"))]
}

fn ask(chat: &GgufChatModel, adapter: Option<&LoraAdapter>) -> String {
    let messages = [ChatMessage::user(QUESTION)];
    let options = GenerationOptions {
        max_tokens: 24,
        ..Default::default()
    };
    chat.complete(&GenerationRequest {
        messages: &messages,
        options: &options,
        adapter,
        interrupt: None,
    })
    .unwrap()
    .text
}

#[test]
fn a_prefix_reads_the_passage_trains_towards_the_teacher_and_serves_from_the_registry() {
    let trainable = TrainableModel::load_default().expect("SmolLM2 loads for training");
    let chat = GgufChatModel::load_default().expect("SmolLM2 loads");
    let tokenizer = chat.tokenizer();
    let cfg = chat.llama().config().clone();

    // 1. The passage's own KV cache as a prefix makes the passage's answer likelier
    // closed-book (greedy decoding of the 135M model does not yet say it: training does
    // the rest).
    let ids = tokenizer.encode(&format!("{PASSAGE}\n\n")).unwrap();
    let read = LoraAdapter::prefix_only(
        "read",
        &cfg,
        KvPrefix::from_tokens(chat.llama(), &ids).unwrap(),
    )
    .unwrap();
    let pair = QaPair {
        question: QUESTION.into(),
        answer: "It was founded in Tromsø.".into(),
    };
    let seq = trainable.encode_pair(&pair, 256).unwrap().unwrap();
    let nll = |a: Option<&LoraAdapter>| -> f32 {
        sequence_loss(trainable.llama(), &seq, a)
            .unwrap()
            .0
            .to_scalar()
            .unwrap()
    };
    let (closed_nll, read_nll) = (nll(None), nll(Some(&read)));
    assert!(
        read_nll < closed_nll - 0.2,
        "answer loss closed-book {closed_nll}, with the passage's prefix {read_nll}"
    );
    let closed = ask(&chat, None);
    let with_prefix = ask(&chat, Some(&read));

    // 2. Training: teacher = the passage in the prompt; the prefix starts as the KV of
    // unrelated text and only it is trained.
    let (seqs, _) = distill::build_examples(
        distill::Teacher {
            trainable: &trainable,
            chat: &chat,
            prompt: &prompt,
        },
        &[DistillQuestion {
            question: QUESTION.into(),
            passages: vec![PASSAGE.into()],
        }],
        &DistillConfig {
            temperature: 0.0,
            max_answer_tokens: 16,
            ..Default::default()
        },
        0,
        256,
        &mut |_, _| {},
    )
    .unwrap();
    let other = tokenizer
        .encode("The weather in spring is usually mild, with some rain in the afternoons and cool nights.")
        .unwrap();
    let tcfg = TrainConfig {
        prefix: Some(PrefixConfig {
            tokens: 16,
            init: other,
        }),
        learning_rate: 1e-2,
        warmup_steps: 1,
        steps: 8,
        grad_accum: 1,
        replay_ratio: 0.0,
        ..Default::default()
    };
    let out = train(trainable.llama(), &seqs, &[], &tcfg, None, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let start = engram_trainer::lora::AdapterVars::init_prefix(
        trainable.llama(),
        &tcfg.lora,
        tcfg.prefix.as_ref().unwrap(),
    )
    .unwrap()
    .adapter("start")
    .unwrap();
    let adapter = out.adapter("trained").unwrap();
    assert_eq!(
        (adapter.kind(), adapter.prefix_len()),
        (AdapterKind::Prefix, 16)
    );
    let kl = |a: &LoraAdapter| -> f32 {
        sequence_loss(trainable.llama(), &seqs[0], Some(a))
            .unwrap()
            .0
            .to_scalar()
            .unwrap()
    };
    let (before, after) = (kl(&start), kl(&adapter));
    assert!(
        before > 0.1 && after < 0.5 * before,
        "KL {before} -> {after}"
    );

    // 3. PEFT files, the registry, hot activation, served by the quantized model.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("adapter");
    peft::save(&adapter, 0.0, "SmolLM2", &dir).unwrap();
    let bytes = std::fs::metadata(dir.join(peft::WEIGHTS_FILE))
        .unwrap()
        .len();
    assert!(bytes as usize >= 16 * cfg.n_layer * 2 * cfg.n_kv_head * cfg.head_dim * 4);
    let registry = AdapterRegistry::open(&tmp.path().join("reg"), &cfg).unwrap();
    let version = registry.register("docs", &dir).unwrap();
    assert_eq!(version.kind, Some(AdapterKind::Prefix));
    registry.activate("docs", version.version).unwrap();
    let served = registry.active("docs").unwrap().unwrap();
    assert_eq!(served.prefix_len(), 16);
    let answer = ask(&chat, Some(served.as_ref()));
    let direct = ask(&chat, Some(&adapter));
    assert_eq!(
        answer, direct,
        "the stored prefix serves like the trained one"
    );
    println!(
        "answer loss closed-book {closed_nll:.3}, with the passage's prefix {read_nll:.3}\nclosed book: {closed}\nread prefix: {with_prefix}\ntrained prefix (KL {before:.3} -> {after:.3}): {answer}"
    );
}
