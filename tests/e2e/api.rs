//! The REST API's happy paths: collections, upserts and replacement, deletes,
//! filters, distances, the CLI against a live server, backup and restore,
//! metrics and the OpenAPI document.

use std::process::Command;

use serde_json::json;

use crate::support::{Reply, Server};

fn hit_ids(reply: &Reply) -> Vec<&str> {
    reply.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect()
}

#[test]
fn collections_documents_filters_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--lazy-models"], &[]);
    let r = s.put(
        "/collections/e",
        json!({"dimension": 2, "distance": "euclidean"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["distance"], "euclidean");
    // Same settings again: idempotent.
    assert_eq!(
        s.put(
            "/collections/e",
            json!({"dimension": 2, "distance": "euclidean"})
        )
        .status,
        200
    );

    let docs: Vec<_> = (0..50)
        .map(|i| json!({"id": format!("p{i}"), "vector": [i as f32, 0.0], "metadata": {"i": i, "parity": if i % 2 == 0 {"even"} else {"odd"}}}))
        .collect();
    let r = s.post("/collections/e/documents", json!({ "documents": docs }));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ids"].as_array().unwrap().len(), 50);

    let q = s.post(
        "/collections/e/query",
        json!({"vector": [10.2, 0.0], "k": 3}),
    );
    let ids = hit_ids(&q);
    assert_eq!(ids, ["p10", "p11", "p9"]);
    assert!(
        (q.body["hits"][0]["score"].as_f64().unwrap() - 0.2).abs() < 1e-4,
        "euclidean distance as score"
    );

    let q = s.post(
        "/collections/e/query",
        json!({"vector": [10.2, 0.0], "k": 3, "filter": {"and": [{"key": "parity", "eq": "odd"}, {"key": "i", "range": {"gte": 20}}]}}),
    );
    let ids = hit_ids(&q);
    assert_eq!(ids, ["p21", "p23", "p25"]);
    let q = s.post(
        "/collections/e/query",
        json!({"vector": [0.0, 0.0], "k": 10, "filter": {"key": "i", "in": [7, 3]}}),
    );
    assert_eq!(q.body["hits"].as_array().unwrap().len(), 2);

    // Replace p10 (moves far away), delete p11.
    let r = s.post(
        "/collections/e/documents",
        json!({"documents": [{"id": "p10", "vector": [1000.0, 0.0], "metadata": {"i": 10}}]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.delete("/collections/e/documents/p11").status, 204);
    assert_eq!(s.get("/collections/e/documents/p11").status, 404);
    let q = s.post(
        "/collections/e/query",
        json!({"vector": [10.2, 0.0], "k": 2}),
    );
    let ids = hit_ids(&q);
    assert_eq!(ids, ["p9", "p12"]);
    let info = s.get("/collections/e").body;
    assert_eq!(info["documents"], 49);
    assert_eq!(info["vectors"], 49);

    // Generated ids, and the document comes back with its vector on request.
    let r = s.post(
        "/collections/e/documents",
        json!({"documents": [{"vector": [5.0, 5.0]}]}),
    );
    let id = r.body["ids"][0].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    let d = s.get(&format!("/collections/e/documents/{id}?include=vector"));
    assert_eq!(d.body["vectors"], json!([[5.0, 5.0]]));

    // Dot product collections rank by inner product.
    s.put("/collections/d", json!({"dimension": 2, "distance": "dot"}));
    s.post("/collections/d/documents", json!({"documents": [
        {"id": "big", "vector": [10.0, 0.0]}, {"id": "aligned", "vector": [1.0, 0.0]}, {"id": "neg", "vector": [-3.0, 0.0]}]}));
    let q = s.post(
        "/collections/d/query",
        json!({"vector": [1.0, 0.0], "k": 3}),
    );
    let ids = hit_ids(&q);
    assert_eq!(ids, ["big", "aligned", "neg"]);
    assert!((q.body["hits"][0]["score"].as_f64().unwrap() - 10.0).abs() < 1e-3);

    // Deleting a collection removes it and its data, also after a restart.
    assert_eq!(s.delete("/collections/d").status, 204);
    assert_eq!(s.get("/collections/d").status, 404);

    let metrics = ureq::get(&s.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("engram_http_requests_total{method=\"POST\",route=\"/collections/{name}/query\",status=\"200\"}"), "{metrics}");
    assert!(
        metrics.contains("engram_collection_documents{collection=\"e\"} 50"),
        "{metrics}"
    );
    let spec = s.get("/openapi.json").body;
    assert!(spec["paths"]["/collections/{name}/query"]["post"].is_object());
    assert!(spec["components"]["schemas"]["QueryRequest"].is_object());
}

#[test]
fn cli_import_query_backup_restore() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[], &[]);
    let engram = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_engram"))
            .args(args)
            .env("ENGRAM_URL", s.url(""))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let file = dir.path().join("docs.jsonl");
    std::fs::write(
        &file,
        "{\"id\": \"cats\", \"text\": \"Cats are small domesticated felines that purr.\"}\n\
         {\"id\": \"rust\", \"text\": \"Rust is a systems programming language focused on safety.\"}\n\
         {\"id\": \"paris\", \"text\": \"Paris is the capital and largest city of France.\"}\n",
    )
    .unwrap();
    let (ok, out) = engram(&["import", "docs", file.to_str().unwrap(), "--create"]);
    assert!(ok, "{out}");
    assert!(out.contains("imported 3 documents"), "{out}");
    let (ok, out) = engram(&["query", "docs", "What is the French capital?", "-k", "1"]);
    assert!(ok, "{out}");
    assert!(out.contains("paris"), "{out}");
    let (ok, out) = engram(&["query", "docs", "programming language", "--mode", "keyword"]);
    assert!(
        ok && out.contains("rust") && out.contains("(1 hits"),
        "{out}"
    );
    let (ok, out) = engram(&[
        "query", "docs", "felines", "--mode", "hybrid", "--fusion", "rrf", "-k", "1",
    ]);
    assert!(ok && out.contains("cats"), "{out}");
    let (ok, out) = engram(&["query", "docs", "x", "--mode", "fuzzy"]);
    assert!(!ok && out.contains("vector, keyword or hybrid"), "{out}");
    let (ok, out) = engram(&["collections", "list"]);
    assert!(
        ok && out.contains("docs") && out.contains("minilm"),
        "{out}"
    );

    let backup = dir.path().join("backup");
    let (ok, out) = engram(&["backup", backup.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = engram(&["backup", backup.to_str().unwrap()]);
    assert!(
        !ok && out.contains("already exists"),
        "a backup never overwrites: {out}"
    );
    let (ok, out) = engram(&["query", "nope", "x"]);
    assert!(!ok && out.contains("404"), "{out}");

    let restored = dir.path().join("restored");
    let (ok, out) = engram(&[
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = engram(&[
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--force",
    ]);
    assert!(
        !ok && out.contains("in use"),
        "restoring over a live database is refused: {out}"
    );
    drop(s);
    let s2 = Server::start(&restored, &[], &[]);
    let q = s2.post(
        "/collections/docs/query",
        json!({"text": "purring pets", "k": 1}),
    );
    assert_eq!(q.body["hits"][0]["id"], "cats", "{:?}", q.body);
}

/// Keyword and hybrid search on a bring-your-own-vector collection whose
/// documents keep their text (no model needed): BM25 order, filters, the
/// index following overwrites and deletes, and surviving a kill -9.
#[test]
fn keyword_and_hybrid_modes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &["--lazy-models"], &[]);
    assert_eq!(s.put("/collections/k", json!({"dimension": 2})).status, 200);
    let docs = json!({"documents": [
        {"id": "a", "vector": [1.0, 0.0], "text": "The Zürich tram network. Trams everywhere, trams!", "metadata": {"city": "zurich"}},
        {"id": "b", "vector": [0.0, 1.0], "text": "A tram in Basel.", "metadata": {"city": "basel"}},
        {"id": "c", "vector": [0.7, 0.7], "text": "Bicycles in Copenhagen.", "metadata": {"city": "copenhagen"}},
        {"id": "v", "vector": [0.9, 0.1]}
    ]});
    assert_eq!(s.post("/collections/k/documents", docs).status, 200);
    let keyword = |s: &Server, body: serde_json::Value| {
        let mut body = body;
        body["mode"] = json!("keyword");
        let r = s.post("/collections/k/query", body);
        assert_eq!(r.status, 200, "{:?}", r.body);
        r
    };

    // "trams" stems to "tram"; a says it three times, b once; c and v share nothing.
    let r = keyword(&s, json!({"text": "TRAMS"}));
    assert_eq!(hit_ids(&r), ["a", "b"]);
    assert!(
        r.body["hits"][0]["score"].as_f64().unwrap() > r.body["hits"][1]["score"].as_f64().unwrap()
    );
    assert_eq!(r.body["hits"][0]["metadata"]["city"], "zurich");
    let span = &r.body["hits"][0]["chunk"];
    assert_eq!(
        (span["start"].as_u64(), span["end"].as_u64()),
        (Some(0), Some(50))
    );
    assert_eq!(hit_ids(&keyword(&s, json!({"text": "zürich"}))), ["a"]);
    let r = keyword(
        &s,
        json!({"text": "tram", "filter": {"key": "city", "eq": "basel"}}),
    );
    assert_eq!(hit_ids(&r), ["b"]);
    assert!(hit_ids(&keyword(&s, json!({"text": "submarine"}))).is_empty());

    // Hybrid: the vector [1, 0] is nearest to a, then v, c, b; keyword finds a
    // and b. Weighted fusion (w = 0.4): a = 0.4 + 0.6 = 1; b = 0 + 0.6 * norm_kw(b) = 0.
    let r = s.post(
        "/collections/k/query",
        json!({"mode": "hybrid", "text": "tram", "vector": [1.0, 0.0], "k": 4}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(hit_ids(&r)[0], "a");
    assert!((r.body["hits"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    let r = s.post(
        "/collections/k/query",
        json!({"mode": "hybrid", "text": "tram", "vector": [1.0, 0.0], "k": 4,
               "fusion": {"method": "rrf", "k": 60}, "filter": {"key": "city", "in": ["basel", "copenhagen"]}}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    // b: 1/62 (vector rank 2) + 1/61 (keyword rank 1); c: 1/61 (vector rank 1)
    assert_eq!(hit_ids(&r), ["b", "c"]);

    // Overwrite a (the old text's terms go) and delete b.
    let r = s.post(
        "/collections/k/documents",
        json!({"documents": [{"id": "a", "vector": [1.0, 0.0], "text": "Ferries of Zürich"}]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.delete("/collections/k/documents/b").status, 204);
    assert!(hit_ids(&keyword(&s, json!({"text": "tram"}))).is_empty());
    assert_eq!(hit_ids(&keyword(&s, json!({"text": "ferry"}))), ["a"]);
    let info = s.get("/collections/k").body;
    assert_eq!(
        (
            info["documents"].as_u64(),
            info["keyword_documents"].as_u64()
        ),
        (Some(3), Some(2))
    );

    // The keyword index is in RocksDB: a crash and a restart change nothing.
    let before =
        keyword(&s, json!({"text": "ferries zurich zürich copenhagen"})).body["hits"].clone();
    s.restart();
    let after =
        keyword(&s, json!({"text": "ferries zurich zürich copenhagen"})).body["hits"].clone();
    assert_eq!(before, after);
    assert_eq!(
        hit_ids(&keyword(&s, json!({"text": "tram"}))),
        Vec::<&str>::new()
    );

    let spec = s.get("/openapi.json").body;
    for schema in ["QueryMode", "Fusion"] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}
