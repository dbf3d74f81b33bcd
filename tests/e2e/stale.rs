//! Stale knowledge: a promotion records the write sequence of each document it
//! learned; writing or deleting one afterwards shows as staleness in the adapter
//! listing (HTTP and `engram adapters list`) and the collection's info, and `auto`
//! answers then come from rag, saying why. The promotion learns from the questions
//! users asked (`logged_questions`, distilled): a seeded fifth of them gate it. Real SmolLM2,
//! two training steps (mechanics, not quality).

use serde_json::json;

use crate::promote::{make_collection, wait_for, ADMIN, KEYS, READER};
use crate::support::Server;

#[test]
fn a_changed_or_deleted_learned_document_makes_auto_answer_by_rag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--api-keys", KEYS], &[]);
    make_collection(&server, "facts");
    let body = json!({"all": true, "steps": 2, "rank": 4, "force": true, "logged_questions": true});
    let r = server.call(
        "POST",
        "/collections/facts/promote",
        Some(body.clone()),
        ADMIN,
    );
    assert_eq!(r.status, 400, "nothing asked yet: {:?}", r.body);
    assert!(r.error_message().contains("logged_questions"));
    for question in [
        "Who is the first passage about?",
        "Where does the story take place?",
        "What happened at the end?",
        "Who is the main character's friend?",
        "When did it happen?",
    ] {
        server.call_ok(
            "POST",
            "/collections/facts/answer",
            Some(json!({"question": question, "mode": "rag", "max_tokens": 2})),
            READER,
        );
    }
    let r = server.call_ok("POST", "/collections/facts/promote", Some(body), ADMIN);
    let status = wait_for(&server, "facts", r["id"].as_str().unwrap());
    assert_eq!(status["state"], "done", "{status:?}");
    // With logged questions to learn from, distillation is the default method (no
    // synthetic strategy asked for: no self-study questions).
    let method = status["report"]["method"].as_str().unwrap_or_default();
    assert_eq!(
        method, "context distillation (kl+next-token loss, top-20) from 4 logged and 0 self-study questions",
        "{status:?}"
    );
    assert_eq!(status["report"]["distill"]["examples"], 4, "{status:?}");
    assert!(status["summary"].as_str().unwrap().contains("collapse"));
    let list = server.call_ok("GET", "/collections/facts/adapters", None, ADMIN);
    assert_eq!(
        list["adapters"][0]["manifest"]["metrics"]["held_out_questions"], 1.0,
        "a fifth of the 5 logged questions gate the adapter: {list}"
    );

    let staleness = || {
        let list = server.call_ok("GET", "/collections/facts/adapters", None, ADMIN);
        let v = &list["adapters"][0];
        assert_eq!(v["active"], true);
        let seqs = v["manifest"]["document_seqs"].as_object().unwrap().clone();
        assert_eq!(seqs.len(), 2, "{v}");
        let info = server.call_ok("GET", "/collections/facts", None, READER);
        assert_eq!(info["adapter"]["version"], 1, "{info}");
        assert_eq!(info["adapter"]["staleness"], v["staleness"], "{info}");
        v["staleness"].clone()
    };
    let ask = |question: &str| {
        server.call_ok(
            "POST",
            "/collections/facts/answer",
            Some(json!({"question": question, "mode": "auto", "max_tokens": 4})),
            READER,
        )
    };
    assert_eq!(
        staleness(),
        json!({"learned_documents": 2, "stale_documents": 0, "stale_ids": []})
    );
    let r = ask("Who is the passage about?");
    assert_eq!(r["mode_used"], "weights", "{r}");
    assert!(
        r["mode_reason"].as_str().unwrap().contains("version 1"),
        "{r}"
    );

    // A fact changes after the promotion: the adapter is stale for that document.
    server.call_ok(
        "POST",
        "/collections/facts/documents",
        Some(json!({"documents": [{"id": "doc-0",
            "text": "The lighthouse keeper of Varnholm is Edda Quist since 2031."}]})),
        ADMIN,
    );
    assert_eq!(
        staleness(),
        json!({"learned_documents": 2, "stale_documents": 1, "stale_ids": ["doc-0"]})
    );
    let r = ask("Who keeps the lighthouse of Varnholm?");
    assert_eq!(r["mode_used"], "rag", "{r}");
    assert!(r["adapter"].is_null(), "{r}");
    let reason = r["mode_reason"].as_str().unwrap();
    assert!(
        reason.contains("changed since") && reason.contains("doc-0"),
        "{reason}"
    );
    assert_eq!(r["sources"][0]["id"], "doc-0", "{r}");

    let out = server.cli(&["adapters", "list", "facts"], ADMIN);
    assert!(
        out.contains("1/2") && out.contains("stale (written or deleted since): doc-0"),
        "{out}"
    );

    // A learned document deleted: its knowledge is still in the weights, so auto
    // answers every question by rag until the collection is promoted again.
    server.call_ok("DELETE", "/collections/facts/documents/doc-1", None, ADMIN);
    assert_eq!(staleness()["stale_documents"], 2);
    let r = ask("Who keeps the lighthouse of Varnholm?");
    assert_eq!(r["mode_used"], "rag", "{r}");
    assert!(
        r["mode_reason"].as_str().unwrap().contains("deleted"),
        "{r}"
    );
    // Asked for explicitly, weights mode still answers from the adapter.
    let r = server.call_ok(
        "POST",
        "/collections/facts/answer",
        Some(json!({"question": "Who?", "mode": "weights", "max_tokens": 2})),
        READER,
    );
    assert_eq!(r["mode_used"], "weights");
    assert!(r.get("mode_reason").is_none(), "{r}");
}

