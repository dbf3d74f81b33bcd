//! What a web page, a read key or an anonymous scraper can and cannot do:
//! cross-site and DNS-rebinding requests are refused before they change
//! anything, `/metrics` shows collections only to admins, and scores are as
//! exact as the key says.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Reply, Server};

/// One request with exactly the given headers (Host included), over a fresh
/// connection, since ordinary clients set Host and Content-Type themselves.
fn send(s: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{}\r\n", s.port));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).trim();
    Reply {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    }
}

fn assert_refused(r: &Reply, status: u16, code: &str, mentions: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{:?}", r.body);
    let message = r.error_message();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

/// Collection names and document counts: what a refused request must not change.
fn snapshot(s: &Server) -> Value {
    let cols = s.get("/collections").body["collections"].clone();
    let names: Vec<(Value, Value)> = cols
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["config"]["name"].clone(), c["documents"].clone()))
        .collect();
    json!(names)
}

#[test]
fn cross_site_and_rebinding_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engram.toml");
    std::fs::write(
        &config,
        "allowed_origins = [\"https://app.example\"]\nallowed_hosts = [\"engram.lan\"]\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let s = Server::start(
        &dir.path().join("db"),
        &["--lazy-models", "--config", config],
        &[],
    );
    assert_eq!(s.put("/collections/v", json!({"dimension": 3})).status, 200);
    assert_eq!(
        s.put("/collections/gone", json!({"dimension": 3})).status,
        200
    );
    let before = snapshot(&s);

    let doc = br#"{"documents": [{"id": "d", "vector": [1, 0, 0]}]}"#;
    let json_type = ("Content-Type", "application/json");
    // What a page's form or no-cors fetch can send without a preflight.
    for simple in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let ct = ("Content-Type", simple);
        for (method, path) in [
            ("POST", "/collections/v/audit"),
            ("POST", "/collections/v/promote"),
            ("POST", "/collections/v/recontextualize"),
            ("POST", "/collections/v/adapters/rollback"),
            ("POST", "/collections/v/adapters/1/activate"),
            ("POST", "/collections/v/documents"),
            ("PUT", "/collections/new"),
            ("DELETE", "/collections/gone"),
        ] {
            eprintln!("{simple}: {method} {path}");
            let r = send(&s, method, path, &[ct], b"{}");
            assert_refused(&r, 415, "unsupported_media_type", "application/json");
            let r = send(&s, method, path, &[ct], b"");
            assert_refused(&r, 415, "unsupported_media_type", "application/json");
        }
    }
    let r = send(&s, "POST", "/collections/v/documents", &[], doc);
    assert_refused(&r, 415, "unsupported_media_type", "without a Content-Type");

    // Foreign origins, on reads and writes alike.
    for origin in ["http://evil.example", "null", "http://localhost:1"] {
        let r = send(
            &s,
            "POST",
            "/collections/v/documents",
            &[json_type, ("Origin", origin)],
            doc,
        );
        assert_refused(&r, 403, "origin_not_allowed", "allowed_origins");
        let r = send(&s, "GET", "/collections", &[("Origin", origin)], b"");
        assert_refused(&r, 403, "origin_not_allowed", "allowed_origins");
    }
    // DNS rebinding: a foreign name resolving to 127.0.0.1.
    let evil = format!("evil.example:{}", s.port);
    let r = send(&s, "GET", "/collections", &[("Host", &evil)], b"");
    assert_refused(&r, 421, "host_not_allowed", "allowed_hosts");
    let r = send(&s, "DELETE", "/collections/gone", &[("Host", &evil)], b"");
    assert_refused(&r, 421, "host_not_allowed", "DNS rebinding");
    assert_eq!(snapshot(&s), before, "a refused request changed the store");

    // The server's own origins and names, and the configured ones, pass.
    let own = format!("http://localhost:{}", s.port);
    let lan = format!("engram.lan:{}", s.port);
    for headers in [
        vec![json_type, ("Origin", own.as_str())],
        vec![json_type, ("Origin", "https://app.example")],
        vec![json_type, ("Host", lan.as_str())],
        vec![
            ("Content-Type", "application/json; charset=utf-8"),
            ("Host", "localhost"),
        ],
    ] {
        let r = send(&s, "POST", "/collections/v/documents", &headers, doc);
        assert_eq!(r.status, 200, "{headers:?}: {:?}", r.body);
    }
    // A route that needs no body takes none, without a Content-Type.
    let r = send(&s, "DELETE", "/collections/gone", &[], b"");
    assert_eq!(r.status, 204, "{:?}", r.body);

    // The spec lists the refusals.
    let spec = s.get("/openapi.json").body;
    let audit = &spec["paths"]["/collections/{name}/audit"]["post"]["responses"];
    for code in ["403", "415", "421"] {
        assert!(audit[code].is_object(), "{code}: {audit}");
    }
    assert!(spec["paths"]["/healthz"]["get"]["responses"]["415"].is_null());
}

