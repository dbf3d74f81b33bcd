//! The RAG path with the real MiniLM model: 300 Quoref passages in, their 951
//! questions as queries in each query mode. Vector search finds the right
//! passage in the top 10 for >= 80%; hybrid search beats both vector and
//! keyword search on nDCG@10.

use engram_db::eval::metrics::{MeanMetrics, RetrievalMetrics};
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

    let measure = |mode: &str| -> (RetrievalMetrics, usize) {
        let mut mean = MeanMetrics::default();
        for p in &data {
            for q in p["questions"].as_array().unwrap() {
                let r = server.post(
                    "/collections/quoref/query",
                    json!({"text": q["question"], "k": 10, "include": [], "mode": mode}),
                );
                assert_eq!(r.status, 200, "{:?}", r.body);
                let ids: Vec<&str> = r.body["hits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h["id"].as_str().unwrap())
                    .collect();
                if mode != "keyword" {
                    assert_eq!(ids.len(), 10);
                }
                mean.add(&ids, &[p["id"].as_str().unwrap()]);
            }
        }
        (mean.mean(), mean.queries())
    };
    let (vector, total) = measure("vector");
    let (keyword, _) = measure("keyword");
    let (hybrid, _) = measure("hybrid");
    eprintln!("quoref: 300 passages inserted in {insert_s:.1}s; {total} questions:");
    for (mode, m) in [("vector", vector), ("keyword", keyword), ("hybrid", hybrid)] {
        eprintln!(
            "  {mode:8} nDCG@10 {:.3}  recall@1 {:.3}  recall@10 {:.3}  MRR@10 {:.3}",
            m.ndcg_at_10, m.recall_at_1, m.recall_at_10, m.mrr_at_10
        );
    }
    assert!(total >= 300);
    let recall = vector.recall_at_10;
    assert!(recall >= 0.8, "vector recall@10 {recall:.3} < 0.8");
    assert!(
        hybrid.ndcg_at_10 > vector.ndcg_at_10 && hybrid.ndcg_at_10 > keyword.ndcg_at_10,
        "hybrid nDCG@10 {:.3} does not beat vector {:.3} and keyword {:.3}",
        hybrid.ndcg_at_10,
        vector.ndcg_at_10,
        keyword.ndcg_at_10
    );
}
