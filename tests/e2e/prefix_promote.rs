//! A prefix (cartridge) adapter graduated through the real binary: an admin promotes a
//! small collection with `"adapter": "prefix"` over REST (two training steps, a
//! 16-position prefix: mechanics, not quality), the registry lists a `prefix` version
//! with PEFT prefix-tuning files, it is activated (by the gate, or by the admin's
//! explicit activation when the gate refuses, which the test prints), and `/answer` in
//! `weights` mode answers with it applied per request while the base model stays
//! untouched. `engram promote --adapter prefix` asks for the same plan from the CLI.

use serde_json::{json, Value};

use crate::promote::{make_collection, wait_for, ADMIN, KEYS, READER};
use crate::support::Server;

const QUESTION: &str = "Who is the passage about?";

#[test]
#[ignore = "not yet seen passing (written at the end of session 7): run with --ignored"]
fn a_prefix_adapter_is_promoted_over_http_and_answers_unmerged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--api-keys", KEYS], &[]);
    make_collection(&server, "facts");
    let ask = |mode: &str| -> Value {
        server.call_ok(
            "POST",
            "/collections/facts/answer",
            Some(json!({"question": QUESTION, "mode": mode, "max_tokens": 12})),
            READER,
        )
    };
    let base_before = ask("none");

    let body = json!({"all": true, "strategies": ["cloze"], "steps": 2,
        "adapter": "prefix", "prefix_tokens": 16});
    let r = server.call(
        "POST",
        "/collections/facts/promote",
        Some(json!({"all": true, "prefix_tokens": 16})),
        ADMIN,
    );
    assert_eq!(
        r.status, 400,
        "prefix_tokens without a prefix: {:?}",
        r.body
    );
    let r = server.call_ok("POST", "/collections/facts/promote", Some(body), ADMIN);
    let status = wait_for(&server, "facts", r["id"].as_str().unwrap());
    assert_eq!(status["state"], "done", "{status:?}");
    let report = &status["report"];
    assert_eq!(report["version"]["version"], 1, "{report}");
    assert_eq!(report["train"]["steps"], 2, "{report}");
    eprintln!("{}", status["summary"].as_str().unwrap_or_default());
    if report["activated"] != true {
        // Two steps rarely pass the gate; the admin's explicit activation is the override.
        eprintln!("the gate refused the 2-step prefix: activating it explicitly");
        server.call_ok(
            "POST",
            "/collections/facts/adapters/1/activate",
            None,
            ADMIN,
        );
    }

    // The registry: a prefix version, active, with PEFT prefix-tuning files.
    let list = server.call_ok("GET", "/collections/facts/adapters", None, ADMIN);
    let v = &list["adapters"][0];
    assert_eq!(
        (v["version"].clone(), v["kind"].clone(), v["active"].clone()),
        (json!(1), json!("prefix"), json!(true)),
        "{list}"
    );
    let config: Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(v["path"].as_str().unwrap()).join("adapter_config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            config["peft_type"].clone(),
            config["num_virtual_tokens"].clone()
        ),
        (json!("PREFIX_TUNING"), json!(16)),
        "{config}"
    );

    // Weights answers carry the prefix; the base model answers as before, unchanged.
    let weights = ask("weights");
    assert_eq!(weights["mode_used"], "weights", "{weights}");
    assert_eq!(
        weights["adapter"],
        json!({"name": "facts", "version": 1}),
        "{weights}"
    );
    let base_after = ask("none");
    assert_eq!(
        base_after["answer"], base_before["answer"],
        "the prefix is applied per request, never merged"
    );
    assert!(base_after.get("adapter").is_none(), "{base_after}");
    assert_ne!(
        weights["answer"], base_before["answer"],
        "16 trained positions before the prompt change what the model says"
    );
    eprintln!(
        "base model: {:?}\nwith the prefix: {:?}",
        base_before["answer"], weights["answer"]
    );

    // The CLI asks for the same plan: it resumes from the finished checkpoint, registers
    // version 2, and lists both with their kind.
    let out = server.cli(
        &[
            "promote",
            "facts",
            "--all",
            "--strategy",
            "cloze",
            "--steps",
            "2",
            "--adapter",
            "prefix",
            "--prefix-tokens",
            "16",
        ],
        ADMIN,
    );
    assert!(out.contains("-> version 2"), "{out}");
    let list = server.call_ok("GET", "/collections/facts/adapters", None, ADMIN);
    assert_eq!(list["adapters"][1]["kind"], "prefix", "{list}");
    let out = server.cli(&["adapters", "list", "facts"], ADMIN);
    assert!(out.contains("kind") && out.contains("prefix"), "{out}");
}
