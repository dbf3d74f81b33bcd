//! The three paradigms behind one API, with the real SmolLM2: the answer endpoint in
//! every mode (JSON and server-sent events), its errors, `engram ask`, and the
//! OpenAI-compatible endpoints driven by the official `openai` Python client.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::Server;

const QUESTION: &str = "What is the capital of Zorvania?";

/// A collection of short made-up facts (the model cannot know them unprompted).
fn facts(server: &Server) {
    assert_eq!(server.put("/collections/facts", json!({})).status, 200);
    let docs = json!({"documents": [
        {"id": "zorvania", "text": "Zorvania is a small island nation. The capital of Zorvania is Plimsk, a port city of 40,000 people."},
        {"id": "bakery", "text": "The Lopez bakery was founded in 1998 by Maria Lopez and her brother Tomas."},
        {"id": "river", "text": "The Quell river flows north for 300 kilometres before it reaches the Amber Sea."},
    ]});
    assert_eq!(
        server.post("/collections/facts/documents", docs).status,
        200
    );
}

fn answer(server: &Server, body: Value) -> crate::support::Reply {
    server.post("/collections/facts/answer", body)
}

/// The events of a server-sent-events body, as (name, data) pairs.
fn events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = "message".to_string();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}

#[test]
fn answers_in_every_mode_with_sources_usage_and_timing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    facts(&server);

    let rag = answer(
        &server,
        json!({"question": QUESTION, "mode": "rag", "k": 2}),
    );
    assert_eq!(rag.status, 200, "{:?}", rag.body);
    let b = &rag.body;
    assert_eq!(b["mode_used"], "rag");
    assert!(b["answer"].as_str().unwrap().contains("Plimsk"), "{b}");
    assert_eq!(b["sources"].as_array().unwrap().len(), 2);
    assert_eq!(b["sources"][0]["id"], "zorvania");
    assert!(b["sources"][0]["text"].as_str().unwrap().contains("Plimsk"));
    let rag_prompt = b["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(b["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(b["timing"]["prefill_ms"].as_f64().unwrap() > 0.0);
    assert!(b["timing"]["retrieve_ms"].as_f64().unwrap() > 0.0);
    assert!(b["model"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("smollm2"));

    // No adapter yet: auto falls back to rag.
    let auto = answer(&server, json!({"question": QUESTION, "k": 2}));
    assert_eq!(auto.status, 200);
    assert_eq!(auto.body["mode_used"], "rag");
    assert_eq!(auto.body["answer"], b["answer"], "greedy answers repeat");

    // Full context: every document, no sources, a longer prompt than rag's two passages.
    let ctx = answer(&server, json!({"question": QUESTION, "mode": "context"}));
    assert_eq!(ctx.status, 200, "{:?}", ctx.body);
    assert_eq!(ctx.body["mode_used"], "context");
    assert!(
        ctx.body["answer"].as_str().unwrap().contains("Plimsk"),
        "{}",
        ctx.body
    );
    assert!(ctx.body["sources"].as_array().unwrap().is_empty());
    assert!(ctx.body["usage"]["prompt_tokens"].as_u64().unwrap() > rag_prompt);

    // The bare model: a short prompt, and it cannot know a made-up capital.
    let none = answer(
        &server,
        json!({"question": QUESTION, "mode": "none", "max_tokens": 16}),
    );
    assert_eq!(none.status, 200);
    assert!(none.body["usage"]["prompt_tokens"].as_u64().unwrap() < rag_prompt / 2);
    assert!(none.body["usage"]["completion_tokens"].as_u64().unwrap() <= 16);

    // Weights without an adapter: 409 that says what to do.
    let w = answer(&server, json!({"question": QUESTION, "mode": "weights"}));
    assert_eq!(w.status, 409, "{:?}", w.body);
    assert_eq!(w.body["error"]["code"], "no_adapter");
    let msg = w.error_message();
    assert!(
        msg.contains("rag") && msg.contains("promote the collection"),
        "{msg}"
    );

    // Streaming: token events that add up to the answer, then the whole response.
    let resp = ureq::post(&server.url("/collections/facts/answer"))
        .send_json(json!({"question": QUESTION, "mode": "rag", "k": 2, "stream": true}))
        .unwrap();
    assert!(resp.content_type().starts_with("text/event-stream"));
    let body = resp.into_string().unwrap();
    let evs = events(&body);
    let tokens: Vec<&(String, String)> = evs.iter().filter(|(n, _)| n == "token").collect();
    assert!(tokens.len() > 1, "{body}");
    let streamed: String = tokens
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "done", "{body}");
    let done: Value = serde_json::from_str(data).unwrap();
    assert_eq!(done["answer"].as_str().unwrap(), streamed.trim());
    assert_eq!(done["answer"], b["answer"]);
}

