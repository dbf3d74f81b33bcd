//! Start-up with a dump: caught up from the write log with the writes after it, and
//! every unusable dump falling back to the rebuild with its reason.

use std::path::Path;

use super::*;
use crate::api::{CreateCollection, DocumentInput};
use crate::limits::Limits;
use crate::store::{EncoderLoader, Store};

/// Opens the store and waits for the dumps an open starts in the background (after a
/// rebuild), so a test's next file write is not overwritten by one.
fn open(dir: &Path) -> Store {
    let no_models: Box<EncoderLoader> =
        Box::new(|name| Err(engram_embedder::Error::UnsupportedModel(name.to_string())));
    let s = Store::open_with_loader(dir, Limits::default(), no_models).unwrap();
    s.wait_for_graph_dumps();
    s
}

fn vector(i: usize, salt: u64) -> Vec<f32> {
    crate::index::test_points(1, 8, i as u64 * 1000 + salt).remove(0)
}

fn docs(range: std::ops::Range<usize>, salt: u64) -> Vec<DocumentInput> {
    range
        .map(|i| DocumentInput {
            id: Some(format!("d{i}")),
            vector: Some(vector(i, salt)),
            ..Default::default()
        })
        .collect()
}

fn upsert(s: &Store, range: std::ops::Range<usize>, salt: u64) {
    for batch in docs(range, salt).chunks(500) {
        s.upsert("v", batch.to_vec()).unwrap();
    }
}

/// A store with collection "v" of 1,500 vectors and its dump written.
fn dumped(dir: &Path) -> Store {
    let s = open(dir);
    let req = CreateCollection {
        dimension: Some(8),
        ..Default::default()
    };
    s.create_collection("v", req).unwrap();
    upsert(&s, 0..1500, 0);
    s.persist_graphs();
    assert!(s.graph_dumps().path("v").exists());
    s
}

fn results(s: &Store) -> Vec<Vec<(u64, f32)>> {
    let index = s.collection("v").unwrap().index();
    (0..20)
        .map(|i| index.search(&vector(i, 99), 10, 64))
        .collect()
}

#[test]
fn a_reopened_store_loads_its_dump_and_replays_inserts_replacements_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let s = dumped(dir.path());
        s.upsert("v", docs(1500..1600, 0)).unwrap(); // new documents
        s.upsert("v", docs(0..40, 1)).unwrap(); // replaced vectors
        for i in 40..60 {
            s.delete_document("v", &format!("d{i}")).unwrap();
        }
        results(&s)
        // Dropped without persisting: like a crash after these writes.
    };
    let s = open(dir.path());
    assert!(matches!(
        s.graph_dumps().opened("v"),
        Some(Opened::Dump { replayed, .. }) if replayed == 100 + 40 * 2 + 20
    ));
    // The same inserts in the same order: the same graph, the same answers.
    assert_eq!(results(&s), before);
    let index = s.collection("v").unwrap().index();
    assert_eq!(index.len(), 1580);
    let coll = s.collection("v").unwrap();
    let deleted: HashSet<u64> = (40..60)
        .flat_map(|i| coll.chunks_of(&format!("d{i}")))
        .collect();
    assert!(deleted.is_empty(), "deleted documents have no chunks");
    let top = index.search(&vector(5, 1), 1, 64);
    assert_eq!(
        coll.with_chunks(|c| c[&top[0].0].id.to_string()),
        "d5",
        "the replaced vector is found"
    );
}

#[test]
fn an_unusable_dump_falls_back_to_the_rebuild_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dumped(dir.path()).graph_dumps().path("v");
    let good = std::fs::read(&path).unwrap();
    let reopen = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let s = open(dir.path());
        assert_eq!(
            s.collection("v").unwrap().index().len(),
            1500,
            "rebuilt whole"
        );
        s.graph_dumps().opened("v").unwrap()
    };
    assert!(matches!(reopen(&good), Opened::Dump { replayed: 0, .. }));

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    assert_eq!(
        reopen(&flipped),
        Opened::Rebuilt(Rejected::Corrupt("checksum mismatch".into()))
    );
    assert!(matches!(
        reopen(&good[..good.len() - 100]),
        Opened::Rebuilt(Rejected::Corrupt(_))
    ));
    let mut version = good.clone();
    version[8] = 99;
    assert_eq!(reopen(&version), Opened::Rebuilt(Rejected::Version(99)));

    // A dump that claims writes the log never saw (records restored from a backup).
    let s = open(dir.path());
    let coll = s.collection("v").unwrap();
    let ahead = coll.index().to_dump(&GraphDumps::header(&coll, 1000));
    drop((coll, s));
    assert!(
        matches!(reopen(&ahead), Opened::Rebuilt(Rejected::Mismatch(m)) if m.contains("log ends at"))
    );

    // A sound file whose graph lacks a stored chunk: the records win.
    let s = open(dir.path());
    let coll = s.collection("v").unwrap();
    let partial = VectorIndex::new(8, coll.config.distance, coll.config.hnsw, 10);
    partial.insert_batch(&[(1, vector(0, 0).as_slice())]);
    let seq = s.storage().log().last_seq();
    let lacking = partial.to_dump(&GraphDumps::header(&coll, seq));
    drop((coll, s));
    assert!(matches!(
        reopen(&lacking),
        Opened::Rebuilt(Rejected::Disagrees(_))
    ));

    // Another incarnation's dump (the collection was deleted and created again).
    let s = open(dir.path());
    s.delete_collection("v").unwrap();
    assert!(!path.exists(), "a deleted collection's dump is removed");
    let req = CreateCollection {
        dimension: Some(8),
        ..Default::default()
    };
    s.create_collection("v", req).unwrap();
    upsert(&s, 0..1500, 0);
    drop(s);
    assert!(
        matches!(reopen(&good), Opened::Rebuilt(Rejected::Mismatch(m)) if m.contains("incarnation"))
    );
    std::fs::remove_file(&path).unwrap();
    let s = open(dir.path());
    assert_eq!(
        s.graph_dumps().opened("v"),
        Some(Opened::Rebuilt(Rejected::Missing))
    );
}
