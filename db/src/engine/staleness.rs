//! Stale knowledge: which documents an adapter learned have been written or deleted
//! since its promotion read them.
//!
//! Why: an adapter is a snapshot of documents at promotion time. A document updated
//! afterwards (a price, a date, a name) is answered from weights with the old value,
//! and a deleted one is still known to the weights. The promotion records each
//! learned document's write sequence in the adapter's manifest
//! (`Manifest::document_seqs`); a document whose current sequence differs, or that is
//! gone, is stale. Nothing is written on the write path: staleness is derived from
//! the records whenever it is asked for, so it cannot drift from them. It drives
//! `auto` answers (rag for a question that retrieved a changed document, and for every
//! question once a learned document was deleted) and is shown in the adapter listing
//! and the collection's info.

use std::collections::BTreeMap;

use engram_store::collection::DocumentRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Engine;
use crate::error::Result;

/// Stale document ids a listing shows at most.
const SHOWN_IDS: usize = 20;

/// How current one adapter version's knowledge is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Staleness {
    /// Documents whose write sequence the promotion recorded.
    pub learned_documents: usize,
    /// Of those, how many were written again or deleted since.
    pub stale_documents: usize,
    /// The first of them (at most 20), in id order.
    pub stale_ids: Vec<String>,
}

/// Why one document is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Written again (its sequence moved on).
    Written,
    /// Deleted.
    Deleted,
}

/// The learned documents that changed, in id order: `current` gives a document's
/// write sequence now (None: deleted).
pub fn changed(
    learned: &BTreeMap<String, u64>,
    mut current: impl FnMut(&str) -> Result<Option<u64>>,
) -> Result<Vec<(String, Change)>> {
    let mut out = Vec::new();
    for (id, &seq) in learned {
        match current(id)? {
            None => out.push((id.clone(), Change::Deleted)),
            Some(now) if now != seq => out.push((id.clone(), Change::Written)),
            Some(_) => {}
        }
    }
    Ok(out)
}

/// The summary of [`changed`]'s result for `learned` documents.
pub fn summarise(learned: usize, changed: &[(String, Change)]) -> Staleness {
    Staleness {
        learned_documents: learned,
        stale_documents: changed.len(),
        stale_ids: changed
            .iter()
            .take(SHOWN_IDS)
            .map(|(id, _)| id.clone())
            .collect(),
    }
}

/// Why an `auto` answer must not come from an adapter that learned `learned`, given
/// the documents the question retrieved (best first): any learned document deleted
/// (the weights still hold it, whatever was retrieved), or a retrieved one written
/// since. `exists` answers from memory (every learned document is checked on every
/// answer); `current` reads a document's write sequence (only retrieved ones).
/// None: the adapter's knowledge of them is current.
pub fn rag_reason(
    version: u32,
    learned: &BTreeMap<String, u64>,
    retrieved: &[&str],
    exists: impl Fn(&str) -> bool,
    mut current: impl FnMut(&str) -> Result<Option<u64>>,
) -> Result<Option<String>> {
    let deleted: Vec<&str> = learned
        .keys()
        .map(String::as_str)
        .filter(|id| !exists(id))
        .collect();
    if !deleted.is_empty() {
        return Ok(Some(format!(
            "answered by rag: the active adapter (version {version}) learned {} document(s) deleted since its promotion ({}); promote again to retrain without them",
            deleted.len(),
            shown(&deleted)
        )));
    }
    let mut written = Vec::new();
    for id in retrieved {
        if let Some(&seq) = learned.get(*id) {
            if current(id)?.is_some_and(|now| now != seq) {
                written.push(*id);
            }
        }
    }
    if written.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "answered by rag: this question retrieved document(s) changed since the active adapter (version {version}) learned them ({}); promote again to retrain on the new text",
        shown(&written)
    )))
}

fn shown(ids: &[&str]) -> String {
    let mut s = ids.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if ids.len() > 5 {
        s.push_str(&format!(" and {} more", ids.len() - 5));
    }
    s
}

impl Engine {
    /// A document's write sequence now (None: not there).
    pub(crate) fn document_seq(&self, collection: &str, id: &str) -> Result<Option<u64>> {
        let rec: Option<DocumentRecord> = self.store().document_record(collection, id)?;
        Ok(rec.map(|r| r.seq))
    }

    /// How current the knowledge of an adapter that learned `learned` is (None when
    /// its promotion recorded no sequences: made before they were kept).
    pub fn staleness(
        &self,
        collection: &str,
        learned: &BTreeMap<String, u64>,
    ) -> Result<Option<Staleness>> {
        if learned.is_empty() {
            return Ok(None);
        }
        let changed = changed(learned, |id| self.document_seq(collection, id))?;
        Ok(Some(summarise(learned.len(), &changed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned() -> BTreeMap<String, u64> {
        [("a", 3), ("b", 3), ("c", 5)]
            .into_iter()
            .map(|(id, s)| (id.to_string(), s))
            .collect()
    }

    #[test]
    fn a_rewrite_or_a_delete_makes_a_document_stale() {
        let now = |id: &str| -> Result<Option<u64>> {
            Ok(match id {
                "a" => Some(3),
                "b" => Some(9),
                _ => None,
            })
        };
        let got = changed(&learned(), now).unwrap();
        assert_eq!(
            got,
            [
                ("b".to_string(), Change::Written),
                ("c".into(), Change::Deleted)
            ]
        );
        let s = summarise(3, &got);
        assert_eq!((s.learned_documents, s.stale_documents), (3, 2));
        assert_eq!(s.stale_ids, ["b", "c"]);
        let unchanged = changed(&learned(), |id| Ok(learned().get(id).copied())).unwrap();
        assert!(unchanged.is_empty());
    }

    #[test]
    fn auto_routes_by_the_retrieved_documents_and_by_any_delete() {
        let all = |_: &str| true;
        let rewritten_b = |id: &str| Ok(Some(if id == "b" { 9 } else { learned()[id] }));
        let r = rag_reason(2, &learned(), &["a", "x"], all, rewritten_b).unwrap();
        assert_eq!(
            r, None,
            "the question did not retrieve the changed document"
        );
        let r = rag_reason(2, &learned(), &["x", "b"], all, rewritten_b).unwrap();
        let r = r.expect("a retrieved document changed");
        assert!(r.contains("version 2") && r.contains("(b)"), "{r}");

        let no_c = |id: &str| id != "c";
        let unchanged = |id: &str| Ok(learned().get(id).copied());
        let r = rag_reason(2, &learned(), &["a"], no_c, unchanged).unwrap();
        assert!(r.unwrap().contains("deleted since its promotion (c)"));
        let r = rag_reason(2, &BTreeMap::new(), &["a"], no_c, unchanged).unwrap();
        assert_eq!(
            r, None,
            "an adapter without recorded sequences is not judged"
        );
    }
}
