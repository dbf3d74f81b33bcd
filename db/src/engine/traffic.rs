//! Training questions from traffic: the logged questions (`engram_store::questions`)
//! whose best-ranked document is among a promotion's documents become its training
//! questions, and a seeded share of them its gate questions.
//!
//! Why: a collection has no gold answers, and templated synthetic questions let an
//! adapter that answers everything the same way pass a gate of the same template.
//! Real questions are phrased as users phrase them. Their answers are the base
//! model's own rag answers (greedy, with the passages of the documents the question
//! retrieved when it was asked): the adapter learns to answer closed-book what rag
//! answers, and the gate measures agreement with rag on questions it never trained
//! on. No gold answer is needed anywhere. With distillation (the default when such
//! questions exist) the training questions go to the trainer with their passages
//! instead (`distill_questions`), and [`serving_prompt`] builds both the teacher's
//! (rag) and the student's (closed-book) prompt.

use std::collections::HashSet;

use engram_generator::{ChatMessage, GenerationOptions, GenerationRequest};
use engram_store::collection::DocumentRecord;
use engram_store::questions::LoggedQuestion;
use engram_trainer::distill::DistillQuestion;
use engram_trainer::synth::Document;
use engram_trainer::{HeldOutQuestion, QaPair};
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::answer::{prompt, DEFAULT_K, PASSAGE_BYTES};
use crate::error::{Error, Result};

/// Logged questions one promotion takes at most: each costs one generation to answer.
pub const MAX_LOGGED: usize = 200;
/// The share of them held out for the gate.
pub const HELD_OUT_SHARE: f64 = 0.2;
/// Tokens of a rag answer used as a training target.
const ANSWER_TOKENS: usize = 48;

/// Logged questions a promotion takes: to train on, and to gate on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoggedPicks {
    pub train: Vec<Picked>,
    pub held_out: Vec<Picked>,
}

