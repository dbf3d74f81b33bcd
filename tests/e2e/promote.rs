//! Graduating to weights through HTTP and the CLI, on the real SmolLM2: an admin
//! promotes a small collection (a few training steps: mechanics, not quality), the job
//! reports its stages and finishes with a gate verdict, the registry lists the
//! version, `weights` answers use it, deactivate/activate/delete work, a deleted collection
//! takes its adapters with it, and bad requests get clear 4xx errors.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{quoref_docs, Server};

pub(crate) const KEYS: &str = "reader-key-1:read,admin-key-1:admin";
pub(crate) const ADMIN: Option<&str> = Some("admin-key-1");
pub(crate) const READER: Option<&str> = Some("reader-key-1");

pub(crate) fn make_collection(server: &Server, name: &str) {
    let r = server.call(
        "PUT",
        &format!("/collections/{name}"),
        Some(json!({})),
        ADMIN,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let docs: Vec<Value> = quoref_docs(2, 700);
    let r = server.call(
        "POST",
        &format!("/collections/{name}/documents"),
        Some(json!({"documents": docs})),
        ADMIN,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
}

pub(crate) fn wait_for(server: &Server, name: &str, id: &str) -> Value {
    let started = Instant::now();
    let mut stages = Vec::new();
    loop {
        let s = server.call(
            "GET",
            &format!("/collections/{name}/promotions/{id}"),
            None,
            ADMIN,
        );
        assert_eq!(s.status, 200, "{:?}", s.body);
        let stage = s.body["stage"].as_str().unwrap().to_string();
        if stages.last() != Some(&stage) {
            stages.push(stage);
        }
        if s.body["state"] != "running" {
            eprintln!(
                "promotion took {:.1} s, stages {stages:?}",
                started.elapsed().as_secs_f64()
            );
            return s.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "promotion too slow: {:?}",
            s.body
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn promote_registers_serves_rolls_back_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--api-keys", KEYS], &[]);
    make_collection(&server, "facts");
    let spec = server.get("/openapi.json").body;
    for path in [
        "/collections/{name}/promote",
        "/collections/{name}/promotions/{id}",
        "/collections/{name}/promotions/{id}/data",
        "/collections/{name}/adapters",
        "/collections/{name}/adapters/{version}/activate",
        "/collections/{name}/adapters/rollback",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI spec"
        );
    }
    for schema in ["PromoteRequest", "PromotionStatus", "AdapterList"] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }

    // Admin only, checked input, known collection.
    let body = json!({"all": true, "strategies": ["cloze"], "steps": 2, "rank": 4, "force": true});
    let r = server.call(
        "POST",
        "/collections/facts/promote",
        Some(body.clone()),
        READER,
    );
    assert_eq!(r.status, 403, "{:?}", r.body);
    for bad in [
        json!({"strategies": ["telepathy"]}),
        json!({"stpes": 3}),
        json!({"cluster": 99}),
        json!({"rank": 0}),
        json!({"max_documents": 0}),
        json!({"token_weights": "sideways"}),
        json!({"loss": "next-token", "token_weights": "context-gain"}),
    ] {
        let r = server.call(
            "POST",
            "/collections/facts/promote",
            Some(bad.clone()),
            ADMIN,
        );
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert!(!r.error_message().is_empty());
    }
    let r = server.call(
        "POST",
        "/collections/nowhere/promote",
        Some(body.clone()),
        ADMIN,
    );
    assert_eq!(r.status, 404, "{:?}", r.body);
    // No adapter yet: weights mode says what to do, auto falls back to rag.
    let ask = |mode: &str| {
        server.call(
            "POST",
            "/collections/facts/answer",
            Some(json!({"question": "Who is the passage about?", "mode": mode, "max_tokens": 8})),
            READER,
        )
    };
    let r = ask("weights");
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.error_message().contains("promote the collection"));
    let r = server.call("GET", "/collections/facts/adapters", None, ADMIN);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["adapters"], json!([]));

    let r = server.call(
        "POST",
        "/collections/facts/promote",
        Some(body.clone()),
        ADMIN,
    );
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["state"], "running");
    assert_eq!(r.body["documents"], 2);
    let id = r.body["id"].as_str().unwrap().to_string();
    // One promotion at a time.
    let again = server.call(
        "POST",
        "/collections/facts/promote",
        Some(json!({"steps": 3})),
        ADMIN,
    );
    // The first one loads two models before it trains: it is still running here.
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["error"]["code"], "promotion_running");
    let status = wait_for(&server, "facts", &id);
    assert_eq!(status["state"], "done", "{status:?}");
    let report = &status["report"];
    assert_eq!(report["version"]["version"], 1);
    assert_eq!(
        report["activated"], true,
        "force activates whatever the gate says"
    );
    assert!(report["base"]["perplexity"].as_f64().unwrap() > 1.0);
    assert!(report["tuned"]["perplexity"].as_f64().unwrap() > 1.0);
    assert!(report["synth"]["cloze"]["kept"].as_u64().unwrap() > 0);
    assert_eq!(report["train"]["steps"], 2);
    let summary = status["summary"].as_str().unwrap();
    assert!(summary.contains("general-text perplexity"), "{summary}");
    // The synthetic data can be inspected.
    let data = server.call(
        "GET",
        &format!("/collections/facts/promotions/{id}/data"),
        None,
        ADMIN,
    );
    assert_eq!(data.status, 200, "{:?}", data.body);
    let items = data.body["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.iter().all(|i| i["strategy"] == "cloze"));

    // The registry lists the version with its manifest; weights answers use it.
    let r = server.call("GET", "/collections/facts/adapters", None, ADMIN);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = &r.body["adapters"][0];
    assert_eq!(
        (v["version"].clone(), v["active"].clone()),
        (json!(1), json!(true))
    );
    assert_eq!(v["manifest"]["document_ids"], json!(["doc-0", "doc-1"]));
    assert_eq!(
        v["manifest"]["base_model"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    for mode in ["weights", "weights_rag", "auto"] {
        let r = ask(mode);
        assert_eq!(r.status, 200, "{mode}: {:?}", r.body);
        assert_eq!(
            r.body["adapter"],
            json!({"name": "facts", "version": 1}),
            "{mode}"
        );
        assert_eq!(
            r.body["mode_used"],
            if mode == "auto" { "weights" } else { mode }
        );
    }
    let r = ask("rag");
    assert!(
        r.body.get("adapter").is_none(),
        "rag answers use no adapter"
    );

    // The CLI lists versions; rollback leaves none active, delete removes it.
    let out = server.cli(&["adapters", "list", "facts"], ADMIN);
    assert!(out.contains("adapter F1") && out.contains("yes"), "{out}");
    let r = server.call("DELETE", "/collections/facts/adapters/1", None, ADMIN);
    assert_eq!(
        r.status, 409,
        "the active version cannot be deleted: {:?}",
        r.body
    );
    let r = server.call("POST", "/collections/facts/adapters/rollback", None, ADMIN);
    assert_eq!(
        r.status, 404,
        "no earlier version to roll back to: {:?}",
        r.body
    );
    let r = server.call(
        "POST",
        "/collections/facts/adapters/deactivate",
        None,
        ADMIN,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["adapters"][0]["active"], false);
    assert_eq!(ask("weights").status, 409);
    assert_eq!(ask("auto").body["mode_used"], "rag");
    let r = server.call(
        "POST",
        "/collections/facts/adapters/7/activate",
        None,
        ADMIN,
    );
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = server.call(
        "POST",
        "/collections/facts/adapters/1/activate",
        None,
        ADMIN,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(ask("weights").status, 200);

    // The CLI asks for the same promotion again: it resumes from the finished journal
    // and checkpoint (no new training), follows the stages, prints the summary, and
    // registers version 2; rollback then returns to version 1.
    let out = server.cli(
        &[
            "promote",
            "facts",
            "--all",
            "--strategy",
            "cloze",
            "--steps",
            "2",
            "--rank",
            "4",
            "--force",
        ],
        ADMIN,
    );
    assert!(
        out.contains("-> version 2 (active)") && out.contains("closed-book token F1"),
        "{out}"
    );
    let r = server.call(
        "GET",
        &format!("/collections/facts/promotions/{id}"),
        None,
        ADMIN,
    );
    assert_eq!(r.body["report"]["train"]["resumed_from"], 2, "{:?}", r.body);
    let r = server.call("POST", "/collections/facts/adapters/rollback", None, ADMIN);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let active: Vec<_> = r.body["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["active"] == true)
        .map(|v| v["version"].clone())
        .collect();
    assert_eq!(active, [json!(1)]);
    let r = server.call("DELETE", "/collections/facts/adapters/2", None, ADMIN);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["adapters"].as_array().unwrap().len(), 1);

    // The promotion is listed; a deleted collection takes its adapters with it.
    let r = server.call("GET", "/collections/facts/promotions", None, ADMIN);
    assert_eq!(r.body["promotions"][0]["id"], id.as_str());
    let r = server.call("DELETE", "/collections/facts", None, ADMIN);
    assert_eq!(r.status, 204, "{:?}", r.body);
    make_collection(&server, "facts");
    let r = server.call("GET", "/collections/facts/adapters", None, ADMIN);
    assert_eq!(
        r.body["adapters"],
        json!([]),
        "a new collection starts bare"
    );
    assert_eq!(ask("weights").status, 409);
    let r = server.call("GET", "/collections/facts/promotions", None, ADMIN);
    assert_eq!(r.body["promotions"], json!([]));
}
