//! Questions from traffic: every question a collection is asked (text queries,
//! answers, OpenAI chat) is logged with the documents it retrieved, bounded to the
//! collection's `question_log_size`, kept across a restart, shown per cluster (to
//! admin callers) and by `engram hot`, gone with the collection, and never kept for a
//! collection created with `"log_questions": false`. Real MiniLM and SmolLM2.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::Server;

const KEYS: &str = "reader-key-1:read,admin-key-1:admin";
const ADMIN: Option<&str> = Some("admin-key-1");
const READER: Option<&str> = Some("reader-key-1");

fn docs() -> Value {
    let mut docs = Vec::new();
    for i in 0..4 {
        docs.push(json!({"id": format!("bread-{i}"),
            "text": format!("Sourdough bread number {i} rises overnight from a starter of flour and water.")}));
        docs.push(json!({"id": format!("comet-{i}"),
            "text": format!("Comet number {i} has an icy nucleus and a tail pointing away from the sun.")}));
    }
    json!({ "documents": docs })
}

fn make(server: &Server, name: &str, settings: Value) {
    server.call_ok(
        "PUT",
        &format!("/collections/{name}"),
        Some(settings),
        ADMIN,
    );
    server.call_ok(
        "POST",
        &format!("/collections/{name}/documents"),
        Some(docs()),
        ADMIN,
    );
}

fn query(server: &Server, name: &str, text: &str) {
    server.call_ok(
        "POST",
        &format!("/collections/{name}/query"),
        Some(json!({"text": text, "k": 2})),
        READER,
    );
}

/// Every cluster's logged questions: (count, sample texts), over `k=2` clusters.
fn logged(server: &Server, name: &str, key: Option<&str>) -> (u64, Vec<String>) {
    let r = server.call_ok(
        "GET",
        &format!("/collections/{name}/clusters?k=2&top=20"),
        None,
        key,
    );
    let clusters = r["clusters"].as_array().unwrap();
    let count = clusters
        .iter()
        .map(|c| c["questions"].as_u64().unwrap())
        .sum();
    let texts = clusters
        .iter()
        .flat_map(|c| c["sample_questions"].as_array().unwrap().clone())
        .map(|q| {
            assert!(q["at"].as_u64().unwrap() > 1_700_000_000, "{q}");
            assert!(!q["ids"].as_array().unwrap().is_empty(), "{q}");
            q["question"].as_str().unwrap().to_string()
        })
        .collect();
    (count, texts)
}

#[test]
fn questions_are_logged_bounded_shown_and_deleted_with_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--api-keys", KEYS], &[]);
    let r = server.call(
        "PUT",
        "/collections/bad",
        Some(json!({"question_log_size": 0})),
        ADMIN,
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.error_message().contains("log_questions"));
    make(&server, "kb", json!({"question_log_size": 5}));
    let info = server.call_ok("GET", "/collections/kb", None, READER);
    assert_eq!(
        (
            info["log_questions"].clone(),
            info["question_log_size"].clone()
        ),
        (json!(true), json!(5))
    );
    make(&server, "quiet", json!({"log_questions": false}));

    for q in [
        "how does sourdough rise",
        "what is a comet tail made of",
        "old 1",
        "old 2",
    ] {
        query(&server, "kb", q);
        query(&server, "quiet", q);
    }
    let r = server.call_ok(
        "POST",
        "/collections/kb/answer",
        Some(json!({"question": "what is in a bread starter?", "mode": "rag", "max_tokens": 2})),
        READER,
    );
    assert_eq!(
        r["sources"][0]["id"].as_str().unwrap().split('-').next(),
        Some("bread")
    );
    let chat = json!({"model": "engram/kb/rag", "max_tokens": 2,
        "messages": [{"role": "user", "content": "which way does a comet's tail point?"}]});
    server.call_ok("POST", "/v1/chat/completions", Some(chat.clone()), READER);
    let mut quiet_chat = chat.clone();
    quiet_chat["model"] = json!("engram/quiet/rag");
    server.call_ok("POST", "/v1/chat/completions", Some(quiet_chat), READER);
    // Written out at most every 2 s: one more question after that flushes them.
    std::thread::sleep(Duration::from_millis(2100));
    query(&server, "kb", "does bread need water");
    query(&server, "quiet", "does bread need water");

    let check = |server: &Server| {
        let (count, texts) = logged(server, "kb", ADMIN);
        assert_eq!(count, 5, "the newest 5 of 7 are kept: {texts:?}");
        for asked in [
            "does bread need water",
            "which way does a comet's tail point?",
            "what is in a bread starter?",
        ] {
            assert!(texts.iter().any(|t| t == asked), "{asked} not in {texts:?}");
        }
        assert!(
            !texts.iter().any(|t| t.starts_with("how does")),
            "{texts:?}"
        );
        let (_, seen) = logged(server, "kb", READER);
        assert!(seen.is_empty(), "only admins see questions: {seen:?}");
        assert_eq!(
            logged(server, "quiet", ADMIN),
            (0, vec![]),
            "log_questions: false"
        );
    };
    check(&server);
    server.restart();
    check(&server);

    let text = server.cli(&["hot", "kb", "--k", "2", "--top", "5"], ADMIN);
    assert!(
        text.contains("questions asked of it") && text.contains("what is in a bread starter?"),
        "{text}"
    );

    // Gone with the collection: a new one of the same name starts with none, also
    // after a restart (nothing was left in the deleted key range).
    server.call_ok("DELETE", "/collections/kb", None, ADMIN);
    make(&server, "kb", json!({}));
    assert_eq!(logged(&server, "kb", ADMIN).0, 0);
    server.restart();
    assert_eq!(logged(&server, "kb", ADMIN).0, 0);
}
