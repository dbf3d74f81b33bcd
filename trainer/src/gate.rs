//! The gate an adapter must pass before it answers questions: did it learn (closed-book
//! accuracy on held-out questions beats the base model), and did it forget (perplexity
//! on general text rises by no more than a threshold)?
//!
//! Accuracy is measured closed book: the question alone, no document, so only what the
//! weights know counts. Answers are compared with SQuAD's normalisation (lower case, no
//! punctuation, no articles): exact match, token F1, and whether the gold answer occurs
//! in the reply (chat models answer in sentences).

use engram_generator::{
    ChatMessage, GenerationOptions, GenerationRequest, LanguageModel, Llama, LoraAdapter,
};
use engram_metrics::qa;
use serde::{Deserialize, Serialize};

use crate::data::Sequence;
use crate::error::{Error, Result};
use crate::train::sequence_loss;

/// A question whose answer is in the learned documents, with its accepted answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOutQuestion {
    /// The question.
    pub question: String,
    /// Accepted answers (any one counts).
    pub answers: Vec<String>,
}

/// Closed-book accuracy over a question set.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Accuracy {
    /// Questions asked.
    pub n: usize,
    /// Fraction answered exactly (after normalisation).
    pub exact_match: f64,
    /// Mean best token F1.
    pub f1: f64,
    /// Fraction of replies that contain a gold answer.
    pub contains: f64,
    /// The largest share of questions given one and the same (normalised) reply: near
    /// 1 is a collapsed adapter that answers everything alike.
    #[serde(default)]
    pub same_answer: f64,
}

/// Scores one reply against the accepted answers: (exact, best F1, contains).
pub fn score(prediction: &str, answers: &[String]) -> (bool, f64, bool) {
    (
        qa::exact_match(prediction, answers) > 0.0,
        qa::token_f1(prediction, answers),
        qa::contains_answer(prediction, answers) > 0.0,
    )
}

/// Asks every question closed book (greedy, `max_tokens` at most) with `adapter` (None:
/// the base model) and scores the replies.
pub fn closed_book_accuracy(
    model: &dyn LanguageModel,
    adapter: Option<&LoraAdapter>,
    questions: &[HeldOutQuestion],
    max_tokens: usize,
) -> Result<Accuracy> {
    if questions.is_empty() {
        return Err(Error::NoData("no held-out questions to evaluate".into()));
    }
    let options = GenerationOptions {
        max_tokens,
        ..Default::default()
    };
    let (mut em, mut f1, mut contains) = (0.0, 0.0, 0.0);
    let mut replies = Vec::new();
    for q in questions {
        let messages = [ChatMessage::user(&q.question)];
        let reply = model.complete(&GenerationRequest {
            messages: &messages,
            options: &options,
            adapter,
            interrupt: None,
        })?;
        let (e, f, c) = score(&reply.text, &q.answers);
        em += e as u8 as f64;
        f1 += f;
        contains += c as u8 as f64;
        replies.push(reply.text);
    }
    let n = questions.len() as f64;
    Ok(Accuracy {
        n: questions.len(),
        exact_match: em / n,
        f1: f1 / n,
        contains: contains / n,
        same_answer: same_answer_share(&replies),
    })
}

/// The largest share of `replies` that are one and the same answer after SQuAD
/// normalisation (case, punctuation and articles ignored); 0 for none.
pub fn same_answer_share(replies: &[String]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for r in replies {
        *counts
            .entry(qa::answer_words(r).join(" "))
            .or_insert(0usize) += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    most as f64 / replies.len().max(1) as f64
}

/// Perplexity of `llama` (with `adapter`) on `texts`: `exp` of the mean negative
/// log-likelihood per target token. Rising perplexity on general text is forgetting.
pub fn perplexity(llama: &Llama, texts: &[Sequence], adapter: Option<&LoraAdapter>) -> Result<f64> {
    let (mut nll, mut tokens) = (0.0, 0usize);
    for seq in texts.iter().filter(|s| s.target_count() > 0) {
        let (loss, n) = sequence_loss(llama, seq, adapter)?;
        nll += loss.to_scalar::<f32>()? as f64 * n as f64;
        tokens += n;
    }
    if tokens == 0 {
        return Err(Error::NoData(
            "no general text to measure perplexity on".into(),
        ));
    }
    Ok((nll / tokens as f64).exp())
}

/// One model's measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Closed-book accuracy on the held-out questions.
    pub accuracy: Accuracy,
    /// Perplexity on general text.
    pub perplexity: f64,
}

