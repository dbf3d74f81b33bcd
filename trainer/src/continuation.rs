//! Continued training: a promotion that starts from an earlier adapter version (the
//! collection's active one) and trains only on the documents written since that
//! version learned them, instead of training a new adapter from scratch.
//!
//! Why: a fact changed after a promotion makes the adapter stale for its document
//! (the database then answers such questions by rag). Retraining everything costs a
//! whole promotion; retraining the changed documents from the adapter's own weights
//! costs a promotion of those documents only. The weights start from the stored
//! version ([`crate::TrainConfig::continue_from`], see `AdapterVars::for_training`); this
//! module carries what that version learned into the new version's manifest, so the
//! new one is stale only for what it did not retrain (deleted documents stay learned:
//! training cannot remove them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::synth::Document;

/// The version a promotion continues from and what it had learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    /// The version whose weights training starts from.
    pub version: u32,
    /// Its directory (PEFT files), read when training starts.
    pub dir: PathBuf,
    /// Its learned document ids, in its order.
    pub document_ids: Vec<String>,
    /// Its learned documents' write sequences.
    pub document_seqs: BTreeMap<String, u64>,
    /// Its learned documents deleted since: still in the weights (training cannot
    /// remove them), so they stay recorded with their old sequence and stay stale.
    #[serde(default)]
    pub deleted: Vec<String>,
}

/// The documents an adapter trained on `documents` has learned, ids in order and
/// write sequences: those of `from` (the version it continued from) with the
/// retrained documents' sequences replaced by their new ones, then any new ids.
pub fn learned(
    documents: &[Document],
    from: Option<&Continuation>,
) -> (Vec<String>, BTreeMap<String, u64>) {
    let (mut ids, mut seqs) = match from {
        Some(c) => (c.document_ids.clone(), c.document_seqs.clone()),
        None => Default::default(),
    };
    for d in documents {
        if !ids.contains(&d.id) {
            ids.push(d.id.clone());
        }
        if d.seq > 0 {
            seqs.insert(d.id.clone(), d.seq);
        }
    }
    (ids, seqs)
}

/// How the report names a continuation (appended to the method).
pub fn describe(c: &Continuation) -> String {
    let mut s = format!(", continued from version {}", c.version);
    if !c.deleted.is_empty() {
        s.push_str(&format!(
            "; {} learned document(s) deleted since ({}) stay in the weights (training cannot remove them): auto answers by rag until a promotion without continue",
            c.deleted.len(),
            c.deleted.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, seq: u64) -> Document {
        Document {
            id: id.into(),
            text: format!("text of {id}"),
            seq,
        }
    }

    #[test]
    fn retrained_documents_take_their_new_sequence_and_the_rest_are_kept() {
        let from = Continuation {
            version: 3,
            dir: PathBuf::from("v0003"),
            document_ids: vec!["a".into(), "b".into(), "c".into()],
            document_seqs: [("a", 4), ("b", 4), ("c", 6)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            deleted: vec!["c".into()],
        };
        let (ids, seqs) = learned(&[doc("b", 11), doc("d", 12)], Some(&from));
        assert_eq!(ids, ["a", "b", "c", "d"]);
        let want: BTreeMap<String, u64> = [("a", 4), ("b", 11), ("c", 6), ("d", 12)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(
            seqs, want,
            "c (deleted) keeps its old sequence: still stale"
        );
        let d = describe(&from);
        assert!(d.contains("version 3") && d.contains("(c)"), "{d}");

        let (ids, seqs) = learned(&[doc("x", 0), doc("y", 2)], None);
        assert_eq!(ids, ["x", "y"]);
        assert_eq!(
            seqs.len(),
            1,
            "a document without a sequence is not recorded"
        );
    }
}
