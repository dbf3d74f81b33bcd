//! The store's own tests, on vector collections and without models.

use super::*;
use crate::collection::DocumentRecord;
use crate::storage::VectorRecord;
use serde_json::json;

fn store(dir: &Path) -> Store {
    let no_models: Box<EncoderLoader> =
        Box::new(|name| Err(engram_embedder::Error::UnsupportedModel(name.to_string())));
    Store::open_with_loader(dir, Limits::default(), no_models).unwrap()
}

#[test]
fn selective_filters_still_return_every_match_in_exact_order() {
    let dir = tempfile::tempdir().unwrap();
    let e = store(dir.path());
    let req = CreateCollection {
        dimension: Some(8),
        ..Default::default()
    };
    e.create_collection("v", req).unwrap();
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let docs: Vec<DocumentInput> = (0..3000)
        .map(|i| DocumentInput {
            id: Some(format!("d{i}")),
            vector: Some((0..8).map(|_| next()).collect()),
            metadata: Some(json!({"rare": i % 600 == 7})),
            ..Default::default()
        })
        .collect();
    for batch in docs.chunks(1000) {
        e.upsert("v", batch.to_vec()).unwrap();
    }
    let query: Vec<f32> = (0..8).map(|_| next()).collect();
    let req = QueryRequest {
        vector: Some(query.clone()),
        k: Some(10),
        ef: Some(10),
        filter: Some(json!({"key": "rare", "eq": true})),
        ..Default::default()
    };
    let hits = e.query("v", &req).unwrap().hits;
    let mut expected: Vec<(f32, String)> = docs
        .iter()
        .filter(|d| d.metadata.as_ref().unwrap()["rare"] == json!(true))
        .map(|d| {
            let v = d.vector.as_ref().unwrap();
            (
                engram_kernels::cosine_similarity(&query, v),
                d.id.clone().unwrap(),
            )
        })
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(_, id)| id.as_str()).collect();
    // The graph walk goes on through non-matching nodes until it has enough
    // matches, so even a 1-in-600 filter with ef 10 finds every match.
    assert_eq!(got, want, "all 5 matches, best first");
    for (h, (score, _)) in hits.iter().zip(&expected) {
        assert!((h.score - score).abs() < 1e-4);
    }
}

#[test]
fn an_int8_collection_quantizes_after_a_thousand_vectors_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let hnsw: IndexParams = serde_json::from_value(json!({"quantization": "int8"})).unwrap();
    assert_eq!(
        (hnsw.m, hnsw.ef_construction),
        (16, 200),
        "the rest default"
    );
    assert_eq!(hnsw, IndexParams::default(), "int8 is the default");
    let f32_only: IndexParams = serde_json::from_value(json!({"quantization": "none"})).unwrap();
    let vector = |i: usize| -> Vec<f32> {
        (0..8u64)
            .map(|j| {
                let x = (i as u64 * 8 + j).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                ((x ^ (x >> 29)) % 10_007) as f32 / 10_007.0 - 0.5
            })
            .collect()
    };
    let docs = |range: std::ops::Range<usize>| -> Vec<DocumentInput> {
        range
            .map(|i| DocumentInput {
                id: Some(format!("d{i}")),
                vector: Some(vector(i)),
                ..Default::default()
            })
            .collect()
    };
    let create = |e: &Store, name: &str, hnsw: IndexParams| {
        let req = CreateCollection {
            dimension: Some(8),
            hnsw: Some(hnsw),
            ..Default::default()
        };
        e.create_collection(name, req).unwrap();
    };
    {
        let e = store(dir.path());
        create(&e, "q", hnsw);
        e.upsert("q", docs(0..900)).unwrap();
        assert!(
            !e.collection_info("q").unwrap().quantized,
            "too few to learn a range"
        );
        e.upsert("q", docs(900..1500)).unwrap();
        let info = e.collection_info("q").unwrap();
        assert!(info.quantized);
        // f32 vector + a code row (one cache line at 8 dimensions) + 33 link
        // slots, and the upper layers.
        assert!(info.index_bytes_per_vector >= (32 + 64 + 33 * 4 + 1) as f64);

        create(&e, "f", f32_only);
        e.upsert("f", docs(0..900)).unwrap();
        e.upsert("f", docs(900..1500)).unwrap();
        let info = e.collection_info("f").unwrap();
        assert!(!info.quantized, "opted out");
        assert!(info.index_bytes_per_vector < (32 + 64 + 33 * 4 + 1) as f64);
    }
    let e = store(dir.path());
    assert!(
        e.collection_info("q").unwrap().quantized,
        "rebuilt quantized"
    );
    let req = QueryRequest {
        vector: Some(vector(1234)),
        k: Some(1),
        ..Default::default()
    };
    let hit = e.query("q", &req).unwrap().hits.remove(0);
    assert_eq!(hit.id, "d1234");
    assert!(
        (hit.score - 1.0).abs() < 1e-5,
        "rescored exactly: {}",
        hit.score
    );
}

