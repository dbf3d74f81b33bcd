//! Continued training (`"continue": true`, `engram promote NAME --continue`): retrain
//! the collection's active adapter on the documents written since it learned them,
//! starting from its weights, instead of a new adapter from scratch.
//!
//! Why: an update to a learned document makes the adapter stale for it (`auto` then
//! answers those questions by rag, see `staleness.rs`). A continued promotion trains
//! only the changed documents (by the same method a promotion would choose: logged
//! questions distilled when there are enough, else pairs), replays the adapter's
//! unchanged documents and general text, and records the old version's documents with
//! the retrained ones' new sequences, so the new version is current for them. A
//! deleted document cannot be trained out of an adapter: it stays recorded, stale,
//! and `auto` keeps answering by rag until a promotion without `continue`.
//! The gate and the forgetting check are the usual ones; the new version is
//! activated only when the gate passes.

use std::collections::BTreeMap;

use engram_generator::{AdapterKind, AdapterVersion};
use engram_trainer::continuation::Continuation;
use engram_trainer::synth::Document;
use engram_trainer::{LoraConfig, PrefixConfig, TrainConfig};

use super::promote_request::{adapter_kind, PromoteRequest};
use super::staleness::{changed, Change};
use super::Engine;
use crate::error::{Error, Result};

/// Unchanged learned documents replayed at most (beside the general text).
const MAX_KEPT_REPLAY: usize = 40;

/// Where a continued promotion starts: the active version's adapter shape and records,
/// and the ids of the learned documents written since.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Start {
    pub kind: AdapterKind,
    pub lora: LoraConfig,
    pub prefix: Option<PrefixConfig>,
    pub continuation: Continuation,
    /// Learned documents written since, in id order.
    pub written: Vec<String>,
}

/// A continued promotion's inputs.
pub(super) struct ContinuePlan {
    pub start: Start,
    /// The documents to retrain, with their current text and sequence.
    pub documents: Vec<Document>,
    /// Text of learned documents that did not change, replayed so the adapter keeps
    /// them (at most [`MAX_KEPT_REPLAY`]).
    pub kept_texts: Vec<String>,
}

fn refuse(message: String) -> Error {
    Error::invalid("continue", message)
}

/// Where continued training of `collection` starts, from its `active` version and the
/// learned documents' current sequences (`current`, None: deleted); a 400 for every
/// request it cannot serve (options that pick documents, no active adapter, no
/// records, another kind or shape, nothing written since).
pub(super) fn start_from(
    collection: &str,
    active: Option<&AdapterVersion>,
    req: &PromoteRequest,
    current: impl FnMut(&str) -> Result<Option<u64>>,
) -> Result<Start> {
    if req.all || req.cluster.is_some() || req.max_documents.is_some() {
        return Err(refuse("continue retrains the documents changed since the active adapter learned them: drop all, cluster and max_documents".into()));
    }
    let active = active.ok_or_else(|| {
        refuse(format!(
            "collection '{collection}' has no active adapter to continue from: promote it first (without continue)"
        ))
    })?;
    let v = active.version;
    let manifest = active
        .manifest
        .as_ref()
        .filter(|m| !m.document_seqs.is_empty())
        .ok_or_else(|| refuse(format!("the active adapter (version {v}) recorded no document write sequences (made before they were kept), so what changed since is unknown: promote without continue")))?;
    let old: TrainConfig = serde_json::from_value(manifest.train.clone()).map_err(|e| {
        refuse(format!(
            "cannot read the training configuration of the active adapter (version {v}): {e}; promote without continue"
        ))
    })?;
    let active_kind = active.kind.unwrap_or(AdapterKind::Lora);
    let kind = adapter_kind(req, active_kind)?;
    if kind != active_kind {
        return Err(Error::invalid("adapter", format!(
            "the active adapter (version {v}) is a {} adapter and continued training keeps its kind: drop \"adapter\", or promote a {} adapter without continue",
            active_kind.name(), kind.name()
        )));
    }
    let same_alpha = |a: f64| (a - old.lora.alpha).abs() < 1e-9;
    let shape_mismatch = [
        ("rank", req.rank.is_some_and(|r| r != old.lora.rank)),
        ("alpha", req.alpha.is_some_and(|a| !same_alpha(a))),
        (
            "prefix_tokens",
            req.prefix_tokens
                .is_some_and(|t| old.prefix.as_ref().map(|p| p.tokens) != Some(t)),
        ),
    ];
    if let Some((what, _)) = shape_mismatch.into_iter().find(|(_, bad)| *bad) {
        return Err(Error::invalid(what, format!(
            "continued training keeps the active adapter's shape (version {v}: rank {}, alpha {}{}): drop \"{what}\", or promote without continue",
            old.lora.rank,
            old.lora.alpha,
            old.prefix.as_ref().map(|p| format!(", {} prefix positions", p.tokens)).unwrap_or_default()
        )));
    }
    let changes = changed(&manifest.document_seqs, current)?;
    let ids = |which: Change| -> Vec<String> {
        let of = changes.iter().filter(|(_, c)| *c == which);
        of.map(|(id, _)| id.clone()).collect()
    };
    let (written, deleted) = (ids(Change::Written), ids(Change::Deleted));
    if written.is_empty() && deleted.is_empty() {
        return Err(refuse(format!(
            "nothing changed since the active adapter (version {v}) learned its {} document(s): nothing to retrain",
            manifest.document_seqs.len()
        )));
    }
    if written.is_empty() {
        return Err(refuse(format!(
            "since the active adapter (version {v}) learned them, {} document(s) were deleted ({}) and none written: training cannot remove knowledge from an adapter; promote without continue to train one without them",
            deleted.len(),
            deleted.join(", ")
        )));
    }
    Ok(Start {
        kind,
        lora: old.lora,
        // Continued from the stored prefix: no init tokens.
        prefix: old.prefix.map(|p| PrefixConfig {
            tokens: p.tokens,
            init: Vec::new(),
        }),
        continuation: Continuation {
            version: v,
            dir: active.path.clone(),
            document_ids: manifest.document_ids.clone(),
            document_seqs: manifest.document_seqs.clone(),
            deleted,
        },
        written,
    })
}

impl Engine {
    /// The continued promotion `req` asks for on `name` (see the module comment).
    pub(super) fn plan_continuation(
        &self,
        name: &str,
        req: &PromoteRequest,
    ) -> Result<ContinuePlan> {
        let active = match self.registry_of(name)? {
            Some(registry) => registry.list(name)?.into_iter().find(|v| v.active),
            None => None,
        };
        let start = start_from(name, active.as_ref(), req, |id| self.document_seq(name, id))?;
        let mut documents = Vec::new();
        for id in &start.written {
            documents.extend(self.learnable(name, id)?);
        }
        if documents.is_empty() {
            return Err(refuse(format!(
                "the documents changed since version {} ({}) have no text to learn from",
                start.continuation.version,
                start.written.join(", ")
            )));
        }
        let learned: &BTreeMap<String, u64> = &start.continuation.document_seqs;
        let mut kept_texts = Vec::new();
        for id in learned.keys().filter(|id| !start.written.contains(id)) {
            if kept_texts.len() == MAX_KEPT_REPLAY {
                break;
            }
            kept_texts.extend(self.learnable(name, id)?.map(|d| d.text));
        }
        Ok(ContinuePlan {
            start,
            documents,
            kept_texts,
        })
    }
}

#[cfg(test)]
#[path = "promote_continue_tests.rs"]
mod tests;
