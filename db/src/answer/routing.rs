//! Which mode an `auto` answer uses, and why (the response's `mode_reason`).
//!
//! Why here: `auto` promises the cheapest mode that is right. An active adapter
//! answers with no context, but only for knowledge it learned and that has not
//! changed since (see `crate::engine::staleness`): the question is retrieved for
//! first, and a retrieved document written after the promotion, or any learned
//! document deleted since, sends the question to rag. The retrieval also logs the
//! question with its documents, which later promotions learn from.

use super::Grounding;
use crate::api_types::{AdapterRef, AnswerMode, AnswerSource};
use crate::engine::{staleness, Engine};
use crate::error::Result;

/// The mode an answer runs in, why (auto only), and the passages when deciding
/// needed them.
pub(super) struct Route {
    pub mode: AnswerMode,
    pub reason: Option<String>,
    pub sources: Option<Vec<AnswerSource>>,
}

impl Engine {
    /// Resolves `auto` for a question given the collection's active adapter; any
    /// other mode is kept as asked.
    pub(super) fn route(
        &self,
        g: &Grounding,
        question: &str,
        adapter: Option<&AdapterRef>,
    ) -> Result<Route> {
        if g.mode != AnswerMode::Auto {
            return Ok(Route {
                mode: g.mode,
                reason: None,
                sources: None,
            });
        }
        let Some(adapter) = adapter else {
            return Ok(Route {
                mode: AnswerMode::Rag,
                reason: Some("answered by rag: the collection has no active adapter".into()),
                sources: None,
            });
        };
        let name = &g.collection;
        let sources = self.retrieve_passages(g, question)?;
        let learned = self
            .adapters()
            .map(|a| super::AdapterSource::learned(a.as_ref(), name, adapter.version))
            .unwrap_or_default();
        let retrieved: Vec<&str> = sources.iter().map(|s| s.id.as_str()).collect();
        let coll = self.store().collection(name)?;
        let exists = |id: &str| coll.with_documents(|docs| docs.contains_key(id));
        let reason = staleness::rag_reason(adapter.version, &learned, &retrieved, exists, |id| {
            self.document_seq(name, id)
        })?;
        Ok(match reason {
            Some(why) => Route {
                mode: AnswerMode::Rag,
                reason: Some(why),
                sources: Some(sources),
            },
            None => Route {
                mode: AnswerMode::Weights,
                reason: Some(format!(
                    "answered by the active adapter (version {}): {}",
                    adapter.version,
                    if learned.is_empty() {
                        "its promotion recorded no document versions, so staleness is unknown"
                    } else {
                        "none of the documents it learned was deleted, and none this question retrieved changed since"
                    }
                )),
                sources: Some(sources),
            },
        })
    }
}
