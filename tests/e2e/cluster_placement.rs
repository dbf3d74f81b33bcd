//! Placement and scatter/gather in cluster mode (three real `nats-server`s and three
//! `engram serve --cluster` nodes on 127.0.0.1): a stopped node's shards are answered
//! by their other replicas with the same results, and placement moves off it once its
//! heartbeat expires; each node's graph holds only the shards placed on it and
//! follows the placement, and a shard that moves is served throughout (its old node
//! hands it over once the new one serves it); a write to a shard a node does not
//! serve is forwarded to a node that does.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{cluster_status, three_nodes_with, vector_for, wait, DIM};
use crate::support::Server;
use engram_cluster::scatter;
use engram_store::collection::shard_of;

/// Each shard's placed replicas (node ids, sorted) in a `GET /cluster` answer.
pub(crate) fn placement(status: &Value) -> Vec<Vec<u64>> {
    status["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sh| {
            let mut r: Vec<u64> = sh["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["node_id"].as_u64().unwrap())
                .collect();
            r.sort_unstable();
            r
        })
        .collect()
}

/// The hits (id and score) of a vector and a hybrid query, after `min_seq`.
fn answers(server: &Server, min_seq: u64) -> Vec<Vec<(String, f64)>> {
    let bodies = [
        json!({"vector": vector_for(3), "k": 10, "min_seq": min_seq}),
        json!({"mode": "hybrid", "vector": vector_for(4), "text": "token4 words", "k": 10, "min_seq": min_seq}),
    ];
    bodies
        .into_iter()
        .map(|body| server.post("/collections/placed/query", body).hit_scores())
        .collect()
}

/// The shards `placed` on node `id` as `GET /collections/NAME` lists them
/// (`indexed_shards`, `record_shards`): absent when all.
pub(crate) fn listed_shards(placed: &[Vec<u64>], id: u64) -> Option<Value> {
    let mine: Vec<u64> = (0..placed.len() as u64)
        .filter(|&s| placed[s as usize].contains(&id))
        .collect();
    (mine.len() < placed.len()).then(|| json!(mine))
}

/// Waits until the graph of each of `nodes` (ids 1, 2, ... in order, `None` for a
/// stopped one) holds exactly the shards `placed` on it (`indexed_shards`, absent
/// when all), and checks its vector count against the shards' documents.
fn graphs_follow(nodes: &[Option<&Server>], placed: &[Vec<u64>], what: &str) {
    for (i, server) in nodes.iter().enumerate() {
        let Some(server) = server else { continue };
        let id = i as u64 + 1;
        let want = listed_shards(placed, id);
        let info = wait(
            &format!("node {id}'s graph holds its shards {what}"),
            30,
            || {
                let info = server.get("/collections/placed").body;
                (info.get("indexed_shards").cloned() == want).then_some(info)
            },
        );
        // The collection's counts are the whole collection's, the shards this node's
        // graph does not hold counted by their replicas.
        assert_eq!(info["documents"], 60, "node {id} {what}: {info}");
        assert_eq!(info["keyword_documents"], 60, "node {id} {what}: {info}");
        let (indexed, vectors) = (info["indexed_vectors"].as_u64(), info["vectors"].as_u64());
        if want.is_some() {
            assert!(indexed < vectors, "node {id} {what}: {info}");
        } else {
            assert_eq!(indexed, vectors, "node {id} {what}: {info}");
        }
    }
}