#[test]
fn metrics_and_scores_show_what_the_key_allows() {
    let dir = tempfile::tempdir().unwrap();
    let keys =
        "admin-key-1:admin,reader-key-1:read,rounded-key:read:rounded,rankonly-key:read:none";
    let s = Server::start(dir.path(), &["--lazy-models", "--api-keys", keys], &[]);
    let admin = Some("admin-key-1");
    let r = s.call(
        "PUT",
        "/collections/secret-plans",
        Some(json!({"dimension": 3})),
        admin,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let docs = json!({"documents": [
        {"id": "a", "vector": [0.123_456, 0.5, 0.8]},
        {"id": "b", "vector": [0.9, 0.1, 0.2]},
    ]});
    let r = s.call(
        "POST",
        "/collections/secret-plans/documents",
        Some(docs),
        admin,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Invented methods all count as one label.
    for method in ["FOO", "BAR", "BAZ"] {
        assert_eq!(send(&s, method, "/healthz", &[], b"").status, 405);
    }
    let metrics = |key: Option<&str>| s.call("GET", "/metrics", None, key);
    for key in [None, Some("reader-key-1")] {
        let r = metrics(key);
        assert_eq!(r.status, 200);
        let text = r.body.as_str().unwrap();
        assert!(text.contains("engram_http_requests_total"), "{text}");
        assert!(
            !text.contains("secret-plans"),
            "{key:?} sees collection names: {text}"
        );
    }
    let text = metrics(admin).body.as_str().unwrap().to_string();
    assert!(
        text.contains("engram_collection_documents{collection=\"secret-plans\"} 2"),
        "{text}"
    );
    assert!(text.contains("method=\"OTHER\""), "{text}");
    assert!(!text.contains("FOO") && !text.contains("BAR"), "{text}");
    assert_refused(
        &metrics(Some("wrong-key-123")),
        401,
        "unauthorized",
        "unknown",
    );

    // Probing with a basis vector: exact, rounded, or no scores at all.
    // The scored list `list` of a POST to `path`, as `key` sees it.
    let scored = |path: &str, body: &Value, list: &str, key: &str| {
        let r = s.call("POST", path, Some(body.clone()), Some(key));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body[list].as_array().unwrap().clone()
    };
    let probe = json!({"vector": [1.0, 0.0, 0.0], "k": 10});
    let query = |key: &str| scored("/collections/secret-plans/query", &probe, "hits", key);
    let exact = query("reader-key-1");
    let first = exact[1]["score"].as_f64().unwrap();
    assert!((first - 0.123_456 / (0.123_456f64.powi(2) + 0.89).sqrt()).abs() < 1e-4);
    assert_eq!(query("admin-key-1"), exact);
    let rounded = query("rounded-key");
    assert_eq!(rounded[1]["id"], "a");
    assert_eq!(
        rounded[1]["score"].as_f64().unwrap(),
        (first * 100.0).round() / 100.0
    );
    let ranked = query("rankonly-key");
    let ids: Vec<&Value> = ranked.iter().map(|h| &h["id"]).collect();
    assert_eq!(ids, [&json!("b"), &json!("a")], "the order stays");
    assert!(
        ranked.iter().all(|h| h.get("score").is_none()),
        "{ranked:?}"
    );

    // An answer's sources and a chat completion's `engram.sources` follow the key too.
    let r = s.call("PUT", "/collections/notes", Some(json!({})), admin);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let notes = json!({"documents": [
        {"id": "n1", "text": "The vault code is kept by Ada Lovelace."},
        {"id": "n2", "text": "Basel lies on the Rhine."},
    ]});
    let r = s.call("POST", "/collections/notes/documents", Some(notes), admin);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let ask =
        json!({"question": "Who keeps the vault code?", "mode": "rag", "k": 2, "max_tokens": 1});
    let sources = |key: &str| scored("/collections/notes/answer", &ask, "sources", key);
    let exact = sources("reader-key-1");
    assert_eq!(exact.len(), 2, "{exact:?}");
    for (e, r) in exact.iter().zip(sources("rounded-key")) {
        let e = e["score"].as_f64().unwrap();
        assert_eq!(r["score"].as_f64().unwrap(), (e * 100.0).round() / 100.0);
    }
    assert!(sources("rankonly-key")
        .iter()
        .all(|h| h.get("score").is_none() && h.get("id").is_some()));
    let chat = json!({"model": "engram/notes/rag", "max_tokens": 1,
        "messages": [{"role": "user", "content": "Who keeps the vault code?"}]});
    let r = s.call(
        "POST",
        "/v1/chat/completions",
        Some(chat),
        Some("rankonly-key"),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let chat_sources = r.body["engram"]["sources"].as_array().unwrap();
    assert!(!chat_sources.is_empty(), "{:?}", r.body);
    assert!(chat_sources.iter().all(|h| h.get("score").is_none()));
}

#[test]
fn short_keys_in_the_config_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engram.toml");
    std::fs::write(
        &config,
        "[[api_keys]]\nkey = \"short\"\nscope = \"admin\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(["serve", "--lazy-models", "--port", "1", "--data-dir"])
        .arg(dir.path().join("db"))
        .arg("--config")
        .arg(&config)
        .env_remove("ENGRAM_API_KEYS")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 8 characters"), "{err}");
}
