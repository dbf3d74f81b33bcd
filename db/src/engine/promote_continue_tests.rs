//! Planning a continued promotion: which documents it retrains, what it carries over
//! from the version it continues, and the 400s for what it cannot do.

use std::path::PathBuf;

use engram_generator::adapters::{BaseModel, Manifest};
use serde_json::json;

use super::*;

fn seqs(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn version(kind: AdapterKind, train: TrainConfig) -> AdapterVersion {
    let manifest = Manifest {
        collection: "c".into(),
        cluster: None,
        document_ids: vec!["a".into(), "b".into(), "c".into()],
        document_seqs: seqs(&[("a", 3), ("b", 3), ("c", 5)]),
        continued_from: None,
        base_model: BaseModel {
            name: "m".into(),
            sha256: "00".into(),
        },
        data_strategy: Vec::new(),
        data_counts: Default::default(),
        seed: 0,
        train: serde_json::to_value(train).unwrap(),
        metrics: Default::default(),
        created_unix: 0,
    };
    AdapterVersion {
        collection: "c".into(),
        version: 2,
        path: PathBuf::from("/adapters/c/v0002"),
        manifest: Some(manifest),
        kind: Some(kind),
        active: true,
    }
}

fn lora_train() -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn request(v: serde_json::Value) -> PromoteRequest {
    serde_json::from_value(v).unwrap()
}

/// a unchanged, b written again, c deleted.
fn now(id: &str) -> Result<Option<u64>> {
    Ok(match id {
        "a" => Some(3),
        "b" => Some(9),
        _ => None,
    })
}

fn message(r: Result<Start>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn it_retrains_the_written_documents_from_the_active_version_and_carries_its_records() {
    let v = version(AdapterKind::Lora, lora_train());
    let req = request(json!({"continue": true}));
    assert!(req.continue_training);
    let start = start_from("c", Some(&v), &req, now).unwrap();
    assert_eq!(start.kind, AdapterKind::Lora);
    assert_eq!((start.lora.rank, start.lora.alpha), (4, 8.0));
    assert_eq!(start.prefix, None);
    assert_eq!(start.written, ["b"], "the deleted c cannot be retrained");
    let c = &start.continuation;
    assert_eq!((c.version, c.dir.as_path()), (2, v.path.as_path()));
    assert_eq!(c.deleted, ["c"]);
    assert_eq!(c.document_seqs, seqs(&[("a", 3), ("b", 3), ("c", 5)]));
    // The new version's records: b at its new sequence, c still stale.
    let b = Document {
        id: "b".into(),
        text: "new".into(),
        seq: 9,
    };
    let (ids, learned) = engram_trainer::continuation::learned(&[b], Some(c));
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(learned, seqs(&[("a", 3), ("b", 9), ("c", 5)]));

    // A prefix adapter continues as a prefix of its own size, with no init tokens.
    let prefix = TrainConfig {
        prefix: Some(PrefixConfig {
            tokens: 16,
            init: vec![1, 2, 3],
        }),
        ..lora_train()
    };
    let v = version(AdapterKind::Prefix, prefix);
    let start = start_from("c", Some(&v), &req, now).unwrap();
    assert_eq!(start.kind, AdapterKind::Prefix);
    assert_eq!(
        start.prefix,
        Some(PrefixConfig {
            tokens: 16,
            init: Vec::new()
        })
    );
    let same = request(json!({"continue": true, "adapter": "prefix", "prefix_tokens": 16}));
    start_from("c", Some(&v), &same, now).unwrap();
}

#[test]
fn what_it_cannot_do_is_a_400_saying_why() {
    let v = version(AdapterKind::Lora, lora_train());
    let req = request(json!({"continue": true}));
    let err = message(start_from("c", None, &req, now));
    assert!(
        err.contains("no active adapter") && err.contains("promote it first"),
        "{err}"
    );

    let unchanged = |id: &str| Ok(seqs(&[("a", 3), ("b", 3), ("c", 5)]).get(id).copied());
    let err = message(start_from("c", Some(&v), &req, unchanged));
    assert!(
        err.contains("nothing changed since the active adapter (version 2)"),
        "{err}"
    );

    let only_deleted = |id: &str| Ok((id != "c").then_some(3));
    let err = message(start_from("c", Some(&v), &req, only_deleted));
    assert!(
        err.contains("deleted (c)") && err.contains("cannot remove"),
        "{err}"
    );

    for (body, says) in [
        (
            json!({"continue": true, "adapter": "prefix"}),
            "is a lora adapter",
        ),
        (
            json!({"continue": true, "rank": 8}),
            "keeps the active adapter's shape",
        ),
        (json!({"continue": true, "alpha": 1.0}), "rank 4, alpha 8"),
        (json!({"continue": true, "all": true}), "drop all, cluster"),
        (json!({"continue": true, "cluster": 1}), "drop all, cluster"),
    ] {
        let err = message(start_from("c", Some(&v), &request(body.clone()), now));
        assert!(err.contains(says), "{body}: {err}");
    }

    let mut old = version(AdapterKind::Lora, lora_train());
    old.manifest.as_mut().unwrap().document_seqs.clear();
    let err = message(start_from("c", Some(&old), &req, now));
    assert!(
        err.contains("recorded no document write sequences"),
        "{err}"
    );
}
