//! Records that follow placement (the default, `--shard-records placed`; three real `nats-server`s
//! and three `engram serve --cluster` nodes on 127.0.0.1): each node keeps the
//! records of the shards placed on it alone; when a node stops, the nodes its
//! shards move to copy them in from their other replica, while writes go on, and
//! answer as before; when it comes back, the shards placed on it again are let go
//! by the nodes that took them over. Each node's snapshot holds its own shards, and
//! the stream is trimmed only once every shard is in one; a new node starts from a
//! snapshot that lacks some shards and copies in those placed on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::cluster::{cluster_status, node, three_nodes_with, vector_for, wait, DIM};
use crate::cluster_placement::{listed_shards, placement};
use crate::support::Server;

/// The nodes' extra flags: records that follow placement, named although the default.
pub(crate) const PLACED: &[&str] = &["--shard-records", "placed"];

pub(crate) fn doc(n: u64) -> Value {
    json!({"id": format!("r{n}"), "vector": vector_for(n), "text": format!("token{n} words")})
}

/// A vector, a keyword and a hybrid query's hits on collection `rec`, after `min_seq`.
fn answers(server: &Server, min_seq: u64) -> Vec<Vec<(String, f64)>> {
    answers_in(server, "rec", min_seq)
}

/// [`answers`] on collection `name`.
pub(crate) fn answers_in(server: &Server, name: &str, min_seq: u64) -> Vec<Vec<(String, f64)>> {
    [
        json!({"vector": vector_for(7), "k": 10, "min_seq": min_seq}),
        json!({"mode": "keyword", "text": "token9", "k": 3, "min_seq": min_seq}),
        json!({"mode": "hybrid", "vector": vector_for(4), "text": "token4 words", "k": 10, "min_seq": min_seq}),
    ]
    .into_iter()
    .map(|body| server.post(&format!("/collections/{name}/query"), body).hit_scores())
    .collect()
}

/// Waits until each live node (ids 1, 2, ... in order) keeps the records of, and
/// indexes, exactly the shards placed on it, and counts `documents` in all (when
/// given): collection `rec`, two replicas a shard.
fn records_follow(nodes: &[Option<&Server>], documents: Option<u64>, what: &str) {
    records_follow_in(nodes, ("rec", 2), documents, what)
}

/// [`records_follow`] for collection `name` with `replication` replicas a shard.
pub(crate) fn records_follow_in(
    nodes: &[Option<&Server>],
    (name, replication): (&str, usize),
    documents: Option<u64>,
    what: &str,
) {
    let mut seen = Vec::new();
    let placed = wait(&format!("placement settled {what}"), 60, || {
        let status = cluster_status(nodes.iter().flatten().next().unwrap());
        let p = placement(&status);
        if p != seen {
            eprintln!("placement {what}: {p:?}");
            seen = p.clone();
        }
        let live: Vec<u64> = (1..=nodes.len() as u64)
            .filter(|&id| nodes[id as usize - 1].is_some())
            .collect();
        let settled = p
            .iter()
            .all(|r| r.len() == replication && r.iter().all(|id| live.contains(id)))
            && live.iter().all(|id| {
                let nodes = status["nodes"].as_array().unwrap();
                nodes.iter().any(|n| n["node_id"].as_u64() == Some(*id))
            });
        settled.then_some(p)
    });
    for (i, server) in nodes.iter().enumerate() {
        let Some(server) = server else { continue };
        let id = i as u64 + 1;
        let want = listed_shards(&placed, id);
        let info = wait(
            &format!("node {id} keeps and indexes its shards {what}"),
            90,
            || {
                let info = server.get(&format!("/collections/{name}")).body;
                (info.get("record_shards").cloned() == want
                    && info.get("indexed_shards").cloned() == want)
                    .then_some(info)
            },
        );
        if let Some(documents) = documents {
            assert_eq!(info["documents"], documents, "node {id} {what}: {info}");
            assert_eq!(
                info["keyword_documents"], documents,
                "node {id} {what}: {info}"
            );
        }
    }
}

