//! A shard no live node keeps, restored from a snapshot and the write log (three real
//! `nats-server`s and three `engram serve --cluster` nodes on 127.0.0.1, records
//! that follow placement): a collection at replication 1, every shard in a
//! snapshot, more writes (a rewrite and a delete among them) after it; the node
//! keeping some shards is killed and its data lost for good; the nodes its shards
//! move to restore them from that node's snapshot and the log, and answer as the
//! whole collection did.

use std::time::Instant;

use serde_json::{json, Value};

use crate::cluster::{cluster_status, three_nodes_with, DIM};
use crate::cluster_placement::placement;
use crate::cluster_records::{answers_in, doc, records_follow_in, PLACED};
use crate::support::Server;

#[test]
fn a_shard_no_live_node_keeps_is_restored_from_its_snapshot_and_the_log() {
    let test_started = Instant::now();
    let (_nats, mut dirs, mut nodes) = three_nodes_with(PLACED);
    let r = nodes[0].put(
        "/collections/solo",
        json!({"dimension": DIM, "distance": "cosine", "shards": 6, "replication": 1}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let docs: Vec<Value> = (0..60).map(doc).collect();
    let r = nodes[0].post("/collections/solo/documents", json!({ "documents": docs }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let all: Vec<Option<&Server>> = nodes.iter().map(Some).collect();
    records_follow_in(&all, ("solo", 1), Some(60), "at first");

    // Every node's snapshot: each holds its own shards, and together every shard.
    for (i, s) in nodes.iter().enumerate() {
        let r = s.post("/cluster/snapshot", json!({}));
        assert_eq!(r.status, 200, "node {}: {:?}", i + 1, r.body);
    }
    // After the snapshots, in the log only: new documents, a rewrite, a delete.
    let more: Vec<Value> = (60..90).map(doc).collect();
    let r = nodes[0].post("/collections/solo/documents", json!({ "documents": more }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = nodes[2].delete("/collections/solo/documents/r11");
    assert_eq!(r.status, 204, "{:?}", r.body);
    let mut changed = doc(5);
    changed["text"] = json!("rewritten token9 words");
    let r = nodes[1].post(
        "/collections/solo/documents",
        json!({ "documents": [changed] }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let last = r.body["seq"].as_u64().unwrap();
    let want = answers_in(&nodes[0], "solo", last);
    assert!(
        want[1].iter().any(|h| h.0 == "r5"),
        "the rewrite is what a keyword query finds: {want:?}"
    );

    // The node keeping the most shards dies with its data: no live node keeps its
    // shards any more.
    let placed = placement(&cluster_status(&nodes[0]));
    let lost = (0..3)
        .max_by_key(|&i| {
            placed
                .iter()
                .filter(|r| r.contains(&(i as u64 + 1)))
                .count()
        })
        .unwrap();
    eprintln!("placement {placed:?}: node {} lost", lost + 1);
    nodes[lost].kill9();
    drop(dirs.remove(lost));
    let live: Vec<Option<&Server>> = (0..3).map(|i| (i != lost).then(|| &nodes[i])).collect();
    records_follow_in(&live, ("solo", 1), Some(89), "after a node was lost");
    for s in live.iter().flatten() {
        assert_eq!(answers_in(s, "solo", last), want);
        let r = s.get("/collections/solo/documents/r11");
        assert_eq!(
            r.status, 404,
            "the deleted document stays deleted: {:?}",
            r.body
        );
        for n in (0..90).filter(|&n| n != 11) {
            let r = s.get(&format!("/collections/solo/documents/r{n}"));
            assert_eq!(r.status, 200, "r{n}: {:?}", r.body);
        }
        let r = s.get("/collections/solo/documents/r5").body;
        assert_eq!(r["text"], "rewritten token9 words");
    }
    for s in &mut nodes {
        s.kill9();
    }
    eprintln!("test took {:.1} s", test_started.elapsed().as_secs_f64());
}
