//! Collections over HTTP when things go sideways: adapter operations on a collection
//! that never had an adapter answer cleanly, a query says whether its search was
//! complete (and a very selective filter finds every match), and a collection deleted
//! and created again is a new incarnation.

use serde_json::json;

use crate::support::Server;

#[test]
fn adapters_of_a_collection_never_promoted_and_incarnations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--lazy-models"], &[]);
    let r = server.put("/collections/plain", json!({"dimension": 2}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let first = r.body["incarnation"].as_u64().unwrap();
    assert_ne!(first, 0);

    // Deactivating nothing is a no-op, not a 500 about a missing directory.
    let r = server.post("/collections/plain/adapters/deactivate", json!({}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["adapters"], json!([]));
    let r = server.get("/collections/plain/adapters");
    assert_eq!((r.status, &r.body["adapters"]), (200, &json!([])));
    let r = server.post("/collections/plain/adapters/rollback", json!({}));
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(r.body["error"]["message"].is_string());
    let r = server.post("/collections/nope/adapters/deactivate", json!({}));
    assert_eq!(r.status, 404, "{:?}", r.body);

    // A query says its search was complete.
    let r = server.post(
        "/collections/plain/documents",
        json!({"documents": [{"id": "a", "vector": [1.0, 0.0], "metadata": {"t": 1}}]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = server.post(
        "/collections/plain/query",
        json!({"vector": [1.0, 0.1], "filter": {"key": "t", "eq": 2}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["exhaustive"], json!(true));
    assert_eq!(r.body["hits"], json!([]));

    // Deleted and created again: a new incarnation, and none of the old documents.
    assert_eq!(server.delete("/collections/plain").status, 204);
    let r = server.put("/collections/plain", json!({"dimension": 2}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_ne!(r.body["incarnation"].as_u64().unwrap(), first);
    assert_eq!(r.body["documents"], json!(0));
}

/// A filter matching 3 of 10,000 documents stops the graph walk at its work limit;
/// the exact scan over the matching vectors that follows returns all three.
#[test]
fn a_filter_matching_three_of_ten_thousand_documents_returns_all_three() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--lazy-models"], &[]);
    let r = server.put("/collections/big", json!({"dimension": 4}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rare = [17, 4_242, 9_998];
    let vector = |i: usize| {
        let x = i as f32;
        vec![
            (x * 0.37).sin(),
            (x * 0.11).cos(),
            (x * 0.07).sin() + 1.5,
            0.5,
        ]
    };
    for start in (0..10_000).step_by(1000) {
        let docs: Vec<_> = (start..start + 1000)
            .map(|i| {
                let tag = if rare.contains(&i) { "rare" } else { "common" };
                json!({"id": format!("d{i}"), "vector": vector(i), "metadata": {"tag": tag}})
            })
            .collect();
        let r = server.post("/collections/big/documents", json!({"documents": docs}));
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = server.post(
        "/collections/big/query",
        json!({"vector": vector(5_000), "k": 10, "filter": {"key": "tag", "eq": "rare"}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut ids: Vec<&str> = r.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["d17", "d4242", "d9998"], "{:?}", r.body);
    assert_eq!(r.body["exhaustive"], json!(true), "{:?}", r.body);
    assert!(r.body.get("warning").is_none(), "{:?}", r.body);
}