#[test]
fn a_stopped_nodes_shards_are_answered_by_their_replicas_and_placement_moves() {
    let test_started = Instant::now();
    // Every node keeps every shard's records here (`--shard-records all`): the graph
    // alone follows placement. The default, records that follow it too, is
    // `cluster_records.rs`'s (and every other cluster test's).
    let (_nats, _dirs, mut nodes) = three_nodes_with(&["--shard-records", "all"]);
    let create = |replication: Value| {
        nodes[0].put(
            "/collections/placed",
            json!({"dimension": DIM, "distance": "cosine", "shards": 6, "replication": replication}),
        )
    };
    for bad in [json!(0), json!(17), json!(-1)] {
        let r = create(bad.clone());
        assert_eq!(r.status, 400, "replication {bad}: {:?}", r.body);
    }
    let r = create(json!(2));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["replication"], 2);
    let docs: Vec<Value> = (0..60u64)
        .map(|n| json!({"id": format!("d{n}"), "vector": vector_for(n), "text": format!("token{n} words")}))
        .collect();
    let r = nodes[0].post(
        "/collections/placed/documents",
        json!({ "documents": docs }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seq = r.body["seq"].as_u64().unwrap();

    // Every node answers the same, gathered from one replica of each shard.
    let started = Instant::now();
    let want = answers(&nodes[0], seq);
    eprintln!(
        "first scatter/gather answers: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(want[0].len(), 10);
    assert_eq!(want[0][0].0, "d3");
    for s in &nodes[1..] {
        assert_eq!(answers(s, seq), want);
    }

    // Every node has applied the creation now: two replicas per shard, spread over
    // the three nodes by rendezvous hashing (once every node's heartbeat shows).
    let before = wait("every node's heartbeat", 30, || {
        let status = cluster_status(&nodes[1]);
        (status["nodes"].as_array().unwrap().len() == 3).then(|| placement(&status))
    });
    assert_eq!(before.len(), 6);
    assert!(before.iter().all(|r| r.len() == 2), "{before:?}");
    for id in 1..=3 {
        assert!(
            before.iter().any(|r| r.contains(&id)),
            "node {id} holds no shard: {before:?}"
        );
    }
    // Each node's graph holds only the shards placed on it (its records all of them).
    graphs_follow(
        &[Some(&nodes[0]), Some(&nodes[1]), Some(&nodes[2])],
        &before,
        "at first",
    );
    let printed = nodes[1].cli(&["cluster", "status"], None);
    let rows: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("placed "))
        .collect();
    assert_eq!(rows.len(), 6, "{printed}");
    assert!(
        rows.iter().all(|r| r.split_whitespace().count() == 5),
        "two replicas a row:\n{printed}"
    );

    // Node 3 stops: its shards are answered by their other replica at once.
    let stopped = Instant::now();
    nodes[2].kill9();
    for s in &nodes[..2] {
        assert_eq!(answers(s, seq), want, "with node 3 down");
    }
    eprintln!(
        "answers equal to before, from nodes 1 and 2, {:.2} s after node 3 stopped",
        stopped.elapsed().as_secs_f64()
    );

    // Once its heartbeat expires, placement moves its replicas to the live nodes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let p = placement(&cluster_status(&nodes[0]));
        if p.iter().all(|r| !r.contains(&3)) && p.iter().all(|r| r.len() == 2) {
            break p;
        }
        assert!(Instant::now() < deadline, "placement did not move: {p:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "placement moved off node 3 {:.2} s after it stopped",
        stopped.elapsed().as_secs_f64()
    );
    assert!(after.iter().all(|r| r == &vec![1, 2]), "{after:?}");
    assert_eq!(answers(&nodes[1], seq), want, "after the move");
    // The shards that moved were indexed from the records each node already held.
    graphs_follow(
        &[Some(&nodes[0]), Some(&nodes[1]), None],
        &after,
        "after the move",
    );
    assert_eq!(answers(&nodes[0], seq), want, "from the graphs rebuilt");

    // A manual placement, by compare-and-set on its revision.
    let place = |body: Value| nodes[0].put("/cluster/placement/placed/0", body);
    let r = place(json!({"nodes": [2]}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let revision = r.body["revision"].as_u64().unwrap();
    let stale = place(json!({"nodes": [1]}));
    assert_eq!(stale.status, 409, "{:?}", stale.body);
    let r = nodes[0].put("/cluster/placement/placed/6", json!({"nodes": [1]}));
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = nodes[0].put("/cluster/placement/nothing/0", json!({"nodes": [1]}));
    assert_eq!(r.status, 404, "{:?}", r.body);
    let status = cluster_status(&nodes[1]);
    let shard0 = &status["shards"][0];
    assert_eq!(
        shard0["override_revision"].as_u64(),
        Some(revision),
        "{shard0}"
    );
    assert_eq!(placement(&status)[0], vec![2], "{shard0}");
    std::thread::sleep(scatter::REPLAN_EVERY * 2);
    assert_eq!(
        answers(&nodes[0], seq),
        want,
        "shard 0 answered by node 2 alone"
    );
    let mut overridden = after.clone();
    overridden[0] = vec![2];
    graphs_follow(
        &[Some(&nodes[0]), Some(&nodes[1]), None],
        &overridden,
        "after the override",
    );
    assert_eq!(
        answers(&nodes[0], seq),
        want,
        "node 1's graph without shard 0"
    );

    writes_follow_placement(&nodes, seq);
    a_moving_shard_is_served_throughout(&nodes[..2]);
    a_shard_write_over_the_log_message_limit_is_a_400(&nodes[0]);

    for s in &mut nodes {
        s.kill9();
    }
    eprintln!("test took {:.1} s", test_started.elapsed().as_secs_f64());
}

/// With shard 0 placed on node 2 alone, node 1's writes to it go to node 2, which
/// publishes them: node 1 answers once it has applied them, reads them at once,
/// and says so in `GET /cluster`; a delete goes the same way and a missing
/// document is still a 404.
fn writes_follow_placement(nodes: &[Server], seq: u64) {
    let id = (60..)
        .map(|n| format!("d{n}"))
        .find(|id| shard_of(id, 6) == 0)
        .unwrap();
    let forwarded = |s: &Server| cluster_status(s)["forwarded"].clone();
    let (sent, taken) = (forwarded(&nodes[0]), forwarded(&nodes[1]));
    let doc = json!({"id": id, "vector": vector_for(3), "text": "forwarded words"});
    let r = nodes[0].post(
        "/collections/placed/documents",
        json!({ "documents": [doc] }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["seq"].as_u64().unwrap() > seq, "{:?}", r.body);
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap();
    // Read on node 1 at once, by node 2 (a document is read where its shard is).
    let fetched = |s: &Server| cluster_status(s)["fetched"].clone();
    let (fetches_sent, fetches_taken) = (fetched(&nodes[0]), fetched(&nodes[1]));
    let path = format!("/collections/placed/documents/{id}");
    let r = nodes[0].get(&path);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["text"], json!("forwarded words"));
    assert_eq!(
        count(&fetched(&nodes[0]), "sent"),
        count(&fetches_sent, "sent") + 1
    );
    assert_eq!(
        count(&fetched(&nodes[1]), "taken"),
        count(&fetches_taken, "taken") + 1
    );
    assert_eq!(
        count(&forwarded(&nodes[0]), "sent"),
        count(&sent, "sent") + 1
    );
    assert_eq!(
        count(&forwarded(&nodes[1]), "taken"),
        count(&taken, "taken") + 1
    );
    let r = nodes[0].post(
        "/collections/placed/query",
        json!({"vector": vector_for(3), "k": 2}),
    );
    // As near as d3 (the same vector): one of the two best, its text read by node 2
    // with its ranking (shard 0's records are read where shard 0 is served).
    let hits = r.body["hits"].as_array().unwrap();
    let hit = hits.iter().find(|h| h["id"] == json!(id));
    assert_eq!(
        hit.map(|h| h["text"].clone()),
        Some(json!("forwarded words")),
        "{:?}",
        r.body
    );

    assert_eq!(nodes[0].delete(&path).status, 204);
    assert_eq!(nodes[0].get(&path).status, 404);
    assert_eq!(nodes[0].delete(&path).status, 404, "a missing document");
    assert_eq!(
        count(&forwarded(&nodes[0]), "sent"),
        count(&sent, "sent") + 2
    );
    let metrics = ureq::get(&nodes[0].url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let line = format!(
        "engram_cluster_forwarded_writes_sent {}",
        count(&sent, "sent") + 2
    );
    assert!(metrics.contains(&line), "{line} in:\n{metrics}");
}

/// The nodes whose heartbeat (in a `GET /cluster` answer) lists `key` (`NAME.SHARD`)
/// among the shards they serve.
fn served_by(status: &Value, key: &str) -> Vec<u64> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["serving"].as_array().unwrap().iter().any(|s| s == key))
        .map(|n| n["node_id"].as_u64().unwrap())
        .collect()
}

/// With replication 1 a shard moved by an override has no other replica: its old
/// node keeps serving it until the new one's heartbeat says it serves it, so at no
/// point does no node serve it, and queries answer throughout.
fn a_moving_shard_is_served_throughout(nodes: &[Server]) {
    let r = nodes[0].put(
        "/collections/solo",
        json!({"dimension": DIM, "shards": 2, "replication": 1}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let docs: Vec<Value> = (0..40u64)
        .map(|n| json!({"id": format!("s{n}"), "vector": vector_for(n)}))
        .collect();
    let r = nodes[0].post("/collections/solo/documents", json!({ "documents": docs }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let holder = wait("shard solo.0 served by its one replica", 30, || {
        let by = served_by(&cluster_status(&nodes[0]), "solo.0");
        (by.len() == 1).then(|| by[0])
    });
    let target = if holder == 1 { 2 } else { 1 };
    let r = nodes[0].put("/cluster/placement/solo/0", json!({"nodes": [target]}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let by = served_by(&cluster_status(&nodes[0]), "solo.0");
        assert!(!by.is_empty(), "no node serves solo.0 after {seen:?}");
        if seen.last() != Some(&by) {
            seen.push(by.clone());
        }
        let q = json!({"vector": vector_for(1), "k": 3});
        assert_eq!(nodes[0].post("/collections/solo/query", q).status, 200);
        if by == vec![target] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "solo.0 not handed over: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "solo.0 handed from node {holder} to node {target} in {:.1} s: {seen:?}",
        started.elapsed().as_secs_f64()
    );
}

/// A write whose part for one shard would not fit in one message of the log (NATS's
/// `max_payload`, 1 MiB by default) is refused with a 400 naming the limit, at once
/// and with nothing written, whether the node asked publishes it or forwards it.
fn a_shard_write_over_the_log_message_limit_is_a_400(node: &Server) {
    let text: String = (0..140_000).map(|i| format!("w{} ", i % 997)).collect();
    for shard in [0, 1] {
        let docs: Vec<Value> = (0..)
            .map(|n| format!("big{n}"))
            .filter(|id| shard_of(id, 6) == shard)
            .take(2)
            .map(|id| json!({"id": id, "vector": vector_for(5), "text": text}))
            .collect();
        let started = Instant::now();
        let r = node.post(
            "/collections/placed/documents",
            json!({ "documents": docs }),
        );
        assert_eq!(r.status, 400, "shard {shard}: {:?}", r.body);
        assert!(
            r.error_message().contains("the limit is"),
            "{}",
            r.error_message()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused at once"
        );
        let id = docs[0]["id"].as_str().unwrap();
        let path = format!("/collections/placed/documents/{id}");
        assert_eq!(node.get(&path).status, 404, "nothing written");
    }
}
