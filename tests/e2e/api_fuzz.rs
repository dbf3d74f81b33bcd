//! Property-based fuzzing of the live API against its own `/openapi.json` with
//! schemathesis (pinned, in a venv the test makes): every response must be documented
//! (status, content type, body schema) and none may be a 5xx. A fixed seed and a
//! bounded number of examples per operation keep it repeatable and inside CI's time.

use std::process::Command;

use serde_json::json;

use crate::support::{python_venv, Server};

/// The pinned fuzzer.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// Operations left out, and why: each starts minutes of background work (an
/// inversion audit, LoRA training) or writes a backup wherever the body says; their
/// own end-to-end tests cover them (`audit`, `promote`, `jobs`, `restore`).
const EXCLUDED: &str = "^/collections/\\{name\\}/(audit|promote)$|^/admin/backup$";

#[test]
fn the_api_matches_its_openapi_spec_under_fuzzing() {
    let venv = python_venv(
        "schemathesis",
        &[SCHEMATHESIS],
        "import schemathesis; assert schemathesis.__version__ == '4.32.5'",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    // One collection of each kind, so fuzzed names sometimes hit a real one.
    assert_eq!(server.put("/collections/docs", json!({})).status, 200);
    let docs = json!({"documents": [
        {"id": "a", "text": "The Rhine flows through Basel.", "metadata": {"lang": "en"}},
        {"id": "b", "text": "Der Rhein fliesst durch Basel.", "metadata": {"lang": "de"}},
    ]});
    assert_eq!(server.post("/collections/docs/documents", docs).status, 200);
    assert_eq!(
        server
            .put("/collections/vecs", json!({"dimension": 3}))
            .status,
        200
    );

    let report = dir.path().join("report");
    let out = Command::new(venv.join("bin/schemathesis"))
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--seed", "1", "--max-examples", "10", "--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // Every check. Response time: within the generation deadline (120 s), not
        // schemathesis' default 10 s, which a generation on 2 shared cores can pass.
        .args(["--checks", "all", "--max-response-time", "120"])
        .args(["--exclude-path-regex", EXCLUDED])
        .args(["--request-timeout", "120", "--no-color"])
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(&report)
        .env(
            "HYPOTHESIS_STORAGE_DIRECTORY",
            dir.path().join("hypothesis"),
        )
        // schemathesis keeps a crash cache in `.schemathesis/` under its working
        // directory: the test's own temporary one, not the source tree.
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Tested:"), "{stdout}");
}
