//! A leakage audit on cluster mode's work queue end to end: three real
//! `nats-server` processes and three `engram serve --cluster` nodes on 127.0.0.1,
//! the real MiniLM and inversion probe (two documents, one step: mechanics, not
//! quality). An audit asked of node 2 is queued, runs on exactly one node, and its
//! status reads the same from every node; its report, stored through the
//! replicated log, is served by every node, the same. Deleting the collection on
//! one node removes the job records the cluster shares: the collection made again
//! lists no audit on any node. Every process is stopped by its pid at the end.

use std::time::Instant;

use serde_json::{json, Value};

use crate::cluster::{runs, three_nodes, wait};
use crate::support::{quoref_docs, Server};

fn status(server: &Server, id: &str) -> Value {
    let r = server.get(&format!("/collections/private/audits/{id}/status"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

fn audits(server: &Server) -> Vec<Value> {
    let r = server.get("/collections/private/audits");
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["audits"].as_array().unwrap().clone()
}

#[test]
fn a_queued_audit_runs_on_one_node_its_report_serves_from_every_node_and_goes_with_its_collection()
{
    let test_started = Instant::now();
    let (nats, _dirs, mut nodes) = three_nodes();
    let r = nodes[0].put("/collections/private", json!({}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut docs = quoref_docs(2, 120);
    docs.push(json!({"id": "doc-secret", "text": "Please write to Ada Lovelace at ada.lovelace@example.com about the account."}));
    let r = nodes[0].post(
        "/collections/private/documents",
        json!({ "documents": docs }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    for s in &nodes {
        wait("documents on every node", 60, || {
            (s.get("/collections/private").body["documents"] == 3).then_some(())
        });
    }

    // Checked on the node asked (a 400 is never queued), then queued: 202, "queued".
    let r = nodes[1].post("/collections/private/audit", json!({"sample": 0}));
    assert_eq!(r.status, 400, "{:?}", r.body);
    let body = json!({"sample": 2, "steps": 1, "beam": 1, "defences": ["rotation:7"]});
    let r = nodes[1].post("/collections/private/audit", body);
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(
        (r.body["state"].clone(), r.body["stage"].clone()),
        (json!("running"), json!("queued"))
    );
    let id = r.body["id"].as_str().unwrap().to_string();

    // One node takes it; every node says which.
    let first = wait("a node takes the audit", 60, || {
        let s = status(&nodes[2], &id);
        (runs(&s).len() == 1).then_some(s)
    });
    let worker = first["node"].as_u64().unwrap();
    let done = wait("the audit finishes", 600, || {
        let s = status(&nodes[0], &id);
        (s["state"] != "running").then_some(s)
    });
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(runs(&done), vec![worker], "ran once");
    assert!(done["report_seq"].as_u64().is_some(), "{done}");

    // Every node lists it once, the same, and serves the same report.
    let mut reports = Vec::new();
    for (i, s) in nodes.iter().enumerate() {
        let listed = audits(s);
        assert_eq!(listed.len(), 1, "node {}: {listed:?}", i + 1);
        assert_eq!(listed[0]["id"], id.as_str());
        assert_eq!(listed[0]["node"], worker);
        assert_eq!(listed[0]["grade"], done["grade"]);
        let r = s.get(&format!("/collections/private/audits/{id}"));
        assert_eq!(r.status, 200, "node {}: {:?}", i + 1, r.body);
        assert_eq!(r.body["documents"].as_array().unwrap().len(), 2);
        reports.push(r.body);
    }
    assert!(reports.iter().all(|r| *r == reports[0]), "reports differ");

    // Deleted on another node: the shared job records go with it, and the report
    // (collection state) with the collection on every node.
    let r = nodes[(worker as usize) % 3].call("DELETE", "/collections/private", None, None);
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = nodes[0].put("/collections/private", json!({}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    for (i, s) in nodes.iter().enumerate() {
        wait(
            &format!("node {} holds the new collection", i + 1),
            60,
            || (s.get("/collections/private").status == 200).then_some(()),
        );
        assert!(audits(s).is_empty(), "node {}: {:?}", i + 1, audits(s));
        let r = s.get(&format!("/collections/private/audits/{id}"));
        assert_eq!(r.status, 404, "node {}: {:?}", i + 1, r.body);
    }

    for s in &mut nodes {
        s.kill9();
    }
    drop(nats);
    eprintln!("test took {:.1} s", test_started.elapsed().as_secs_f64());
}
