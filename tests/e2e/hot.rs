//! Hot clusters: queries' results are counted, documents are clustered by topic, and
//! the clusters come back ranked by hit share, over HTTP and from `engram hot`; the
//! counts survive a restart.

use serde_json::json;

use crate::support::Server;

/// A unit vector near axis `axis` of 8, nudged by `i` so no two are equal.
fn near_axis(axis: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.05f32; 8];
    v[axis] = 1.0;
    v[(axis + 1 + i % 6) % 8] += 0.02 * i as f32;
    v
}

#[test]
fn queries_make_clusters_hot() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--lazy-models"], &[]);
    assert_eq!(
        server
            .put("/collections/topics", json!({"dimension": 8}))
            .status,
        200
    );
    let mut docs = Vec::new();
    for (axis, topic) in [(0, "rust"), (3, "cooking"), (6, "tennis")] {
        for i in 0..10 {
            docs.push(
                json!({"id": format!("{topic}-{i}"), "vector": near_axis(axis, i),
                             "text": format!("A note about {topic}, number {i}.")}),
            );
        }
    }
    let r = server.post(
        "/collections/topics/documents",
        json!({ "documents": docs }),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);

    // 12 queries about cooking, 3 about tennis, none about rust.
    for (axis, n) in [(3, 12), (6, 3)] {
        for i in 0..n {
            let r = server.post(
                "/collections/topics/query",
                json!({"vector": near_axis(axis, i), "k": 2}),
            );
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
    // Counts are written out at most every 2 s: one more query after that flushes them.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    server.post(
        "/collections/topics/query",
        json!({"vector": near_axis(6, 0), "k": 2}),
    );

    let check = |server: &Server| {
        let r = server.get("/collections/topics/clusters?k=3&top=2");
        assert_eq!(r.status, 200, "{:?}", r.body);
        let c = r.body["clusters"].as_array().unwrap().clone();
        assert_eq!(c.len(), 3, "{c:?}");
        for (rank, topic, hits) in [(0, "cooking", 24.0), (1, "tennis", 8.0), (2, "rust", 0.0)] {
            assert_eq!(c[rank]["documents"], 10);
            let ids = c[rank]["ids"].as_array().unwrap();
            assert!(
                ids.iter().all(|i| i.as_str().unwrap().starts_with(topic)),
                "{:?}",
                c[rank]
            );
            let got = c[rank]["hits"].as_f64().unwrap();
            assert!(
                (got - hits).abs() < 0.01,
                "{topic}: {got} hits, want {hits}"
            );
        }
        assert!((c[0]["hit_share"].as_f64().unwrap() - 0.75).abs() < 0.01);
        assert!(c[0]["top"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("cooking"));
    };
    check(&server);
    server.restart();
    check(&server);

    let text = server.cli(&["hot", "topics", "--k", "3"], None);
    assert!(
        text.contains("75.0%") && text.contains("cooking-"),
        "{text}"
    );

    assert_eq!(server.get("/collections/topics/clusters?k=0").status, 400);
    assert_eq!(server.get("/collections/nope/clusters").status, 404);
}