/// The gate's thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Largest relative perplexity rise allowed (0.05: +5%).
    pub max_perplexity_increase: f64,
    /// Token F1 must beat the base by more than this (0: any improvement).
    pub min_f1_gain: f64,
    /// Largest share of distinct gate questions that may get one and the same reply
    /// (checked from [`MIN_COLLAPSE_QUESTIONS`] questions on): more is a collapsed
    /// adapter, refused however well its answers score.
    pub max_same_answer_share: f64,
    /// Activate even when the gate refuses (the refusal is still reported).
    pub force: bool,
}

/// Gate questions needed before the collapse check applies.
pub const MIN_COLLAPSE_QUESTIONS: usize = 4;

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            max_perplexity_increase: 0.05,
            min_f1_gain: 0.0,
            max_same_answer_share: 0.5,
            force: false,
        }
    }
}

/// The verdict on an adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    /// True when every check passed.
    pub passed: bool,
    /// True when the adapter may be activated (passed, or forced).
    pub activate: bool,
    /// True when activation was forced past a refusal.
    pub forced: bool,
    /// One line per check, passed or not.
    pub checks: Vec<String>,
    /// A sentence for people: what happened and what to do.
    pub message: String,
    /// Relative perplexity change (0.03: +3%).
    pub perplexity_change: f64,
    /// Token F1 change (absolute).
    pub f1_change: f64,
}

