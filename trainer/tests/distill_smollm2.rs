//! Context distillation on the real SmolLM2-135M: the teacher (the model with the
//! passage in its prompt) answers, its top-k logits are cached per answer position,
//! and a few KL steps move the closed-book student towards it.

use std::ops::ControlFlow;

use engram_generator::{ChatMessage, GgufChatModel};
use engram_trainer::data::Sequence;
use engram_trainer::distill::{self, DistillConfig, DistillCounts, DistillQuestion};
use engram_trainer::token_weights::TokenWeights;
use engram_trainer::train::sequence_loss;
use engram_trainer::{train, LoraConfig, TrainConfig, TrainableModel};

/// The test's prompts: the passage before the question (teacher), or the question
/// alone (student). The database passes its answer endpoint's own builder instead.
fn prompt(question: &str, passages: &[String]) -> Vec<ChatMessage> {
    if passages.is_empty() {
        return vec![ChatMessage::user(question)];
    }
    vec![ChatMessage::user(format!(
        "Context:\n{}\n\nQuestion: {question}\nAnswer in a few words.",
        passages.join("\n\n")
    ))]
}

/// The teacher's greedy answer (at most 16 tokens) to where Quillfeather Robotics was
/// founded, with the one passage that says so, distilled with `token_weights`.
fn founding_city_example(
    trainable: &TrainableModel,
    chat: &GgufChatModel,
    token_weights: TokenWeights,
) -> (Vec<Sequence>, DistillCounts) {
    let question = DistillQuestion {
        question: "In which city was Quillfeather Robotics founded?".into(),
        passages: vec![
            "Quillfeather Robotics was founded in 2019 in Tromsø by Ingrid Salvesen, a marine engineer.".into(),
        ],
    };
    let cfg = DistillConfig {
        temperature: 0.0,
        max_answer_tokens: 16,
        token_weights,
        ..Default::default()
    };
    let teacher = distill::Teacher {
        trainable,
        chat,
        prompt: &prompt,
    };
    distill::build_examples(teacher, &[question], &cfg, 0, 256, &mut |_, _| {}).unwrap()
}

#[test]
fn the_teacher_answers_from_the_passage_and_kl_steps_pull_the_student_to_it() {
    let trainable = TrainableModel::load_default().expect("SmolLM2 loads for training");
    let chat = GgufChatModel::load_default().expect("SmolLM2 loads");
    let (seqs, counts) = founding_city_example(&trainable, &chat, TokenWeights::Uniform);
    assert_eq!((seqs.len(), counts.examples), (1, 1));
    let seq = &seqs[0];
    let soft = seq.soft.as_ref().expect("kl keeps the teacher's top-k");
    assert_eq!(soft.k, 20);
    assert_eq!(soft.rows(), seq.tokens.len() - seq.loss_from);
    let answer = trainable
        .chat()
        .tokenizer()
        .decode(&seq.tokens[seq.loss_from..]);
    assert!(
        answer.contains("Troms"),
        "the teacher reads the passage: {answer}"
    );
    // Greedy teacher: its (F32) favourite at each position is mostly the token the
    // (quantized) serving model chose.
    let agree = (0..soft.rows())
        .filter(|&r| soft.ids[r * soft.k] == seq.tokens[seq.loss_from + r])
        .count();
    assert!(2 * agree >= soft.rows(), "{agree} of {} agree", soft.rows());

    let cfg = TrainConfig {
        lora: LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            ..Default::default()
        },
        learning_rate: 5e-3,
        warmup_steps: 1,
        steps: 6,
        grad_accum: 1,
        replay_ratio: 0.0,
        ..Default::default()
    };
    let (before, _) = sequence_loss(trainable.llama(), seq, None).unwrap();
    let out = train(trainable.llama(), &seqs, &[], &cfg, None, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let adapter = out.adapter("distilled").unwrap();
    let (after, _) = sequence_loss(trainable.llama(), seq, Some(&adapter)).unwrap();
    let (before, after) = (
        before.to_scalar::<f32>().unwrap(),
        after.to_scalar::<f32>().unwrap(),
    );
    assert!(
        before > 0.1 && after < 0.5 * before,
        "KL to the teacher {before} -> {after}"
    );
}

#[test]
fn context_gain_puts_the_most_weight_on_the_answer_token_the_passage_gave() {
    let trainable = TrainableModel::load_default().expect("SmolLM2 loads for training");
    let chat = GgufChatModel::load_default().expect("SmolLM2 loads");
    let (seqs, _) = founding_city_example(&trainable, &chat, TokenWeights::ContextGain);
    let seq = &seqs[0];
    let weights = seq.soft.as_ref().unwrap().row_weights.clone().unwrap();
    assert_eq!(weights.len(), seq.tokens.len() - seq.loss_from);
    let mean = weights.iter().sum::<f32>() / weights.len() as f32;
    assert!((mean - 1.0).abs() < 1e-4, "{weights:?}");
    // The heaviest token spells part of the city, which only the passage gives.
    let top = (0..weights.len())
        .max_by(|&a, &b| weights[a].total_cmp(&weights[b]))
        .unwrap();
    let tok = trainable.chat().tokenizer();
    let piece = tok.decode(&seq.tokens[seq.loss_from + top..seq.loss_from + top + 1]);
    let answer = tok.decode(&seq.tokens[seq.loss_from..]);
    assert!(
        !piece.trim().is_empty() && "Tromsø".contains(piece.trim()),
        "heaviest token {piece:?} (weight {}) in {answer:?}: {weights:?}",
        weights[top]
    );
}
