//! A shard's records copied from one node to another (`shard_copy.rs`), on two
//! stores sharing the in-memory log of `replicated_tests`.

use super::shard_index_tests::{shards, two_nodes_with_40_documents, vector_doc};
use super::*;
use crate::shard_scope::ShardScope;

#[test]
fn a_shard_dropped_from_a_node_comes_back_whole_from_another_nodes_copy() {
    let (n, a, b) = two_nodes_with_40_documents();
    let q = QueryRequest {
        vector: Some(vec![0.5, 1.0, -0.5, 0.2]),
        text: Some("common word3".into()),
        mode: Some(QueryMode::Hybrid),
        k: Some(40),
        ..Default::default()
    };
    let whole = view(a.query("c", &q).unwrap());
    let before = a.shard_counts("c", &[1]).unwrap();
    assert!(before.documents > 3, "{before:?}");

    // Node b lets shard 1 go: its records, keyword postings and graph nodes.
    let dropped = b.drop_shard_records("c", 1).unwrap();
    assert_eq!(dropped as u64, before.documents);
    assert_eq!(
        b.shard_counts("c", &[1]).unwrap(),
        crate::ShardCounts::default()
    );
    assert_eq!(
        b.shard_counts("c", &[0]).unwrap(),
        a.shard_counts("c", &[0]).unwrap()
    );
    assert_ne!(view(b.query("c", &q).unwrap()), whole);
    let lost = (0..40)
        .map(|i| format!("d{i}"))
        .find(|id| crate::collection::shard_of(id, 4) == 1)
        .unwrap();
    assert!(matches!(
        b.get_document("c", &lost, false),
        Err(Error::DocumentNotFound { .. })
    ));

    // Copied from a, three documents a page: b answers as before.
    let mut pages = vec![Vec::new()];
    let export = a
        .export_shard("c", 1, |d| {
            if pages.last().unwrap().len() == 3 {
                pages.push(Vec::new());
            }
            pages.last_mut().unwrap().push(d);
            Ok(())
        })
        .unwrap();
    assert_eq!(export.documents, before.documents);
    assert_eq!(export.seq, a.applied_seq());
    assert!(pages.len() > 1);
    // Of another incarnation of the collection: refused, nothing written.
    let other = crate::ShardExport {
        incarnation: export.incarnation + 1,
        ..export
    };
    assert!(matches!(
        b.import_shard("c", 1, &other, pages[0].clone()),
        Err(Error::Conflict { .. })
    ));
    // A document of another shard in the copy: refused.
    let mut wrong = pages[0].clone();
    wrong[0].id = (0..40)
        .map(|i| format!("d{i}"))
        .find(|id| crate::collection::shard_of(id, 4) != 1)
        .unwrap();
    assert!(b.import_shard("c", 1, &export, wrong).is_err());
    assert_eq!(b.shard_counts("c", &[1]).unwrap().documents, 0);
    for page in pages {
        b.import_shard("c", 1, &export, page).unwrap();
    }
    assert_eq!(b.shard_counts("c", &[1]).unwrap(), before);
    // A page copied twice: refused, nothing written twice.
    let mut again = Vec::new();
    a.export_shard("c", 1, |d| {
        again.push(d);
        Ok(())
    })
    .unwrap();
    assert!(matches!(
        b.import_shard("c", 1, &export, again),
        Err(Error::Conflict { .. })
    ));
    assert_eq!(view(b.query("c", &q).unwrap()), whole);
    let (got, want) = (
        b.get_document("c", &lost, true).unwrap(),
        a.get_document("c", &lost, true).unwrap(),
    );
    assert_eq!(
        (got.text, got.metadata, got.vectors),
        (want.text, want.metadata, want.vectors)
    );
    // Writes after the copy apply on top of it, as on every replica.
    let seq = a
        .upsert(
            "c",
            vec![vector_doc(41), {
                let mut d = vector_doc(7);
                d.text = Some("changed".into());
                d
            }],
        )
        .unwrap()
        .seq;
    b.wait_applied(seq).unwrap();
    assert_eq!(
        view(b.query("c", &q).unwrap()),
        view(a.query("c", &q).unwrap())
    );
    for s in 0..4 {
        assert_eq!(
            b.shard_counts("c", &[s]).unwrap(),
            a.shard_counts("c", &[s]).unwrap()
        );
    }
    drop((a, b));
    n.finish();
}