/// Compares the adapter (`tuned`) with the base.
pub fn decide(base: &EvalReport, tuned: &EvalReport, cfg: &GateConfig) -> GateDecision {
    let ppl_change = tuned.perplexity / base.perplexity - 1.0;
    let f1_change = tuned.accuracy.f1 - base.accuracy.f1;
    let ppl_ok = ppl_change.is_finite() && ppl_change <= cfg.max_perplexity_increase;
    let acc_ok = f1_change > cfg.min_f1_gain;
    let same = tuned.accuracy.same_answer;
    let varied_ok = tuned.accuracy.n < MIN_COLLAPSE_QUESTIONS || same <= cfg.max_same_answer_share;
    let checks = vec![
        format!(
            "{} forgetting: perplexity {:.3} -> {:.3} ({:+.1}%, limit {:+.1}%)",
            if ppl_ok { "ok" } else { "FAIL" },
            base.perplexity,
            tuned.perplexity,
            100.0 * ppl_change,
            100.0 * cfg.max_perplexity_increase
        ),
        format!(
            "{} learning: closed-book F1 {:.3} -> {:.3} (EM {:.3} -> {:.3}), must gain more than {:.3}",
            if acc_ok { "ok" } else { "FAIL" },
            base.accuracy.f1,
            tuned.accuracy.f1,
            base.accuracy.exact_match,
            tuned.accuracy.exact_match,
            cfg.min_f1_gain
        ),
        format!(
            "{} collapse: {:.0}% of the {} gate questions get the same reply (limit {:.0}%)",
            if varied_ok { "ok" } else { "FAIL" },
            100.0 * same,
            tuned.accuracy.n,
            100.0 * cfg.max_same_answer_share
        ),
    ];
    let passed = ppl_ok && acc_ok && varied_ok;
    let mut why = Vec::new();
    if !ppl_ok {
        why.push(format!(
            "it forgets general knowledge (perplexity {:+.1}%, limit {:+.1}%): train fewer steps, lower the learning rate or raise replay_ratio",
            100.0 * ppl_change,
            100.0 * cfg.max_perplexity_increase
        ));
    }
    if !acc_ok {
        why.push(format!(
            "it does not answer the held-out questions better than the base model (F1 {:.3} vs {:.3}): train longer or make more synthetic data",
            tuned.accuracy.f1, base.accuracy.f1
        ));
    }
    if !varied_ok {
        why.push(format!(
            "it collapsed: {:.0}% of the distinct gate questions get one and the same reply, so it learned an answer, not the documents: train on more varied questions (logged ones, distillation) or fewer steps",
            100.0 * same
        ));
    }
    let message = match (passed, cfg.force) {
        (true, _) => "the adapter passed the gate".to_string(),
        (false, false) => format!(
            "the adapter was refused: {}; pass force to activate it anyway",
            why.join("; ")
        ),
        (false, true) => format!(
            "the gate refused the adapter but it was activated because force was set: {}",
            why.join("; ")
        ),
    };
    GateDecision {
        passed,
        activate: passed || cfg.force,
        forced: !passed && cfg.force,
        checks,
        message,
        perplexity_change: ppl_change,
        f1_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{tiny_model, tiny_replay};

    fn report(f1: f64, ppl: f64) -> EvalReport {
        EvalReport {
            accuracy: Accuracy {
                n: 10,
                exact_match: f1 / 2.0,
                f1,
                contains: f1,
                same_answer: 0.2,
            },
            perplexity: ppl,
        }
    }

    #[test]
    fn answers_are_scored_like_squad() {
        let golds = vec!["Marta Velquist".to_string()];
        assert_eq!(score("marta velquist.", &golds), (true, 1.0, true));
        let (e, f, c) = score("It was Marta Velquist, in 1911.", &golds);
        // 6 tokens, 2 shared: precision 1/3, recall 1, F1 0.5.
        assert!(!e && c && (f - 0.5).abs() < 1e-9, "{f}");
        assert_eq!(score("nobody", &golds), (false, 0.0, false));
    }

    #[test]
    fn gate_refuses_forgetting_or_no_gain_unless_forced() {
        let cfg = GateConfig::default();
        let ok = decide(&report(0.2, 10.0), &report(0.5, 10.3), &cfg);
        assert!(ok.passed && ok.activate && !ok.forced, "{ok:?}");
        let forgets = decide(&report(0.2, 10.0), &report(0.5, 10.6), &cfg);
        assert!(!forgets.passed && !forgets.activate);
        assert!(
            forgets.message.contains("forgets") && forgets.message.contains("+6.0%"),
            "{}",
            forgets.message
        );
        let no_gain = decide(&report(0.2, 10.0), &report(0.2, 9.0), &cfg);
        assert!(!no_gain.passed && no_gain.message.contains("does not answer"));
        let forced = decide(
            &report(0.2, 10.0),
            &report(0.1, 20.0),
            &GateConfig { force: true, ..cfg },
        );
        assert!(!forced.passed && forced.activate && forced.forced);
        assert!(forced.message.contains("force"));
        assert!(
            !decide(
                &report(0.2, 10.0),
                &report(0.5, f64::NAN),
                &GateConfig::default()
            )
            .passed
        );
    }

    #[test]
    fn an_adapter_giving_most_questions_the_same_reply_is_refused_as_collapsed() {
        let replies: Vec<String> = [
            "Quillfeather Robotics.",
            "quillfeather robotics",
            "The Quillfeather Robotics!",
            "Ingrid Salvesen",
            "Quillfeather Robotics",
        ]
        .map(String::from)
        .to_vec();
        assert!((same_answer_share(&replies) - 0.8).abs() < 1e-9);
        let varied: Vec<String> = ["1911", "Oslo", "Ingrid", "the board", "Oslo."]
            .map(String::from)
            .to_vec();
        assert!((same_answer_share(&varied) - 0.4).abs() < 1e-9);
        assert_eq!(same_answer_share(&[]), 0.0);

        let cfg = GateConfig::default();
        // High agreement with the teacher does not save a collapsed adapter.
        let mut collapsed = report(0.6, 10.0);
        collapsed.accuracy.same_answer = same_answer_share(&replies);
        let d = decide(&report(0.1, 10.0), &collapsed, &cfg);
        assert!(!d.passed && !d.activate, "{d:?}");
        assert!(d.message.contains("collapsed") && d.message.contains("80%"));
        assert!(d.checks.iter().any(|c| c.starts_with("FAIL collapse")));
        let mut fine = report(0.6, 10.0);
        fine.accuracy.same_answer = same_answer_share(&varied);
        assert!(decide(&report(0.1, 10.0), &fine, &cfg).passed);
        // Too few gate questions to call a collapse.
        collapsed.accuracy.n = 3;
        assert!(decide(&report(0.1, 10.0), &collapsed, &cfg).passed);
    }

    #[test]
    fn perplexity_is_exp_of_the_mean_token_loss() {
        let model = tiny_model();
        let texts = tiny_replay();
        let ppl = perplexity(&model, &texts, None).unwrap();
        let (loss, _) = sequence_loss(&model, &texts[0], None).unwrap();
        let single = perplexity(&model, &texts[..1], None).unwrap();
        assert!((single.ln() - loss.to_scalar::<f32>().unwrap() as f64).abs() < 1e-4);
        assert!(ppl > 1.0 && ppl.is_finite());
        assert!(perplexity(&model, &[], None).is_err());
    }
}
