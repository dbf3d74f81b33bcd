//! A contextual collection in cluster mode end to end: three real `nats-server`
//! processes and three `engram serve --cluster` nodes on 127.0.0.1, the real MiniLM.
//! The write that reaches `min_documents` makes every node ask for the first corpus
//! context: it is queued once and fitted on one node, and every node installs it
//! from the replicated log. A recontextualization asked of a third node does the
//! same for version 2. Every node then reports the same context version and
//! answers the same top 5 for text queries (read with `min_seq`), and a write made
//! after the install is found on every node. Every process is stopped by its pid at
//! the end.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{runs, three_nodes, wait};
use crate::support::{quoref, Server};

const DOCS: usize = 40;

fn info(server: &Server) -> Value {
    let r = server.get("/collections/ctxc");
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// Waits until `server` reports context `version` installed and its build done;
/// the build's status (as the work queue lists it).
fn context_done(server: &Server, version: u64) -> Value {
    wait(&format!("context {version}"), 300, || {
        let info = info(server);
        let ctx = &info["corpus_context"];
        assert_ne!(ctx["job"]["state"], "failed", "{info}");
        (ctx["version"] == version && ctx["job"]["state"] == "done").then(|| ctx["job"].clone())
    })
}

/// The ids and scores of the top 5 for `text` on `server`, once it applied `min_seq`.
fn top5(server: &Server, text: &str, min_seq: u64) -> Vec<(String, f64)> {
    let body = json!({"text": text, "k": 5, "min_seq": min_seq, "include": []});
    server
        .post_while_unavailable("/collections/ctxc/query", body, Duration::from_secs(60))
        .hit_scores()
}

/// Every node answers `queries` with the same top 5 (ids in order, scores within
/// float noise) once it applied `min_seq`; returns node 1's answers.
fn same_answers(nodes: &[Server], queries: &[String], min_seq: u64) -> Vec<Vec<(String, f64)>> {
    let first: Vec<_> = queries
        .iter()
        .map(|q| top5(&nodes[0], q, min_seq))
        .collect();
    for (i, s) in nodes.iter().enumerate().skip(1) {
        for (q, want) in queries.iter().zip(&first) {
            let got = top5(s, q, min_seq);
            let ids = |l: &[(String, f64)]| l.iter().map(|h| h.0.clone()).collect::<Vec<_>>();
            assert_eq!(
                ids(&got),
                ids(want),
                "node {} answers {q:?} otherwise",
                i + 1
            );
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g.1 - w.1).abs() < 1e-4,
                    "node {}: {got:?} vs {want:?}",
                    i + 1
                );
            }
        }
    }
    first
}

#[test]
fn a_contextual_collection_builds_once_and_every_node_installs_the_same_context() {
    let test_started = Instant::now();
    let (nats, _dirs, mut nodes) = three_nodes();
    let r = nodes[0].put(
        "/collections/ctxc",
        json!({"embedder": "contextual", "context": {"min_documents": DOCS / 2}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["corpus_context"]["version"], 0);
    let passages = quoref();
    let docs: Vec<Value> = passages[..DOCS]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let text: String = p["text"].as_str().unwrap().chars().take(240).collect();
            json!({"id": format!("doc-{i}"), "text": text})
        })
        .collect();
    let queries: Vec<String> = [3, 11, 26, 38]
        .iter()
        .map(|&i| {
            passages[i]["questions"][0]["question"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    // Half the documents through node 1 reach min_documents: every node asks for the
    // first context as it applies that write; one node builds it.
    let r = nodes[0].post(
        "/collections/ctxc/documents",
        json!({ "documents": &docs[..DOCS / 2] }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let first = context_done(&nodes[1], 1);
    assert_eq!(runs(&first).len(), 1, "built once: {first}");
    assert_eq!(first["version"], 1, "{first}");
    let seq = first["seq"].as_u64().expect("the context's log sequence");
    same_answers(&nodes, &queries, seq);

    // The other half through node 2, then a recontextualization asked of node 3.
    let r = nodes[1].post(
        "/collections/ctxc/documents",
        json!({ "documents": &docs[DOCS / 2..] }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let written = r.body["seq"].as_u64().unwrap();
    // Recontextualized once node 3 holds every document (the fit reads its copy).
    top5(&nodes[2], &queries[0], written);
    let r = nodes[2].post("/collections/ctxc/recontextualize", json!({}));
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(
        r.body["corpus_context"]["job"]["state"], "running",
        "{:?}",
        r.body
    );
    let second = context_done(&nodes[2], 2);
    assert_eq!(runs(&second).len(), 1, "built once: {second}");
    let seq = second["seq"].as_u64().expect("the context's log sequence");
    let answers = same_answers(&nodes, &queries, seq);
    let vectors = info(&nodes[0])["vectors"].clone();
    assert!(vectors.as_u64().unwrap() >= DOCS as u64, "{vectors}");
    for (i, s) in nodes.iter().enumerate() {
        let info = info(s);
        let ctx = &info["corpus_context"];
        assert_eq!(ctx["version"], 2, "node {}: {info}", i + 1);
        assert_eq!(ctx["job"]["id"], second["id"], "node {}: {info}", i + 1);
        assert_eq!(info["documents"], DOCS, "node {}: {info}", i + 1);
        // A document of more than one window has a vector per window.
        assert_eq!(info["vectors"], vectors, "node {}: {info}", i + 1);
    }
    // The queries find their passages (the context serves, not only agrees).
    let found = [3, 11, 26, 38]
        .iter()
        .zip(&answers)
        .filter(|(i, a)| a.iter().any(|h| h.0 == format!("doc-{i}")))
        .count();
    eprintln!("queries whose passage is in the top 5: {found} of 4");
    assert!(found >= 2, "{answers:?}");

    // A write after the install is embedded under the context and found everywhere.
    let note = "The lighthouse keeper on Skye counted puffins at dawn every morning.";
    let r = nodes[1].post(
        "/collections/ctxc/documents",
        json!({"documents": [{"id": "late", "text": note}]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seq = r.body["seq"].as_u64().unwrap();
    let late = same_answers(&nodes, &["lighthouse keeper counting puffins".into()], seq);
    assert_eq!(late[0][0].0, "late", "{late:?}");

    for s in &mut nodes {
        s.kill9();
    }
    drop(nats);
    eprintln!("test took {:.1} s", test_started.elapsed().as_secs_f64());
}