#[test]
fn answer_errors_are_clear_and_context_stops_at_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    facts(&server);
    let cases = [
        (
            json!({"question": "  ", "mode": "rag"}),
            400,
            "invalid_input",
        ),
        (
            json!({"question": QUESTION, "mode": "psychic"}),
            400,
            "invalid_json",
        ),
        (
            json!({"question": QUESTION, "mode": "rag", "k": 0}),
            400,
            "invalid_input",
        ),
        (
            json!({"question": QUESTION, "temperature": 5.0}),
            400,
            "invalid_input",
        ),
        (
            json!({"question": QUESTION, "max_tokens": 0}),
            400,
            "invalid_input",
        ),
    ];
    for (body, status, code) in cases {
        let r = answer(&server, body.clone());
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{body}: {:?}", r.body);
    }
    let r = server.post("/collections/nowhere/answer", json!({"question": QUESTION}));
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["code"], "collection_not_found");

    // About 12,000 tokens of text: more than SmolLM2's 8,192-token window.
    assert_eq!(server.put("/collections/big", json!({})).status, 200);
    let passages: Vec<Value> = crate::support::quoref()
        .into_iter()
        .take(30)
        .map(|p| json!({"id": p["id"], "text": p["text"]}))
        .collect();
    let r = server.post("/collections/big/documents", json!({"documents": passages}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = server.post(
        "/collections/big/answer",
        json!({"question": "Who is Hickson?", "mode": "context"}),
    );
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "context_too_long");
    let msg = r.error_message();
    assert!(
        msg.contains("8192") && msg.contains("rag") && msg.contains("30 documents"),
        "{msg}"
    );
    // The same collection answers in rag mode.
    let r = server.post(
        "/collections/big/answer",
        json!({"question": "Who is Hickson?", "mode": "rag", "max_tokens": 8}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    // An answer stream whose request is bad is a plain error, not an event stream.
    let r = answer(
        &server,
        json!({"question": QUESTION, "mode": "weights", "stream": true}),
    );
    assert_eq!(r.status, 409);
}

#[test]
fn engram_ask_streams_the_answer_and_explains_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    facts(&server);
    let ask = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_engram"))
            .arg("ask")
            .args(args)
            .env("ENGRAM_URL", server.url(""))
            .output()
            .unwrap()
    };
    let out = ask(&["facts", QUESTION, "--mode", "rag", "-k", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Plimsk"), "{stdout}");
    assert!(
        stderr.contains("mode: rag") && stderr.contains("zorvania"),
        "{stderr}"
    );
    assert!(stderr.contains("tokens/s"), "{stderr}");

    let out = ask(&["facts", QUESTION, "--mode", "weights"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("promote the collection"),
        "{stderr}"
    );
}

/// A virtual environment with the official `openai` client, made once under the cache.
fn openai_python() -> PathBuf {
    crate::support::python_venv("openai-client", &["openai==3.54.0"], "import openai")
        .join("bin/python")
}

#[test]
fn the_official_openai_client_works_unchanged() {
    let python = openai_python();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    facts(&server);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/python/openai_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(server.url(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("openai client OK"), "{stdout}");
}