impl LoggedPicks {
    pub fn len(&self) -> usize {
        self.train.len() + self.held_out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A logged question picked for a promotion, with the promoted documents it retrieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Picked {
    pub question: String,
    pub ids: Vec<String>,
}

/// The questions a promotion of `documents` learns from: those whose best-ranked
/// document is one of them, each distinct question once (case and spacing ignored,
/// the newest kept), at most [`MAX_LOGGED`], in a seeded order; the first
/// [`HELD_OUT_SHARE`] of them (at least one when there are two or more) are held
/// out. `logged` is newest first.
pub fn pick(
    logged: &[LoggedQuestion],
    documents: &HashSet<&str>,
    seed: u64,
) -> (Vec<Picked>, Vec<Picked>) {
    let mut seen = HashSet::new();
    let mut picked: Vec<Picked> = Vec::new();
    for q in logged {
        let Some(best) = q.ids.first() else { continue };
        let key = q
            .question
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if !documents.contains(best.as_str()) || key.is_empty() || !seen.insert(key) {
            continue;
        }
        picked.push(Picked {
            question: q.question.clone(),
            ids: q
                .ids
                .iter()
                .filter(|id| documents.contains(id.as_str()))
                .take(DEFAULT_K)
                .cloned()
                .collect(),
        });
        if picked.len() == MAX_LOGGED {
            break;
        }
    }
    picked.sort_by_key(|p| engram_trainer::synth::hash_str(&format!("{seed}\0{}", p.question)));
    let held = if picked.len() >= 2 {
        ((picked.len() as f64 * HELD_OUT_SHARE).round() as usize).max(1)
    } else {
        0
    };
    let train = picked.split_off(held);
    (train, picked)
}

impl Engine {
    /// The logged questions of `name` whose best document is among `documents`
    /// (`logged_questions` of a promotion request); none is a 400.
    pub(super) fn logged_picks(
        &self,
        name: &str,
        documents: &[Document],
        seed: u64,
    ) -> Result<LoggedPicks> {
        let ids: HashSet<&str> = documents.iter().map(|d| d.id.as_str()).collect();
        let (train, held_out) = pick(&self.store().questions(name)?, &ids, seed);
        if train.is_empty() && held_out.is_empty() {
            return Err(Error::invalid(
                "logged_questions",
                format!("no logged question of collection '{name}' retrieved the promoted documents first; ask about them (rag answers and text queries are logged), or drop logged_questions"),
            ));
        }
        Ok(LoggedPicks { train, held_out })
    }

    /// The picks answered by rag: training pairs, and gate questions whose accepted
    /// answer is the rag answer.
    pub(super) fn answer_logged(
        &self,
        collection: &str,
        picks: &LoggedPicks,
    ) -> Result<(Vec<QaPair>, Vec<HeldOutQuestion>)> {
        if picks.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let pairs = self.rag_answers(collection, &picks.train)?;
        Ok((
            pairs
                .into_iter()
                .map(|(q, answer)| QaPair {
                    question: q.question,
                    answer,
                })
                .collect(),
            self.rag_gate(collection, &picks.held_out)?,
        ))
    }

    /// The passages of the documents a picked question retrieved (their current text;
    /// gone documents skipped).
    fn picked_passages(&self, collection: &str, p: &Picked) -> Result<Vec<String>> {
        let mut texts = Vec::new();
        for id in &p.ids {
            let rec: Option<DocumentRecord> = self.store().document_record(collection, id)?;
            texts.extend(rec.and_then(|r| r.text));
        }
        Ok(texts)
    }

    /// The picks as distillation questions: each with the passages the teacher reads
    /// (those it retrieved when asked); questions whose documents are gone are dropped.
    pub(super) fn distill_questions(
        &self,
        collection: &str,
        picked: &[Picked],
    ) -> Result<Vec<DistillQuestion>> {
        let mut out = Vec::new();
        for p in picked {
            let passages = self.picked_passages(collection, p)?;
            if !passages.is_empty() {
                out.push(DistillQuestion {
                    question: p.question.clone(),
                    passages,
                });
            }
        }
        Ok(out)
    }

    /// The picks as gate questions whose accepted answer is the base model's rag
    /// answer, with the facts it took from its passages (what the gate's "as good as
    /// rag" check asks the adapter to repeat).
    pub(super) fn rag_gate(
        &self,
        collection: &str,
        picked: &[Picked],
    ) -> Result<Vec<HeldOutQuestion>> {
        Ok(self
            .rag_answers(collection, picked)?
            .into_iter()
            .map(|(q, answer)| HeldOutQuestion {
                facts: engram_metrics::facts::fact_words(&answer, &q.question, &q.passages),
                question: q.question,
                answers: vec![answer],
            })
            .collect())
    }

    /// The base model's rag answer to each picked question, from the passages of the
    /// documents it retrieved (their current text); questions whose documents are gone
    /// or whose answer is empty are dropped.
    fn rag_answers(
        &self,
        collection: &str,
        picked: &[Picked],
    ) -> Result<Vec<(DistillQuestion, String)>> {
        let model = self.language_model()?;
        let options = GenerationOptions {
            max_tokens: ANSWER_TOKENS,
            ..GenerationOptions::default()
        };
        let mut out = Vec::new();
        for q in self.distill_questions(collection, picked)? {
            let messages = serving_prompt(&q.question, &q.passages);
            let request = GenerationRequest {
                messages: &messages,
                options: &options,
                adapter: None,
                interrupt: None,
            };
            let answer = model.complete(&request)?.text.trim().to_string();
            if !answer.is_empty() {
                out.push((q, answer));
            }
        }
        Ok(out)
    }
}

/// The answer endpoint's prompt for `question`: with passages (each cut to the rag
/// window) the rag prompt, the distillation teacher's; with none the closed-book
/// (weights-mode) prompt, the student's.
pub fn serving_prompt(question: &str, passages: &[String]) -> Vec<ChatMessage> {
    let passages: Vec<_> = passages
        .iter()
        .map(|t| prompt::Passage {
            text: prompt::window(t, 0, 0, PASSAGE_BYTES),
        })
        .collect();
    prompt::grounded(&[ChatMessage::user(question.trim())], &passages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, ids: &[&str]) -> LoggedQuestion {
        LoggedQuestion {
            question: text.into(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
            at: 0,
        }
    }

    #[test]
    fn questions_about_the_promoted_documents_split_by_seed() {
        let docs: HashSet<&str> = ["a", "b"].into_iter().collect();
        let mut logged = vec![
            q("Who founded A?", &["a", "x", "b"]),
            q("who  founded a?", &["a"]),
            q("about x", &["x", "a"]),
            q("nothing retrieved", &[]),
        ];
        for i in 0..9 {
            logged.push(q(&format!("question {i} about b"), &["b"]));
        }
        let (train, held) = pick(&logged, &docs, 7);
        assert_eq!(train.len() + held.len(), 10, "deduplicated, only a and b");
        assert_eq!(held.len(), 2, "a fifth held out");
        let all: Vec<&Picked> = train.iter().chain(&held).collect();
        assert!(all.iter().all(|p| p.question != "about x"));
        let founded = all.iter().find(|p| p.question.contains("ounded")).unwrap();
        assert_eq!(
            founded.question, "Who founded A?",
            "the newest of the duplicates"
        );
        assert_eq!(
            founded.ids,
            ["a", "b"],
            "only promoted documents as passages"
        );
        assert!(held.iter().all(|h| !train.contains(h)));
        assert_eq!(
            pick(&logged, &docs, 7),
            (train.clone(), held.clone()),
            "seeded"
        );
        let (_, other) = pick(&logged, &docs, 8);
        assert_ne!(other, held, "another seed holds out others");
        let (train, held) = pick(&logged[..1], &docs, 7);
        assert_eq!((train.len(), held.len()), (1, 0), "one question trains");
    }
}
