//! Bootstrap against a real JetStream (three local servers): a damaged newest snapshot falls
//! back to the previous one, a replaced data directory is moved aside, and with no
//! usable snapshot past a trim start-up stops with a clear error.

use super::*;
use crate::local::NatsCluster;
use engram_store::api::{CreateCollection, DocumentInput};
use engram_store::limits::Limits;
use engram_store::{EncoderLoader, Store};

fn open(dir: &Path) -> Store {
    let no_models: Box<EncoderLoader> =
        Box::new(|name| Err(engram_embedder::Error::UnsupportedModel(name.to_string())));
    Store::open_with_loader(dir, Limits::default(), no_models).unwrap()
}

#[test]
fn what_a_node_needs() {
    assert_eq!(need(10, 5, false, true), Need::No);
    assert_eq!(
        need(10, 11, false, true),
        Need::No,
        "its next message is there"
    );
    assert_eq!(need(10, 12, false, false), Need::Required);
    assert_eq!(need(0, 1, true, true), Need::Preferred);
    assert_eq!(
        need(0, 1, false, true),
        Need::No,
        "a database at 0 follows from 1"
    );
    assert_eq!(need(0, 1, true, false), Need::No);
    assert_eq!(need(0, 0, true, false), Need::No, "a new, empty stream");
    assert_eq!(
        need(0, 31, true, false),
        Need::Required,
        "emptied by a trim"
    );
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_previous_one_or_to_a_clear_error() {
    let nats = NatsCluster::start(3);
    let config = ClusterConfig::parse(&nats.urls(), 9, "test".into()).unwrap();
    let root = tempfile::tempdir().unwrap();

    // A database with one collection, snapshotted (at sequence 0: no log here).
    let source = open(&root.path().join("source"));
    let req = CreateCollection {
        dimension: Some(3),
        ..Default::default()
    };
    source.create_collection("v", req).unwrap();
    let docs: Vec<DocumentInput> = (0..20)
        .map(|i| {
            serde_json::from_value(
                serde_json::json!({"id": format!("d{i}"), "vector": [1.0, i as f32, 0.0]}),
            )
            .unwrap()
        })
        .collect();
    source.upsert("v", docs).unwrap();
    let local = source.snapshot().unwrap();
    let good = root.path().join("good.snap");
    let (bytes, sha) = archive::pack(&local.dir, &good).unwrap();
    let junk = root.path().join("junk.snap");
    std::fs::write(&junk, b"ENGRAM-SNAPSHOT-1\nnot really").unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let js = runtime.block_on(connect(&config)).unwrap();
    let store = runtime
        .block_on(snapshot::bucket(&js, config.replicas()))
        .unwrap();
    let info = |node_id: u32, seq: u64| snapshot::SnapshotInfo {
        name: snapshot::object_name(seq, node_id),
        seq,
        bytes,
        sha256: sha.clone(),
        node_id,
        created_ms: 1,
        missing: Vec::new(),
    };
    runtime
        .block_on(snapshot::upload(&store, &info(1, local.seq), &good))
        .unwrap();
    // Newer, but its bytes do not match the checksum it claims.
    runtime
        .block_on(snapshot::upload(&store, &info(2, 5), &junk))
        .unwrap_err();
    let listed = runtime.block_on(snapshot::list_in(&store)).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].seq, 5, "newest first");

    // An empty node: the damaged one is refused, the previous one used.
    let data = root.path().join("node");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("stale"), b"x").unwrap();
    match prepare(&config, &data).unwrap() {
        Prepared::Bootstrapped { snapshot, .. } => assert_eq!(snapshot.seq, local.seq),
        other => panic!("{other:?}"),
    }
    let aside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("node.replaced-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the old directory is moved aside");
    {
        let opened = open(&data);
        assert_eq!(opened.collection_info("v").unwrap().documents, 20);
    }
    // A node that holds a database whose next message is in the stream is kept.
    assert!(matches!(
        prepare(&config, &data).unwrap(),
        Prepared::Kept { .. }
    ));

    // The stream trimmed past every snapshot: a clear error, nothing touched.
    runtime.block_on(async {
        for _ in 0..8 {
            js.publish("engram.c.zz", "x".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let stream = js.get_stream(STREAM).await.unwrap();
        stream.purge().sequence(6).await.unwrap();
    });
    let empty = root.path().join("empty");
    let err = prepare(&config, &empty).unwrap_err().to_string();
    assert!(err.contains("no snapshot is usable"), "{err}");
    assert!(err.contains("checksum"), "{err}");
    assert!(err.contains("before the stream's first message 6"), "{err}");
    assert!(!empty.exists());
}
