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
use engram_metrics::{facts, qa};
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
    /// With a rag answer as the accepted one: the facts it took from its passages
    /// (`engram_metrics::facts`), which a closed-book answer should repeat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
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
    /// Mean share of the rag answer's facts a reply repeats, over the questions that
    /// carry facts (None: none does, e.g. gold-answer gates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact_recall: Option<f64>,
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
    let mut recalls = Vec::new();
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
        recalls.extend(facts::fact_recall(&reply.text, &q.facts));
        replies.push(reply.text);
    }
    let n = questions.len() as f64;
    Ok(Accuracy {
        n: questions.len(),
        exact_match: em / n,
        f1: f1 / n,
        contains: contains / n,
        same_answer: same_answer_share(&replies),
        fact_recall: (!recalls.is_empty())
            .then(|| recalls.iter().sum::<f64>() / recalls.len() as f64),
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
    /// Least share of the rag answers' facts the adapter's closed-book answers must
    /// repeat (gates whose questions carry facts): below it the adapter would answer
    /// `auto` questions worse than rag does, so it is not activated.
    pub min_fact_recall: f64,
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
            min_fact_recall: 0.8,
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
    let recall = tuned.accuracy.fact_recall;
    let facts_ok = recall.is_none_or(|r| r >= cfg.min_fact_recall);
    let mut checks = vec![
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
    if let Some(r) = recall {
        checks.push(format!(
            "{} as good as rag: closed-book answers repeat {:.0}% of the facts rag answered with (base model {:.0}%, at least {:.0}%)",
            if facts_ok { "ok" } else { "FAIL" },
            100.0 * r,
            100.0 * base.accuracy.fact_recall.unwrap_or(0.0),
            100.0 * cfg.min_fact_recall
        ));
    }
    let passed = ppl_ok && acc_ok && varied_ok && facts_ok;
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
    if let Some(r) = recall.filter(|_| !facts_ok) {
        why.push(format!(
            "its closed-book answers repeat only {:.0}% of the facts rag answers the same questions with (at least {:.0}%), so `auto` would answer worse than rag: log more questions about these documents, add self-study questions or train longer",
            100.0 * r,
            100.0 * cfg.min_fact_recall
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
    use crate::testing::{tiny_model, tiny_replay, Scripted};

    fn report(f1: f64, ppl: f64) -> EvalReport {
        EvalReport {
            accuracy: Accuracy {
                n: 10,
                exact_match: f1 / 2.0,
                f1,
                contains: f1,
                same_answer: 0.2,
                fact_recall: None,
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
    fn an_adapter_far_from_rag_facts_is_not_activated() {
        let cfg = GateConfig::default();
        let with_recall = |r: f64| {
            let mut t = report(0.5, 10.0);
            t.accuracy.fact_recall = Some(r);
            t
        };
        let mut base = report(0.3, 10.0);
        base.accuracy.fact_recall = Some(0.05);
        // The fictional-base run: F1 against the teacher up, facts far from rag's.
        let d = decide(&base, &with_recall(0.2), &cfg);
        assert!(!d.passed && !d.activate, "{d:?}");
        assert!(d.message.contains("worse than rag") && d.message.contains("20%"));
        assert!(d
            .checks
            .iter()
            .any(|c| c.starts_with("FAIL as good as rag") && c.contains("base model 5%")));
        assert!(decide(&base, &with_recall(0.85), &cfg).passed);
        // Gold-answer gates carry no facts: the check does not apply.
        assert!(decide(&base, &report(0.5, 10.0), &cfg).passed);
    }

    #[test]
    fn fact_recall_is_averaged_over_questions_with_facts() {
        let model = Scripted::new("It was founded by Feskie Kaezoun in 1972.");
        let q = |facts: &[&str]| HeldOutQuestion {
            question: "Who founded Mobryl Works?".into(),
            answers: vec!["Feskie Kaezoun".into()],
            facts: facts.iter().map(|f| f.to_string()).collect(),
        };
        let gold = closed_book_accuracy(&model, None, &[q(&[])], 8).unwrap();
        assert_eq!((gold.fact_recall, gold.contains), (None, 1.0));
        let facts = [q(&["feskie", "kaezoun", "1974"]), q(&["1974"]), q(&[])];
        let acc = closed_book_accuracy(&model, None, &facts, 8).unwrap();
        // (2/3 + 0/1) / 2: the question with no facts does not count.
        assert!(
            (acc.fact_recall.unwrap() - 1.0 / 3.0).abs() < 1e-12,
            "{acc:?}"
        );
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
