//! Cluster mode's work queue and shared adapters end to end: three real
//! `nats-server` processes and three `engram serve --cluster` nodes on 127.0.0.1,
//! the real SmolLM2 (two training steps: mechanics, not quality). A promotion asked
//! of node 1 runs on exactly one node, its status read the same from every node;
//! `kill -9` of that node mid-job hands the job to another node, which runs it to
//! the end (delivery 2); the adapter it activated then answers `weights` questions
//! on every node, the killed node included once restarted (it fetches the adapter
//! from the object store); an admin's deactivation and activation on one node reach
//! every node. Every process is stopped by its pid at the end (`kill9`, and the
//! NATS cluster's `Drop`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{runs, three_nodes, wait};
use crate::support::{quoref_docs, Server};

fn promotion(server: &Server, id: &str) -> Value {
    let r = server.get(&format!("/collections/facts/promotions/{id}"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

fn ask(server: &Server) -> crate::support::Reply {
    server.post(
        "/collections/facts/answer",
        json!({"question": "Who is the passage about?", "mode": "weights", "max_tokens": 8}),
    )
}

/// The active version `server` lists (None: none active).
fn active(server: &Server) -> Option<u64> {
    let r = server.get("/collections/facts/adapters");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let listed = r.body["adapters"].as_array().unwrap().clone();
    listed
        .iter()
        .find(|v| v["active"] == true)
        .and_then(|v| v["version"].as_u64())
}

#[test]
fn a_queued_promotion_runs_once_moves_off_a_killed_worker_and_serves_from_every_node() {
    let test_started = Instant::now();
    let (nats, _dirs, mut nodes) = three_nodes();
    let r = nodes[0].put("/collections/facts", json!({}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let docs = quoref_docs(2, 700);
    let r = nodes[0].post("/collections/facts/documents", json!({ "documents": docs }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    for s in &nodes {
        wait("documents on every node", 60, || {
            (s.get("/collections/facts").body["documents"] == 2).then_some(())
        });
    }

    // Queued on node 1: 202, "queued"; a second promotion of the collection is refused.
    let body = json!({"all": true, "strategies": ["cloze"], "steps": 2, "rank": 4, "force": true});
    let r = nodes[0].post("/collections/facts/promote", body);
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(
        (r.body["state"].clone(), r.body["stage"].clone()),
        (json!("running"), json!("queued"))
    );
    let id = r.body["id"].as_str().unwrap().to_string();
    let again = nodes[1].post(
        "/collections/facts/promote",
        json!({"all": true, "strategies": ["cloze"], "steps": 3}),
    );
    assert_eq!(again.status, 409, "{:?}", again.body);

    // One node takes it, and every node says which, with one run.
    let first = wait("a node takes the job", 60, || {
        let s = promotion(&nodes[2], &id);
        (runs(&s).len() == 1).then_some(s)
    });
    let worker = first["node"].as_u64().unwrap();
    for s in &nodes {
        let p = promotion(s, &id);
        assert_eq!(runs(&p), vec![worker], "{p}");
        assert_eq!(p["state"], "running", "{p}");
    }
    // kill -9 of the worker mid-job.
    std::thread::sleep(Duration::from_secs(3));
    let p = promotion(&nodes[(worker as usize) % 3], &id);
    assert_eq!(
        (p["state"].clone(), runs(&p)),
        (json!("running"), vec![worker]),
        "{p}"
    );
    eprintln!("killing node {worker} at stage {}", p["stage"]);
    let killed = Instant::now();
    nodes[worker as usize - 1].kill9();
    let survivor = &nodes[(worker as usize) % 3];

    // Delivered again to another node, which runs it to the end.
    let moved = wait("the job moves to another node", 120, || {
        let s = promotion(survivor, &id);
        (runs(&s).len() == 2).then_some(s)
    });
    eprintln!(
        "delivered again {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let second = moved["node"].as_u64().unwrap();
    assert_ne!(second, worker);
    assert_eq!(moved["delivery"], 2, "{moved}");
    let done = wait("the promotion finishes", 600, || {
        let s = promotion(survivor, &id);
        (s["state"] != "running").then_some(s)
    });
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(runs(&done), vec![worker, second], "ran once per delivery");
    assert_eq!(done["report"]["activated"], true, "{done}");

    // The killed node comes back; every node serves the adapter.
    nodes[worker as usize - 1].start_again();
    for (i, s) in nodes.iter().enumerate() {
        wait(&format!("node {} serves version 1", i + 1), 60, || {
            (active(s) == Some(1)).then_some(())
        });
        let r = ask(s);
        assert_eq!(r.status, 200, "node {}: {:?}", i + 1, r.body);
        assert_eq!(r.body["adapter"], json!({"name": "facts", "version": 1}));
    }
    // Still two runs: the finished job was not delivered again.
    assert_eq!(runs(&promotion(&nodes[0], &id)), vec![worker, second]);

    // An admin's change on one node reaches every node.
    let r = nodes[1].call("POST", "/collections/facts/adapters/deactivate", None, None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    for s in &nodes {
        wait("deactivated everywhere", 30, || {
            (active(s).is_none()).then_some(())
        });
        assert_eq!(ask(s).status, 409);
    }
    let r = nodes[2].call("POST", "/collections/facts/adapters/1/activate", None, None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    for s in &nodes {
        wait("activated everywhere", 30, || {
            (active(s) == Some(1)).then_some(())
        });
    }
    assert_eq!(ask(&nodes[0]).status, 200);

    for s in &mut nodes {
        s.kill9();
    }
    drop(nats);
    eprintln!("test took {:.1} s", test_started.elapsed().as_secs_f64());
}