/// Hits of a hybrid query as (id, score).
fn view(r: QueryResponse) -> Vec<(String, f32)> {
    r.hits.into_iter().map(|h| (h.id, h.score)).collect()
}

#[test]
fn writes_passed_over_during_a_copy_are_applied_from_the_log_on_top_of_it() {
    let (n, a, b) = two_nodes_with_40_documents();
    let q = QueryRequest {
        vector: Some(vec![0.5, 1.0, -0.5, 0.2]),
        text: Some("common word3 changed".into()),
        mode: Some(QueryMode::Hybrid),
        k: Some(40),
        ..Default::default()
    };
    // Node b keeps every shard but 1 (as a node newly placed on it would).
    b.keep_shard_records("c", &shards(&[0, 2, 3])).unwrap();
    b.drop_shard_records("c", 1).unwrap();
    let mut copy = Vec::new();
    let export = a
        .export_shard("c", 1, |d| {
            copy.push(d);
            Ok(())
        })
        .unwrap();
    // Writes after the export: new documents, a rewrite and a delete in shard 1
    // among them; b's follower passes over shard 1's (not kept).
    let in_shard_1: Vec<u32> = (0..40)
        .filter(|i| crate::collection::shard_of(&format!("d{i}"), 4) == 1)
        .collect();
    a.upsert("c", (41..60).map(vector_doc).collect()).unwrap();
    let mut changed = vector_doc(in_shard_1[0]);
    changed.text = Some("changed".into());
    a.upsert("c", vec![changed]).unwrap();
    a.delete_document("c", &format!("d{}", in_shard_1[1]))
        .unwrap();
    let seq = a.applied_seq();
    b.wait_applied(seq).unwrap();
    assert_eq!(
        b.shard_counts("c", &[1]).unwrap(),
        crate::ShardCounts::default()
    );

    b.begin_shard_import("c", 1).unwrap();
    b.import_shard("c", 1, &export, copy).unwrap();
    let tail = n.entries_after(export.seq, "c.1");
    assert_eq!(tail.len(), 3, "one message a write to shard 1");
    for (seq, key, incarnation, batch) in tail {
        b.apply_shard_tail(seq, &key, incarnation, batch).unwrap();
    }
    assert_eq!(b.applied_seq(), seq, "the applied sequence stays");
    b.change_record_shards("c", |kept| {
        kept.insert(1);
    })
    .unwrap();
    assert_eq!(b.record_shards("c").unwrap(), ShardScope::All);
    for s in 0..4 {
        assert_eq!(
            b.shard_counts("c", &[s]).unwrap(),
            a.shard_counts("c", &[s]).unwrap()
        );
    }
    assert_eq!(
        view(b.query("c", &q).unwrap()),
        view(a.query("c", &q).unwrap())
    );
    // A kept shard's writes come from the follower: a tail on top is refused.
    let (seq, key, incarnation, batch) = n.entries_after(0, "c.1").remove(0);
    assert!(matches!(
        b.apply_shard_tail(seq, &key, incarnation, batch),
        Err(Error::Conflict { .. })
    ));
    // And later writes apply on top, as on every replica.
    let mut again = vector_doc(in_shard_1[2]);
    again.text = Some("changed again".into());
    let seq = a.upsert("c", vec![again]).unwrap().seq;
    b.wait_applied(seq).unwrap();
    assert_eq!(
        view(b.query("c", &q).unwrap()),
        view(a.query("c", &q).unwrap())
    );
    drop((a, b));
    n.finish();
}
