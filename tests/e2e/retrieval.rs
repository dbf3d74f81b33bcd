//! The RAG path with the real MiniLM model: 300 Quoref passages in, their
//! questions as queries, the right passage in the top 10 for >= 80%.

use serde_json::json;

use crate::support::{quoref, Server};

#[test]
fn quoref_questions_find_their_passages() {
    let data = quoref();
    assert_eq!(data.len(), 300);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    assert_eq!(server.put("/collections/quoref", json!({})).status, 200);

    let started = std::time::Instant::now();
    for batch in data.chunks(32) {
        let docs: Vec<_> = batch
            .iter()
            .map(|p| json!({"id": p["id"], "text": p["text"], "metadata": {"source": "quoref"}}))
            .collect();
        let r = server.post(
            "/collections/quoref/documents",
            json!({ "documents": docs }),
        );
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let insert_s = started.elapsed().as_secs_f64();

    let (mut found, mut total, mut rr) = (0, 0, 0.0);
    for p in &data {
        for q in p["questions"].as_array().unwrap() {
            let r = server.post(
                "/collections/quoref/query",
                json!({"text": q["question"], "k": 10, "include": []}),
            );
            assert_eq!(r.status, 200, "{:?}", r.body);
            let hits = r.body["hits"].as_array().unwrap();
            assert_eq!(hits.len(), 10);
            total += 1;
            if let Some(rank) = hits.iter().position(|h| h["id"] == p["id"]) {
                found += 1;
                rr += 1.0 / (rank + 1) as f64;
            }
        }
    }
    let recall = found as f64 / total as f64;
    eprintln!(
        "quoref: 300 passages inserted in {insert_s:.1}s; {total} questions: recall@10 {recall:.3}, MRR {:.3}",
        rr / total as f64
    );
    assert!(total >= 300);
    assert!(recall >= 0.8, "recall@10 {recall:.3} < 0.8");
}