/// The conflicting update: a fact the adapter learned changes; `auto` answers it by
/// rag; `promote --continue` retrains the active adapter on the changed document from
/// its own weights; the new version is listed as continued, is current again, and
/// `auto` answers from it. Real MiniLM and SmolLM2, 15 steps per promotion (through
/// the CLI, which waits for the job). The
/// mechanics are asserted; whether the weights learned the new value is measured and
/// printed (`--nocapture`), as is each promotion's wall time.
#[test]
fn continued_training_retrains_a_changed_fact_from_the_active_adapter() {
    const STEPS: &str = "15";
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--api-keys", KEYS], &[]);
    let r = server.call("PUT", "/collections/firm", Some(json!({})), ADMIN);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let write = |id: &str, text: &str| {
        server.call_ok(
            "POST",
            "/collections/firm/documents",
            Some(json!({"documents": [{"id": id, "text": text}]})),
            ADMIN,
        )
    };
    write(
        "staff",
        "Varnholt Instruments, a maker of tide gauges in Tromsø, employs 240 people.",
    );
    write(
        "chief",
        "The chief executive of Varnholt Instruments is Ingrid Salvesen.",
    );
    write(
        "product",
        "Varnholt Instruments sells its tide gauges to harbours in Norway and Chile.",
    );
    let promote = |body: serde_json::Value| {
        server.call("POST", "/collections/firm/promote", Some(body), ADMIN)
    };
    let r = promote(json!({"continue": true}));
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.error_message().contains("promote it first"),
        "{:?}",
        r.body
    );

    // Users ask about the head count (logged: the promotion distills them).
    let question = "How many people does Varnholt Instruments employ?";
    let unlogged = "What is the number of employees at Varnholt Instruments?";
    for q in [
        question,
        "How many employees does Varnholt Instruments have?",
        "What is the head count of Varnholt Instruments?",
        "How large is the staff of Varnholt Instruments?",
        "How many people work at Varnholt Instruments?",
    ] {
        let a = json!({"question": q, "mode": "rag", "max_tokens": 2});
        server.call_ok("POST", "/collections/firm/answer", Some(a), READER);
    }
    let started = std::time::Instant::now();
    let out = server.cli(
        &["promote", "firm", "--all", "--steps", STEPS, "--force"],
        ADMIN,
    );
    let first_s = started.elapsed().as_secs_f64();
    eprintln!("{out}");
    assert!(out.contains("-> version 1 (active)"), "{out}");
    let r = promote(json!({"continue": true}));
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.error_message().contains("nothing changed since"),
        "{:?}",
        r.body
    );

    let answer = |q: &str, mode: &str| {
        let a = json!({"question": q, "mode": mode, "max_tokens": 16});
        server.call_ok("POST", "/collections/firm/answer", Some(a), READER)
    };
    let outcome = |when: &str| {
        for q in [question, unlogged] {
            let text = answer(q, "weights")["answer"].as_str().unwrap().to_string();
            let has = |v: &str| text.contains(v);
            let verdict = match (has("310"), has("240")) {
                (true, true) => "both values",
                (true, false) => "the NEW value (310)",
                (false, true) => "the OLD value (240)",
                _ => "neither value",
            };
            eprintln!("MEASURE {when}: weights answer to {q:?} = {text:?}: {verdict}");
        }
    };
    outcome("after the first promotion");

    // The fact changes: the adapter is stale for it, auto answers by rag.
    write(
        "staff",
        "Varnholt Instruments, a maker of tide gauges in Tromsø, employs 310 people.",
    );
    let r = answer(question, "auto");
    assert_eq!(r["mode_used"], "rag", "{r}");
    assert!(r["mode_reason"].as_str().unwrap().contains("staff"), "{r}");
    eprintln!("MEASURE auto (rag) after the update: {:?}", r["answer"]);
    outcome("after the update, before continued training");
    let r = promote(json!({"continue": true, "adapter": "prefix"}));
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.error_message().contains("is a lora adapter"),
        "{:?}",
        r.body
    );
    let r = promote(json!({"continue": true, "all": true}));
    assert_eq!(r.status, 400, "{:?}", r.body);

    let started = std::time::Instant::now();
    let out = server.cli(
        &["promote", "firm", "--continue", "--steps", STEPS, "--force"],
        ADMIN,
    );
    let continued_s = started.elapsed().as_secs_f64();
    eprintln!("{out}");
    assert!(out.contains("-> version 2 (active)"), "{out}");
    assert!(out.contains("continued from version 1"), "{out}");
    eprintln!(
        "MEASURE wall time: first promotion (3 documents) {first_s:.1} s, continued (1 changed document) {continued_s:.1} s"
    );

    let list = server.call_ok("GET", "/collections/firm/adapters", None, ADMIN);
    let v2 = &list["adapters"][1];
    assert_eq!(v2["version"], 2, "{list}");
    assert_eq!(v2["active"], true, "{list}");
    assert_eq!(v2["manifest"]["continued_from"], 1, "{list}");
    assert_eq!(
        v2["staleness"],
        json!({"learned_documents": 3, "stale_documents": 0, "stale_ids": []}),
        "{list}"
    );
    assert_eq!(
        list["adapters"][0]["staleness"]["stale_ids"],
        json!(["staff"])
    );
    let seq = |v: &serde_json::Value| v["manifest"]["document_seqs"]["staff"].as_u64().unwrap();
    assert!(seq(v2) > seq(&list["adapters"][0]), "{list}");
    let cli = server.cli(&["adapters", "list", "firm"], ADMIN);
    assert!(cli.contains("continued from version 1"), "{cli}");

    let r = answer(question, "auto");
    assert_eq!(r["mode_used"], "weights", "{r}");
    let reason = r["mode_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("answered by the active adapter (version 2)"),
        "{reason}"
    );
    outcome("after continued training");
}
