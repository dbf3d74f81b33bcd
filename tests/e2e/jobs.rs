//! The job framework across a crash: a context build, an audit and a promotion are
//! started, the server is killed with SIGKILL while all three run, and after the
//! restart each reads "interrupted" (none stays "running" forever); asking for the
//! same promotion again resumes it under the same id.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{quoref, Server};

const KEYS: &str = "admin-key-1:admin";
const ADMIN: Option<&str> = Some("admin-key-1");

fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    server.call_ok(method, path, body, ADMIN)
}

fn insert(server: &Server, collection: &str, docs: &[Value]) {
    for batch in docs.chunks(32) {
        call(
            server,
            "POST",
            &format!("/collections/{collection}/documents"),
            Some(json!({ "documents": batch })),
        );
    }
}

#[test]
fn jobs_killed_with_the_server_read_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--api-keys", KEYS], &[]);
    let passages = quoref();
    let docs: Vec<Value> = passages[..120]
        .iter()
        .map(|p| json!({"id": p["id"], "text": p["text"]}))
        .collect();

    // A contextual collection whose first context waits for a recontextualize.
    call(
        &server,
        "PUT",
        "/collections/ctx",
        Some(json!({"embedder": "contextual", "context": {"min_documents": 100000}})),
    );
    insert(&server, "ctx", &docs);
    call(&server, "PUT", "/collections/facts", Some(json!({})));
    insert(&server, "facts", &docs[..3]);

    let info = call(&server, "POST", "/collections/ctx/recontextualize", None);
    let context = info["corpus_context"]["job"].clone();
    assert_eq!(context["state"], "running", "{info}");
    let audit = call(
        &server,
        "POST",
        "/collections/facts/audit",
        Some(json!({"sample": 3, "steps": 200})),
    );
    assert_eq!(audit["state"], "running", "{audit}");
    let promote_body =
        json!({"all": true, "strategies": ["cloze"], "steps": 200, "rank": 4, "force": true});
    let promotion = call(
        &server,
        "POST",
        "/collections/facts/promote",
        Some(promote_body.clone()),
    );
    assert_eq!(promotion["state"], "running", "{promotion}");

    // All three are still running when the process dies.
    let info = call(&server, "GET", "/collections/ctx", None);
    assert_eq!(info["corpus_context"]["job"]["state"], "running", "{info}");
    server.kill9();
    server.restart();

    let info = call(&server, "GET", "/collections/ctx", None);
    let job = &info["corpus_context"]["job"];
    assert_eq!(job["id"], context["id"], "{info}");
    assert_eq!(job["state"], "interrupted", "{info}");
    assert_eq!(
        info["corpus_context"]["version"], 0,
        "no half-built context: {info}"
    );
    let id = audit["id"].as_str().unwrap();
    let status = call(
        &server,
        "GET",
        &format!("/collections/facts/audits/{id}/status"),
        None,
    );
    assert_eq!(status["state"], "interrupted", "{status}");
    let id = promotion["id"].as_str().unwrap();
    let status = call(
        &server,
        "GET",
        &format!("/collections/facts/promotions/{id}"),
        None,
    );
    assert_eq!(status["state"], "interrupted", "{status}");

    // The same promotion asked for again resumes under its id; a new context build
    // runs to the end.
    let resumed = call(
        &server,
        "POST",
        "/collections/facts/promote",
        Some(promote_body),
    );
    assert_eq!(resumed["id"], promotion["id"], "{resumed}");
    assert_eq!(resumed["state"], "running", "{resumed}");
    call(&server, "POST", "/collections/ctx/recontextualize", None);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let info = call(&server, "GET", "/collections/ctx", None);
        let job = &info["corpus_context"]["job"];
        if job["state"] == "done" {
            assert_eq!(info["corpus_context"]["version"], 1, "{info}");
            break;
        }
        assert_eq!(job["state"], "running", "{info}");
        assert!(
            Instant::now() < deadline,
            "the context never arrived: {info}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
