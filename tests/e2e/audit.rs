//! Leakage audit through HTTP: an admin starts an audit of a small collection, the
//! job reports progress and completes, the JSON and HTML reports show the planted
//! e-mail address in the secrets section, and the report survives a restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{quoref_docs, Server};

const KEYS: &str = "reader-key-1:read,admin-key-1:admin";
const ADMIN: Option<&str> = Some("admin-key-1");
const EMAIL: &str = "ada.lovelace@example.com";

#[test]
fn audit_runs_in_background_and_finds_a_planted_email() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--api-keys", KEYS], &[]);
    let r = server.call("PUT", "/collections/private", Some(json!({})), ADMIN);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut docs: Vec<Value> = quoref_docs(3, 120);
    docs.push(json!({"id": "doc-secret", "text": format!("Please write to Ada Lovelace at {EMAIL} about the account.")}));
    let r = server.call(
        "POST",
        "/collections/private/documents",
        Some(json!({"documents": docs})),
        ADMIN,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Admin only, checked input, known collection.
    let body = json!({"sample": 4, "steps": 2, "beam": 1, "defences": ["rotation:7"]});
    let r = server.call(
        "POST",
        "/collections/private/audit",
        Some(body.clone()),
        Some("reader-key-1"),
    );
    assert_eq!(r.status, 403, "{:?}", r.body);
    for bad in [
        json!({"sample": 0}),
        json!({"defences": ["blur"]}),
        json!({"smaple": 3}),
        json!({"beam": 99}),
    ] {
        let r = server.call(
            "POST",
            "/collections/private/audit",
            Some(bad.clone()),
            ADMIN,
        );
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    let r = server.call(
        "POST",
        "/collections/nowhere/audit",
        Some(body.clone()),
        ADMIN,
    );
    assert_eq!(r.status, 404, "{:?}", r.body);

    let started = Instant::now();
    let r = server.call("POST", "/collections/private/audit", Some(body), ADMIN);
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["state"], "running");
    let id = r.body["id"].as_str().unwrap().to_string();
    let status_path = format!("/collections/private/audits/{id}/status");
    let mut saw_progress = false;
    let status = loop {
        let s = server.call("GET", &status_path, None, ADMIN);
        assert_eq!(s.status, 200, "{:?}", s.body);
        match s.body["state"].as_str().unwrap() {
            "running" => {
                saw_progress |=
                    s.body["total"].as_u64().unwrap() > 0 && s.body["done"].as_u64().unwrap() > 0;
                // The report is not there yet.
                let r = server.call(
                    "GET",
                    &format!("/collections/private/audits/{id}"),
                    None,
                    ADMIN,
                );
                assert!(r.status == 409 || r.status == 200, "{:?}", r.body);
            }
            "done" => break s.body,
            other => panic!("audit {other}: {:?}", s.body),
        }
        // The first audit on a machine also embeds the lexicon's ~35,000 words
        // (minutes on 2 cores; cached under ~/.cache/engram/inverter after that).
        assert!(
            started.elapsed() < Duration::from_secs(480),
            "audit too slow"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("audit took {:.1} s", started.elapsed().as_secs_f64());
    assert!(saw_progress, "no progress was reported while running");
    assert_eq!(status["done"], status["total"]);

    let list = server.call("GET", "/collections/private/audits", None, ADMIN);
    assert_eq!(list.status, 200);
    assert_eq!(list.body["audits"][0]["id"], id.as_str());
    assert!(list.body["audits"][0]["grade"].is_string());

    let report = server.call(
        "GET",
        &format!("/collections/private/audits/{id}"),
        None,
        ADMIN,
    );
    assert_eq!(report.status, 200, "{:?}", report.body);
    let r = &report.body;
    assert_eq!(r["documents"].as_array().unwrap().len(), 4);
    assert_eq!(r["defences"][0]["defence"], "none");
    assert_eq!(r["defences"][1]["defence"], "rotation:7");
    // Rotation leaves retrieval as it was for the key holder.
    assert_eq!(r["defences"][1]["ndcg_loss_points"], json!(0.0));
    let secret = r["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "doc-secret")
        .expect("the secret document is sampled");
    let secrets = secret["secrets"].as_array().unwrap();
    assert!(
        secrets
            .iter()
            .any(|s| s["kind"] == "email" && s["value"] == EMAIL),
        "{secrets:?}"
    );
    assert!(secrets
        .iter()
        .any(|s| s["kind"] == "name" && s["value"] == "Ada Lovelace"));

    let html = ureq::get(&server.url(&format!("/collections/private/audits/{id}/html")))
        .set("Authorization", "Bearer admin-key-1")
        .call()
        .unwrap();
    assert!(html.content_type().starts_with("text/html"));
    let html = html.into_string().unwrap();
    assert!(html.contains(EMAIL) && html.contains("<svg") && html.contains("Secrets"));
    // Every report states the attack's measured strength and the published anchor,
    // and a grade better than C needs an attack measured as strong.
    let attack = &r["attack"];
    assert!(attack["names"]["total"].as_u64().unwrap() > 0, "{attack:?}");
    assert!(html.contains("How strong this attack is") && html.contains("89%"));
    let verdict = r["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("PII benchmark") && verdict.contains("89%"),
        "{verdict}"
    );
    let grade = r["grade"].as_str().unwrap();
    if r["shown_safe"] == json!(false) && grade < "D" {
        assert_eq!(grade, "C");
        assert!(verdict.starts_with("Not shown safe."), "{verdict}");
    }

    let spec = server.get("/openapi.json").body;
    for path in [
        "/collections/{name}/audit",
        "/collections/{name}/audits/{id}/html",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI spec"
        );
    }
    assert!(spec["components"]["schemas"]["AuditStatus"].is_object());

    // The CLI runs the same job, follows its progress and writes the HTML.
    let out = dir.path().join("report.html");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_engram"))
        .args([
            "audit",
            "private",
            "--sample",
            "2",
            "--steps",
            "1",
            "--beam",
            "1",
            "--defences",
            "none",
            "--out",
        ])
        .arg(&out)
        .env("ENGRAM_URL", server.url(""))
        .env("ENGRAM_API_KEY", "admin-key-1")
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(std::fs::read_to_string(&out).unwrap().contains("<svg"));
    let list = server.call("GET", "/collections/private/audits", None, ADMIN);
    assert_eq!(list.body["audits"].as_array().unwrap().len(), 2);

    // Stored, not just in memory.
    server.restart();
    let again = server.call(
        "GET",
        &format!("/collections/private/audits/{id}"),
        None,
        ADMIN,
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.body, report.body);
    let r = server.call("GET", "/collections/private/audits/nope", None, ADMIN);
    assert_eq!(r.status, 404, "{:?}", r.body);
}
