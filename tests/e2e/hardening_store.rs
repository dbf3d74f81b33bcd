//! Collections over HTTP when things go sideways: adapter operations on a collection
//! that never had an adapter answer cleanly, a query says whether its search was
//! complete, and a collection deleted and created again is a new incarnation.

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
