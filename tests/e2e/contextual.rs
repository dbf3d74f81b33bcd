//! A contextual collection end to end with the real MiniLM (the default, learned
//! variant, and a training-free one by name): stage one alone until
//! enough documents arrive, then a corpus context is built in the background and
//! swapped in; `engram collections recontextualize` rebuilds it with progress; the
//! context and its vectors survive a restart.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{quoref, Server};

/// Polls the collection until its context job is done; returns the final info.
fn wait_for_context(server: &Server, version: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let info = server.get("/collections/cards").body;
        let ctx = &info["corpus_context"];
        assert_ne!(ctx["job"]["state"], "failed", "{info}");
        if ctx["version"] == version && ctx["job"]["state"] == "done" {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "context {version} never arrived: {info}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Share of questions whose passage is among the top 10 hits.
fn hit_rate(server: &Server, passages: &[Value]) -> f64 {
    let (mut found, mut total) = (0, 0);
    for p in passages {
        for q in p["questions"].as_array().unwrap() {
            let r = server.post(
                "/collections/cards/query",
                json!({"text": q["question"], "k": 10, "include": []}),
            );
            assert_eq!(r.status, 200, "{:?}", r.body);
            total += 1;
            found += r.body["hits"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["id"] == p["id"]) as usize;
        }
    }
    found as f64 / total as f64
}

fn insert(server: &Server, passages: &[Value]) {
    for batch in passages.chunks(16) {
        let docs: Vec<_> = batch
            .iter()
            .map(|p| json!({"id": p["id"], "text": p["text"]}))
            .collect();
        let r = server.post("/collections/cards/documents", json!({ "documents": docs }));
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}

#[test]
fn contextual_collection_builds_swaps_and_keeps_its_context() {
    let data = quoref();
    let passages = &data[..60];
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &[]);
    let r = server.put(
        "/collections/cards",
        json!({"embedder": "contextual", "context": {"min_documents": 30}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["embedder"], "contextual-learned");
    assert_eq!(r.body["corpus_context"]["version"], 0);

    // Reaching min_documents starts the first build by itself.
    insert(&server, &passages[..30]);
    let info = wait_for_context(&server, 1);
    assert_eq!(info["corpus_context"]["sampled_documents"], 30);
    // Later writes are embedded with context 1 directly.
    insert(&server, &passages[30..]);
    let before = hit_rate(&server, passages);

    // The admin command rebuilds from all 60 documents, following the progress.
    let out = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(["collections", "recontextualize", "cards"])
        .env("ENGRAM_URL", server.url(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("corpus context version 2"));
    let info = wait_for_context(&server, 2);
    assert_eq!(info["corpus_context"]["sampled_documents"], 60);
    // Each build checked itself against stage one and says what it decided.
    let check = info["corpus_context"]["self_check"].clone();
    assert!(check["stage_one"].is_f64(), "{info}");
    assert!(!check["variants"].as_array().unwrap().is_empty(), "{info}");
    assert!(
        check["decision"].as_str().unwrap().contains("nDCG@10"),
        "{info}"
    );
    let live = match check["chosen"].as_str() {
        Some(v) => v.to_string(),
        None => "stage-one".to_string(),
    };
    assert_eq!(info["corpus_context"]["variant"], live.as_str(), "{info}");
    assert_eq!(info["documents"], 60);
    let after = hit_rate(&server, passages);
    eprintln!("hit@10 with context 1: {before:.3}, context 2: {after:.3}");
    assert!(after >= 0.85, "hit@10 {after}");

    // The context and the vectors made with it are what a restart finds.
    let top = server.post(
        "/collections/cards/query",
        json!({"text": passages[5]["questions"][0]["question"], "k": 3}),
    );
    server.restart();
    let info = server.get("/collections/cards").body;
    assert_eq!(info["corpus_context"]["version"], 2, "{info}");
    assert_eq!(info["corpus_context"]["self_check"], check, "{info}");
    let again = server.post(
        "/collections/cards/query",
        json!({"text": passages[5]["questions"][0]["question"], "k": 3}),
    );
    assert_eq!(top.body["hits"], again.body["hits"]);

    // Only contextual collections can be recontextualized.
    assert_eq!(server.put("/collections/plain", json!({})).status, 200);
    let r = server.post("/collections/plain/recontextualize", json!({}));
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.error_message().contains("contextual"));
}

#[test]
fn a_training_free_variant_is_chosen_by_name() {
    let data = quoref();
    let passages = &data[60..100];
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    // An unknown variant is refused with the names that exist.
    let r = server.put(
        "/collections/cards",
        json!({"embedder": "contextual-clever"}),
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    let message = r.error_message().to_string();
    assert!(message.contains("contextual-learned"), "{message}");

    let r = server.put(
        "/collections/cards",
        json!({"embedder": "contextual-idf-whiten", "context": {"min_documents": 40}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["embedder"], "contextual-idf-whiten");
    insert(&server, passages);
    let info = wait_for_context(&server, 1);
    assert_eq!(info["corpus_context"]["sampled_documents"], 40);
    let rate = hit_rate(&server, passages);
    eprintln!("contextual-idf-whiten hit@10: {rate:.3}");
    assert!(rate >= 0.85, "hit@10 {rate}");
}