#[test]
fn records_follow_placement_and_are_copied_when_it_moves() {
    let test_started = Instant::now();
    let (nats, _dirs, mut nodes) = three_nodes_with(PLACED);
    let urls = nats.urls();
    let r = nodes[0].put(
        "/collections/rec",
        json!({"dimension": DIM, "distance": "cosine", "shards": 6, "replication": 2}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let docs: Vec<Value> = (0..60).map(doc).collect();
    let r = nodes[0].post("/collections/rec/documents", json!({ "documents": docs }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seq = r.body["seq"].as_u64().unwrap();
    records_follow(
        &[Some(&nodes[0]), Some(&nodes[1]), Some(&nodes[2])],
        Some(60),
        "at first",
    );
    let want = answers(&nodes[0], seq);
    assert_eq!(want[0][0].0, "r7");
    assert_eq!(want[1][0].0, "r9");
    for s in &nodes[1..] {
        assert_eq!(answers(s, seq), want);
    }
    snapshots_cover_every_shard(&nodes);

    // Node 3 stops: its shards move to nodes 1 and 2, which copy in what they lack
    // while writes go on through node 1.
    nodes[2].kill9();
    let stopped = Instant::now();
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, url) = (writing.clone(), nodes[0].url(""));
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut n = 60;
            while writing.load(Ordering::SeqCst) && n < 100 {
                let r = ureq::post(&format!("{url}/collections/rec/documents"))
                    .send_json(json!({ "documents": [doc(n)] }));
                if let Ok(r) = r {
                    let body: Value = r.into_json().unwrap();
                    acked.push((n, body["seq"].as_u64().unwrap()));
                }
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            acked
        })
    };
    records_follow(
        &[Some(&nodes[0]), Some(&nodes[1]), None],
        None,
        "after node 3 stopped",
    );
    writing.store(false, Ordering::SeqCst);
    let acked = writer.join().unwrap();
    eprintln!(
        "shards copied in after node 3 stopped: {:.1} s, {} writes acknowledged meanwhile",
        stopped.elapsed().as_secs_f64(),
        acked.len()
    );
    let last = acked.iter().map(|a| a.1).max().unwrap_or(seq);
    let total = 60 + acked.len() as u64;
    let after = answers(&nodes[0], last);
    assert_eq!(answers(&nodes[1], last), after, "nodes 1 and 2 agree");
    for s in &nodes[..2] {
        for (n, _) in &acked {
            let r = s.get(&format!("/collections/rec/documents/r{n}"));
            assert_eq!(r.status, 200, "r{n}: {:?}", r.body);
        }
        let info = s.get("/collections/rec").body;
        assert_eq!(info["documents"], total, "{info}");
        assert_eq!(info["keyword_documents"], total, "{info}");
    }

    // Node 3 comes back: its shards are placed on it again (it kept their records
    // and catches up on their writes), and nodes 1 and 2 let them go.
    nodes[2].start_again();
    records_follow(
        &[Some(&nodes[0]), Some(&nodes[1]), Some(&nodes[2])],
        Some(total),
        "after node 3 came back",
    );
    for s in &nodes {
        assert_eq!(answers(s, last), after);
    }

    // A fourth node, empty, starts from the newest snapshot (which lacks some shards),
    // takes its place and copies in the shards placed on it that the snapshot lacked.
    let dir4 = tempfile::tempdir().unwrap();
    nodes.push(node(dir4.path(), &urls, 4, PLACED));
    let all: Vec<Option<&Server>> = nodes.iter().map(Some).collect();
    records_follow(&all, Some(total), "with a fourth node");
    for s in &nodes {
        assert_eq!(answers(s, last), after);
    }

    for s in &mut nodes {
        s.kill9();
    }
    eprintln!("test took {:.1} s", test_started.elapsed().as_secs_f64());
}

/// Each node's snapshot holds the shards it keeps and lists the others; the stream is
/// trimmed only once every shard is in some snapshot (with two replicas a shard over
/// three nodes, after the second node's).
fn snapshots_cover_every_shard(nodes: &[Server]) {
    let placed = placement(&cluster_status(&nodes[0]));
    let mut taken = Vec::new();
    for (i, s) in nodes.iter().enumerate() {
        let r = s.post("/cluster/snapshot", json!({}));
        assert_eq!(r.status, 200, "node {}: {:?}", i + 1, r.body);
        let missing: Vec<String> = r.body["snapshot"]["missing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        let lacks: Vec<String> = (0..placed.len())
            .filter(|&sh| !placed[sh].contains(&(i as u64 + 1)))
            .map(|sh| format!("rec.{sh}"))
            .collect();
        assert_eq!(missing, lacks, "node {}: {:?}", i + 1, r.body);
        let purged = r.body["purged"].as_u64().unwrap();
        if i == 0 && !lacks.is_empty() {
            assert_eq!(purged, 0, "the first snapshot lacks shards no other holds");
        }
        taken.push(purged);
    }
    eprintln!("messages purged by each node's snapshot: {taken:?}");
    assert!(taken[1] > 0, "every shard in a snapshot after the second");
    let listed = nodes[0].get("/cluster/snapshots");
    assert_eq!(listed.status, 200, "{:?}", listed.body);
}
