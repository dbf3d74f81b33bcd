//! Backup and restore of a database that holds more than records: an active
//! adapter, a finished audit with its report and a cancelled one, a finished and a
//! cancelled promotion (the cancel routes are tested here on the way). The
//! backup goes through the CLI, is restored into a new directory and over an
//! existing one (`--force`), and a server on the restored data serves all of it. A
//! damaged backup makes the restore fail and leaves the target as it was.
//! Promotion mechanics here are tiny (two steps, rank 4), like `promote.rs`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{quoref_docs, Server};

const KEYS: &str = "admin-key-1:admin";
const ADMIN: Option<&str> = Some("admin-key-1");

fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    server.call_ok(method, path, body, ADMIN)
}

/// Polls `path` until the job is no longer running; returns its last status.
fn wait(server: &Server, path: &str) -> Value {
    let started = Instant::now();
    loop {
        let s = call(server, "GET", path, None);
        if s["state"] != "running" {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{path} too slow: {s}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn engram(server: Option<&Server>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_engram"));
    cmd.args(args).env("ENGRAM_API_KEY", "admin-key-1");
    if let Some(s) = server {
        cmd.env("ENGRAM_URL", s.url(""));
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn restore(backup: &Path, target: &Path, force: bool) -> (bool, String) {
    let (b, t) = (backup.to_str().unwrap(), target.to_str().unwrap());
    let mut args = vec!["restore", b, "--data-dir", t];
    if force {
        args.push("--force");
    }
    engram(None, &args)
}

/// What the original database held, checked on a restored one.
fn assert_restored(data: &Path, audit: &str, done: &str, cancelled: &str) {
    let server = Server::start(data, &["--api-keys", KEYS, "--lazy-models"], &[]);
    let doc = call(&server, "GET", "/collections/facts/documents/doc-1", None);
    assert!(doc["text"].as_str().unwrap().len() > 100, "{doc}");
    let adapters = call(&server, "GET", "/collections/facts/adapters", None);
    let v = &adapters["adapters"][0];
    assert_eq!(
        (v["version"].clone(), v["active"].clone()),
        (json!(1), json!(true)),
        "{adapters}"
    );
    let report = call(
        &server,
        "GET",
        &format!("/collections/facts/audits/{audit}"),
        None,
    );
    assert!(
        report["documents"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "{report}"
    );
    let audits = call(&server, "GET", "/collections/facts/audits", None);
    let mut states: Vec<String> = audits["audits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap().to_string())
        .collect();
    states.sort();
    assert_eq!(states, ["cancelled", "done"], "{audits}");
    let promotions = call(&server, "GET", "/collections/facts/promotions", None);
    let state = |id: &str| {
        promotions["promotions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| {
                (
                    p["state"].clone(),
                    p["report"]["version"]["version"].clone(),
                )
            })
    };
    assert_eq!(state(done), Some((json!("done"), json!(1))), "{promotions}");
    assert_eq!(
        state(cancelled).map(|s| s.0),
        Some(json!("cancelled")),
        "{promotions}"
    );
    // The promotion's own files came back too: its synthetic data is listed.
    let data = call(
        &server,
        "GET",
        &format!("/collections/facts/promotions/{done}/data"),
        None,
    );
    assert!(!data["items"].as_array().unwrap().is_empty(), "{data}");
}

#[test]
fn restore_brings_back_adapters_audits_and_promotions_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--api-keys", KEYS], &[]);
    call(&server, "PUT", "/collections/facts", Some(json!({})));
    let docs: Vec<Value> = quoref_docs(2, 700);
    call(
        &server,
        "POST",
        "/collections/facts/documents",
        Some(json!({ "documents": docs })),
    );

    // An audit, run to its report.
    let audit = call(
        &server,
        "POST",
        "/collections/facts/audit",
        Some(json!({"sample": 2, "steps": 2, "beam": 1})),
    );
    let audit = audit["id"].as_str().unwrap().to_string();
    let s = wait(
        &server,
        &format!("/collections/facts/audits/{audit}/status"),
    );
    assert_eq!(s["state"], "done", "{s}");

    // A long audit, cancelled: it stops after the text it is on and reads "cancelled".
    let long = json!({"sample": 2, "steps": 100, "beam": 1});
    let stopped = call(&server, "POST", "/collections/facts/audit", Some(long));
    let stopped = stopped["id"].as_str().unwrap().to_string();
    let r = call(
        &server,
        "POST",
        &format!("/collections/facts/audits/{stopped}/cancel"),
        None,
    );
    assert_eq!(r["id"], stopped.as_str(), "{r}");
    let s = wait(
        &server,
        &format!("/collections/facts/audits/{stopped}/status"),
    );
    assert_eq!(s["state"], "cancelled", "{s}");
    let r = server.call("POST", "/collections/facts/audits/nope/cancel", None, ADMIN);
    assert_eq!(r.status, 404, "{:?}", r.body);

    // A long promotion, cancelled: it stops at its next step and reads "cancelled".
    let long =
        json!({"all": true, "strategies": ["cloze"], "steps": 2000, "rank": 4, "force": true});
    let p = call(&server, "POST", "/collections/facts/promote", Some(long));
    let cancelled = p["id"].as_str().unwrap().to_string();
    let path = format!("/collections/facts/promotions/{cancelled}");
    let r = call(&server, "POST", &format!("{path}/cancel"), None);
    assert_eq!(r["id"], cancelled.as_str(), "{r}");
    let s = wait(&server, &path);
    assert_eq!(s["state"], "cancelled", "{s}");
    let r = server.call(
        "POST",
        "/collections/facts/promotions/nope/cancel",
        None,
        ADMIN,
    );
    assert_eq!(r.status, 404, "{:?}", r.body);

    // A short promotion, done and activated.
    let short = json!({"all": true, "strategies": ["cloze"], "steps": 2, "rank": 4, "force": true});
    let p = call(&server, "POST", "/collections/facts/promote", Some(short));
    let done = p["id"].as_str().unwrap().to_string();
    let s = wait(&server, &format!("/collections/facts/promotions/{done}"));
    assert_eq!(s["state"], "done", "{s}");
    assert_eq!(s["report"]["activated"], true, "{s}");

    let backup = dir.path().join("backup");
    let (ok, out) = engram(Some(&server), &["backup", backup.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(backup.join("adapters").is_dir() && backup.join("promotions").is_dir());

    // Into a new directory.
    let fresh = dir.path().join("fresh");
    let (ok, out) = restore(&backup, &fresh, false);
    assert!(ok, "{out}");
    assert_restored(&fresh, &audit, &done, &cancelled);

    // Over the original one: refused while its server runs, then replaced.
    let (ok, out) = restore(&backup, &data, true);
    assert!(!ok && out.contains("in use"), "{out}");
    drop(server);
    call_delete_everything(&data);
    let (ok, out) = restore(&backup, &data, true);
    assert!(ok && out.contains("moved the old data directory"), "{out}");
    assert_restored(&data, &audit, &done, &cancelled);

    // A damaged backup: the restore fails and the target stays as it was.
    let damaged = dir.path().join("damaged");
    copy_dir(&backup, &damaged);
    for entry in std::fs::read_dir(&damaged).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "sst") {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(entry.path())
                .unwrap();
            f.set_len(f.metadata().unwrap().len() / 2).unwrap();
        }
    }
    let (ok, out) = restore(&damaged, &fresh, true);
    assert!(!ok && out.contains("damaged"), "{out}");
    assert_restored(&fresh, &audit, &done, &cancelled);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("restoring")), "{names:?}");
}

/// Empties the database the way a mistake would (the collection deleted), so the
/// forced restore visibly brings it back.
fn call_delete_everything(data: &Path) {
    let server = Server::start(data, &["--api-keys", KEYS, "--lazy-models"], &[]);
    call(&server, "DELETE", "/collections/facts", None);
    let r = server.call("GET", "/collections/facts", None, ADMIN);
    assert_eq!(r.status, 404, "{:?}", r.body);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
