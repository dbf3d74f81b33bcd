//! Bad input gets a clear 4xx in the one error shape and changes nothing.

use serde_json::{json, Value};

use crate::support::Server;

/// A snapshot of everything observable about the store.
fn state(s: &Server) -> Value {
    let mut cols = s.get("/collections").body;
    // Only the data matters, not timings.
    for c in cols["collections"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("note");
    }
    let docs = s.get("/collections/v/documents/keep").body;
    let hits = s
        .post(
            "/collections/v/query",
            json!({"vector": [1.0, 0.0, 0.0], "k": 5}),
        )
        .body["hits"]
        .clone();
    json!({"collections": cols, "doc": docs, "hits": hits})
}

fn assert_error(r: &crate::support::Reply, status: u16, code: &str, mentions: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{:?}", r.body);
    let msg = r.error_message();
    assert!(
        msg.to_lowercase().contains(&mentions.to_lowercase()),
        "message {msg:?} should mention {mentions:?}"
    );
}

#[test]
fn bad_input_is_refused_and_the_store_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let keys = "reader-key-1:read,writer-key-1:write,admin-key-1:admin";
    let s = Server::start(dir.path(), &["--lazy-models"], &[]);
    assert_eq!(s.put("/collections/v", json!({"dimension": 3})).status, 200);
    let ok = s.post(
        "/collections/v/documents",
        json!({"documents": [{"id": "keep", "vector": [1.0, 0.0, 0.0], "text": "héllo wörld 你好 🎉", "metadata": {"a": 1}}]}),
    );
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let before = state(&s);
    assert_eq!(
        before["doc"]["text"], "héllo wörld 你好 🎉",
        "unicode round-trips"
    );

    let vec3 = |id: &str| json!({"id": id, "vector": [0.0, 1.0, 0.0]});
    let cases: Vec<(&str, crate::support::Reply, u16, &str, &str)> = vec![
        ("wrong dimension",
         s.post("/collections/v/documents", json!({"documents": [vec3("x1"), {"id": "x2", "vector": [1.0, 2.0]}]})),
         409, "wrong_dimension", "expects 3"),
        ("wrong query dimension",
         s.post("/collections/v/query", json!({"vector": [1.0], "k": 1})),
         409, "wrong_dimension", "expects 3"),
        ("empty text",
         s.post("/collections/v/documents", json!({"documents": [vec3("x3"), {"id": "x4", "vector": [0.0, 0.0, 1.0], "text": "   "}]})),
         400, "invalid_input", "empty"),
        ("invalid JSON",
         s.raw("POST", "/collections/v/documents", b"{\"documents\": [", "application/json"),
         400, "invalid_json", "not valid JSON"),
        ("wrong JSON shape",
         s.post("/collections/v/documents", json!({"docs": []})),
         400, "invalid_json", "docs"),
        ("not JSON content type",
         s.raw("POST", "/collections/v/documents", b"hello", "text/plain"),
         415, "unsupported_media_type", "Content-Type"),
        ("unknown collection",
         s.post("/collections/nope/documents", json!({"documents": [vec3("x5")]})),
         404, "collection_not_found", "create it first"),
        ("10 MB body",
         s.post_oversized("/collections/v/documents", 10 * 1024 * 1024),
         413, "payload_too_large", "smaller"),
        ("k = 0",
         s.post("/collections/v/query", json!({"vector": [1.0, 0.0, 0.0], "k": 0})),
         400, "invalid_input", "at least 1"),
        ("k = 100000",
         s.post("/collections/v/query", json!({"vector": [1.0, 0.0, 0.0], "k": 100000})),
         400, "limit_exceeded", "limit is 1000"),
        ("control characters",
         s.post("/collections/v/documents", json!({"documents": [{"id": "x6", "vector": [0.0, 1.0, 0.0], "text": "bad\u{0007}bell"}]})),
         400, "invalid_input", "U+0007"),
        ("NaN-free vectors only",
         s.raw("POST", "/collections/v/documents", br#"{"documents":[{"id":"x7","vector":[1e39,0,0]}]}"#, "application/json"),
         400, "invalid_input", "infinity"),
        ("zero vector under cosine",
         s.post("/collections/v/documents", json!({"documents": [{"id": "x8", "vector": [0.0, 0.0, 0.0]}]})),
         400, "invalid_input", "zero vector"),
        ("text query on a vector collection",
         s.post("/collections/v/query", json!({"text": "hello", "k": 1})),
         409, "collection_conflict", "query it with a vector"),
        ("keyword mode with a vector",
         s.post("/collections/v/query", json!({"mode": "keyword", "text": "hello", "vector": [1.0, 0.0, 0.0]})),
         400, "invalid_input", "keyword mode searches text only"),
        ("keyword mode without text",
         s.post("/collections/v/query", json!({"mode": "keyword"})),
         400, "invalid_input", "keyword mode needs 'text'"),
        ("hybrid mode without text",
         s.post("/collections/v/query", json!({"mode": "hybrid", "vector": [1.0, 0.0, 0.0]})),
         400, "invalid_input", "hybrid mode needs 'text'"),
        ("hybrid mode on an own-vector collection without a vector",
         s.post("/collections/v/query", json!({"mode": "hybrid", "text": "hello"})),
         409, "collection_conflict", "needs 'vector'"),
        ("fusion outside hybrid mode",
         s.post("/collections/v/query", json!({"vector": [1.0, 0.0, 0.0], "fusion": {"method": "rrf"}})),
         400, "invalid_input", "fusion only applies to mode 'hybrid'"),
        ("fusion weight out of range",
         s.post("/collections/v/query", json!({"mode": "hybrid", "text": "hi", "vector": [1.0, 0.0, 0.0], "fusion": {"method": "weighted", "vector_weight": 2}})),
         400, "invalid_input", "[0, 1]"),
        ("unknown fusion method",
         s.post("/collections/v/query", json!({"mode": "hybrid", "text": "hi", "vector": [1.0, 0.0, 0.0], "fusion": {"method": "max"}})),
         400, "invalid_json", "weighted"),
        ("unknown mode",
         s.post("/collections/v/query", json!({"mode": "semantic", "text": "hi"})),
         400, "invalid_json", "hybrid"),
        ("bad filter",
         s.post("/collections/v/query", json!({"vector": [1.0, 0.0, 0.0], "filter": {"key": "a", "like": 1}})),
         400, "invalid_filter", "a filter is"),
        ("bad collection name",
         s.put("/collections/bad%20name", json!({"dimension": 3})),
         400, "invalid_collection_name", "A-Z"),
        ("conflicting re-create",
         s.put("/collections/v", json!({"dimension": 4})),
         409, "collection_exists", "delete it first"),
        ("unsupported model",
         s.post("/embed", json!({"texts": ["hi"], "model": "gpt-9"})),
         400, "unsupported_model", "gpt-9"),
        ("empty batch",
         s.post("/collections/v/documents", json!({"documents": []})),
         400, "invalid_input", "empty"),
        ("unknown document",
         s.get("/collections/v/documents/nope"),
         404, "document_not_found", "nope"),
        ("unknown endpoint",
         s.get("/colections"),
         404, "not_found", "openapi"),
        ("method not allowed",
         s.delete("/healthz"),
         405, "method_not_allowed", "DELETE is not allowed"),
        ("version that is not a number",
         s.call("POST", "/collections/v/adapters/latest/activate", None, None),
         400, "invalid_path", "latest"),
        ("query string of the wrong type",
         s.get("/collections/v/clusters?k=many"),
         400, "invalid_query", "k"),
        ("10 MB body to an endpoint with optional settings",
         s.post_oversized("/collections/v/audit", 10 * 1024 * 1024),
         413, "payload_too_large", "smaller"),
        ("wrong JSON type",
         s.post("/collections/v/query", json!({"vector": "up", "k": 1})),
         400, "invalid_json", "vector"),
    ];
    for (name, reply, status, code, mentions) in &cases {
        eprintln!("case: {name}");
        assert_error(reply, *status, code, mentions);
    }
    assert_eq!(state(&s), before, "a refused request changed the store");
    drop(s);

    // Keys and scopes.
    let s = Server::start(dir.path(), &["--lazy-models", "--api-keys", keys], &[]);
    let query = json!({"vector": [1.0, 0.0, 0.0], "k": 1});
    let r = s.call("POST", "/collections/v/query", Some(query.clone()), None);
    assert_error(&r, 401, "unauthorized", "Authorization");
    let r = s.call(
        "POST",
        "/collections/v/query",
        Some(query.clone()),
        Some("wrong-key-123"),
    );
    assert_error(&r, 401, "unauthorized", "unknown");
    assert_eq!(
        s.call(
            "POST",
            "/collections/v/query",
            Some(query),
            Some("reader-key-1")
        )
        .status,
        200
    );
    let r = s.call(
        "POST",
        "/collections/v/query",
        Some(json!({"vector": [1.0, 0.0, 0.0], "include": ["vector"]})),
        Some("reader-key-1"),
    );
    assert_error(&r, 403, "forbidden", "write");
    let r = s.call(
        "POST",
        "/collections/v/documents",
        Some(json!({"documents": [vec3("x9")]})),
        Some("reader-key-1"),
    );
    assert_error(&r, 403, "forbidden", "write");
    let r = s.call("DELETE", "/collections/v", None, Some("writer-key-1"));
    assert_error(&r, 403, "forbidden", "admin");
    let r = s.call(
        "POST",
        "/collections/v/query",
        Some(json!({"vector": [1.0, 0.0, 0.0], "include": ["vector"]})),
        Some("writer-key-1"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body["hits"][0]["vector"], json!([1.0, 0.0, 0.0]));
    let after = s
        .call(
            "POST",
            "/collections/v/query",
            Some(json!({"vector": [1.0, 0.0, 0.0], "k": 5})),
            Some("admin-key-1"),
        )
        .body["hits"]
        .clone();
    assert_eq!(after, before["hits"], "a refused request changed the store");
}