fn keyword_ids(e: &Store, text: &str) -> Vec<String> {
    let req = QueryRequest {
        text: Some(text.to_string()),
        mode: Some(QueryMode::Keyword),
        ..Default::default()
    };
    e.query("t", &req)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn doc(id: &str, text: Option<&str>) -> DocumentInput {
    DocumentInput {
        id: Some(id.to_string()),
        text: text.map(String::from),
        vector: Some(vec![1.0, 0.5]),
        ..Default::default()
    }
}

#[test]
fn keyword_index_follows_overwrites_deletes_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = store(dir.path());
        let req = CreateCollection {
            dimension: Some(2),
            ..Default::default()
        };
        e.create_collection("t", req).unwrap();
        // The same id twice in one batch: the later document wins.
        let batch = vec![
            doc("a", Some("alpha beta")),
            doc("b", Some("alpha")),
            doc("a", Some("gamma")),
        ];
        e.upsert("t", batch).unwrap();
        assert_eq!(keyword_ids(&e, "alpha"), ["b"]);
        assert_eq!(keyword_ids(&e, "gamma"), ["a"]);
        // Text removed by an overwrite without text; then a delete.
        e.upsert("t", vec![doc("a", None)]).unwrap();
        assert!(keyword_ids(&e, "gamma").is_empty());
        e.upsert("t", vec![doc("c", Some("alpha delta"))]).unwrap();
        e.delete_document("t", "b").unwrap();
        assert_eq!(keyword_ids(&e, "alpha"), ["c"]);
    }
    let e = store(dir.path());
    assert_eq!(keyword_ids(&e, "alpha delta beta gamma"), ["c"]);
    assert_eq!(e.collection("t").unwrap().keywords().len(), 1);
}

#[test]
fn a_database_from_before_keyword_search_gets_its_index_built() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What the store held before keyword search: no `keywords` records.
        let storage = Storage::open(dir.path()).unwrap();
        let e = store(tempfile::tempdir().unwrap().path());
        let config = e
            .create_collection(
                "t",
                CreateCollection {
                    dimension: Some(2),
                    ..Default::default()
                },
            )
            .unwrap()
            .config;
        let mut batch = storage.batch();
        storage.put_collection(&mut batch, "t", &config);
        for (n, text) in ["old text", "older text"].iter().enumerate() {
            let rec = DocumentRecord {
                text: Some(text.to_string()),
                metadata: json!({}),
                chunks: vec![n as u64 + 1],
                seq: 1,
            };
            storage.put_document(&mut batch, "t", &format!("d{n}"), &rec);
            let vector = VectorRecord {
                doc_id: format!("d{n}"),
                chunk_index: 0,
                start: 0,
                end: text.len() as u32,
                vector: vec![1.0, 0.5],
                context: 0,
            };
            storage.put_vector(&mut batch, "t", n as u64 + 1, &vector);
        }
        storage.commit(batch, true).unwrap();
    }
    let e = store(dir.path());
    assert_eq!(keyword_ids(&e, "older"), ["d1"]);
    assert_eq!(keyword_ids(&e, "text").len(), 2);
    drop(e);
    // Built once and stored: a second open loads it.
    let storage = Storage::open(dir.path()).unwrap();
    assert!(storage.keyword_stats("t").unwrap().is_some());
}

#[test]
fn embed_refuses_a_contextual_encoder_outside_a_collection() {
    let dir = tempfile::tempdir().unwrap();
    let e = store(dir.path());
    let req = EmbedRequest {
        texts: vec!["some text".into()],
        model: Some("contextual-learned".into()),
    };
    match e.embed(&req) {
        Err(Error::InvalidInput { what, message }) => {
            assert_eq!(what, "model");
            assert!(message.contains("/v1/embeddings"), "{message}");
        }
        other => panic!("expected invalid input, got {other:?}"),
    }
}
