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

/// `engram eval retrieval` end to end on a small slice: it inserts, queries in
/// the modes asked for, prints the table and writes the JSON report.
#[test]
fn eval_command_reports_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.json");
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/quoref_300.jsonl");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_engram"))
        .args([
            "eval",
            "retrieval",
            "--dataset",
            "quoref",
            "--limit",
            "20",
            "--mode",
            "keyword,hybrid",
            "--sweep",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("| keyword |") && stdout.contains("| hybrid |"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(report["passages"], 20);
    assert_eq!(report["encoder"], "minilm");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        for m in ["ndcg_at_10", "recall_at_1", "recall_at_10", "mrr_at_10"] {
            let x = r[m].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&x), "{m} {x}");
        }
        // 20 passages: the right one is almost always in the top 10.
        assert!(r["recall_at_10"].as_f64().unwrap() > 0.9, "{r}");
    }
    // The sweep fuses the same rankings hybrid mode fuses: at the default
    // setting it reproduces hybrid mode's figures.
    let sweep = report["sweep"].as_array().unwrap();
    assert_eq!(sweep.len(), 12);
    assert!(
        stdout.contains("| weighted w=0.4 |") && stdout.contains("| rrf k=60 |"),
        "{stdout}"
    );
    let default = sweep
        .iter()
        .find(|r| r["fusion"] == serde_json::json!({"method": "weighted", "vector_weight": 0.4}))
        .unwrap();
    assert_eq!(
        default["ndcg_at_10"], results[1]["ndcg_at_10"],
        "{default} vs {}",
        results[1]
    );

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_engram"))
        .args([
            "eval",
            "retrieval",
            "--dataset",
            "drop",
            "--data",
            "/nonexistent/drop.jsonl",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("scripts/extract_quoref.py"), "{err}");
}
