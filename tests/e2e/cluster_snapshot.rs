//! Cluster snapshots end to end: three real `nats-server` processes (JetStream,
//! R3) and three `engram serve --cluster` nodes on 127.0.0.1. A snapshot is taken
//! unasked after 40 messages, and on demand (`POST /cluster/snapshot` and `engram
//! cluster snapshot`); each trims the stream below it; writes go on after the trim
//! (shards whose last message was purged included); then a fourth node with an
//! empty data directory bootstraps from the newest snapshot, replays the tail, and
//! answers the same top-10 as its peers. The stream no longer holds its first
//! messages, so that node cannot have replayed it whole. Every process is stopped
//! by its pid at the end (the helpers' `Drop`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{top10, write, DIM};
use crate::support::{Reply, Server};
use engram_cluster::local::NatsCluster;

/// Node `id` on `dir`, snapshotting every 40 messages (checked every 5 s) and
/// never by time.
fn node(dir: &std::path::Path, urls: &str, id: u32) -> Server {
    let id = id.to_string();
    let args = [
        "--lazy-models",
        "--cluster",
        urls,
        "--node-id",
        &id,
        "--snapshot-every-writes",
        "40",
        "--snapshot-every-secs",
        "0",
    ];
    Server::start(dir, &args, &[("RUST_LOG", "warn,engram_cluster=info")])
}

fn snapshots(server: &Server) -> Vec<Value> {
    let r = server.get("/cluster/snapshots");
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body.as_array().unwrap().clone()
}

/// `POST /cluster/snapshot`, retried while a periodic one holds the lease (409).
fn snapshot_now(server: &Server) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server.post("/cluster/snapshot", json!({}));
        if r.status != 409 || Instant::now() > deadline {
            return r;
        }
        assert!(r.error_message().contains("lease"), "{:?}", r.body);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn snapshot_and_trim_then_a_fresh_node_bootstraps_and_answers_like_its_peers() {
    let started = Instant::now();
    let nats = NatsCluster::start(3);
    let urls = nats.urls();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Server> = (0..3)
        .map(|i| node(dirs[i].path(), &urls, i as u32 + 1))
        .collect();
    let r = nodes[0].put(
        "/collections/vecs",
        json!({"dimension": DIM, "distance": "cosine"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);

    // 60 single-document writes (a message each): a snapshot is due after 40.
    // The first through node 1, read everywhere: every node has the collection.
    let mut last = write(&nodes[0], 0).expect("acknowledged");
    for s in &nodes {
        top10(s, 0, last);
    }
    for n in 1..60 {
        last = write(&nodes[n as usize % 3], n).expect("acknowledged");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let periodic = loop {
        if let Some(s) = snapshots(&nodes[1]).first() {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "no periodic snapshot");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(periodic["seq"].as_u64().unwrap() >= 40, "{periodic}");
    assert_eq!(periodic["sha256"].as_str().unwrap().len(), 64);

    // More writes after that trim: shards whose last message was purged take them.
    for n in 60..120 {
        last = write(&nodes[n as usize % 3], n).expect("acknowledged after a trim");
    }
    for s in &nodes {
        top10(s, 0, last);
    }
    // Wait until the heartbeats (every 2 s) say every node applied `last`: then the
    // trim keeps nothing a live node still needs, and nothing more. Polled, not slept:
    // on a loaded machine a heartbeat can be late.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = nodes[1].get("/cluster");
        assert_eq!(r.status, 200, "{:?}", r.body);
        let heard = r.body["nodes"].as_array().cloned().unwrap_or_default();
        let applied = |n: &Value| n["applied_seq"].as_u64().unwrap_or(0) >= last;
        if heard.len() == 3 && heard.iter().all(applied) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "heartbeats never reached {last}: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = snapshot_now(&nodes[1]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seq = r.body["snapshot"]["seq"].as_u64().unwrap();
    assert_eq!(seq, last, "{:?}", r.body);
    assert_eq!(r.body["stream_first_seq"].as_u64(), Some(last + 1));
    let printed = nodes[2].cli(&["cluster", "snapshot"], None);
    assert!(
        printed.contains(&format!("at sequence {last}")) && printed.contains("begins at"),
        "{printed}"
    );
    let listed = snapshots(&nodes[0]);
    assert!(
        !listed.is_empty() && listed.len() <= 2,
        "the newest two are kept: {listed:?}"
    );
    assert_eq!(listed[0]["seq"].as_u64(), Some(last));

    // The tail: written after the trim, replayed by the new node.
    for n in 120..160 {
        last = write(&nodes[n as usize % 3], n).expect("acknowledged");
    }

    // A fresh node, empty data directory: bootstraps from the snapshot.
    let boot = Instant::now();
    let fresh = node(dirs[3].path(), &urls, 4);
    let healthy = boot.elapsed().as_secs_f64();
    let count = |s: &Server| s.get("/collections/vecs").body["documents"].as_u64();
    for q in [0, 7, 77, 130, 155] {
        assert_eq!(
            top10(&fresh, q, last),
            top10(&nodes[0], q, last),
            "query {q}"
        );
    }
    eprintln!(
        "fresh node: healthy {healthy:.2} s after its start, caught up within {:.2} s",
        boot.elapsed().as_secs_f64()
    );
    assert_eq!(count(&fresh), Some(160));
    assert_eq!(count(&fresh), count(&nodes[1]));
    // It takes writes too, read on another node.
    let s = write(&fresh, 999).expect("a write through the new node");
    assert_eq!(top10(&nodes[1], 999, s)[0], "d999");

    // One machine has no snapshots: 404, said plainly.
    let alone_dir = tempfile::tempdir().unwrap();
    let mut alone = Server::start(alone_dir.path(), &["--lazy-models"], &[]);
    let r = alone.post("/cluster/snapshot", json!({}));
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(r.error_message().contains("not in cluster mode"));
    alone.kill9();

    let mut fresh = fresh;
    fresh.kill9();
    for s in &mut nodes {
        s.kill9();
    }
    eprintln!("test took {:.1} s", started.elapsed().as_secs_f64());
}
