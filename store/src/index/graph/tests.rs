//! The graph's tests: recall against exact search, deletes, the quantized walk.

use super::*;
use crate::index::test_points as points;

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

type L2Graph = Graph<fn(&[f32], &[f32]) -> f32>;

fn recall(graph: &L2Graph, data: &[Vec<f32>]) -> f64 {
    let queries = points(100, data[0].len(), 99);
    let mut hits = 0;
    for q in &queries {
        let mut exact: Vec<(f32, usize)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (l2(q, v), i))
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let got = graph.search(q, 10, 40, None);
        hits += exact[..10]
            .iter()
            .filter(|(_, i)| got.iter().any(|g| g.0 as usize == *i))
            .count();
    }
    hits as f64 / 1000.0
}

fn graph(dim: usize) -> L2Graph {
    Graph::new(dim, 16, 100, l2 as fn(&[f32], &[f32]) -> f32)
}

#[test]
fn the_parallel_build_matches_the_serial_one_in_recall_and_is_deterministic() {
    let data = points(8000, 12, 5);
    let views: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
    let mut serial = graph(12);
    for v in &views {
        serial.insert(v);
    }
    let build = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut g = graph(12);
        // Two calls: the second joins a graph already past PARALLEL_FROM.
        pool.install(|| {
            g.insert_many(&views[..3000]);
            g.insert_many(&views[3000..]);
        });
        g
    };
    let (one, two) = (build(1), build(2));
    assert_eq!(two.len(), data.len());
    assert_eq!(one.links0, two.links0, "the thread count changed the graph");
    assert_eq!(one.upper, two.upper);
    let (r_serial, r_parallel) = (recall(&serial, &data), recall(&two, &data));
    assert!(r_serial > 0.9, "serial recall {r_serial}");
    assert!(
        r_parallel > r_serial - 0.02,
        "parallel recall {r_parallel} vs serial {r_serial}"
    );
    // Every node is reachable: each one finds itself.
    for (i, v) in data.iter().enumerate().step_by(97) {
        assert_eq!(two.search(v, 1, 40, None)[0].0 as usize, i);
    }
}

#[test]
fn reordering_renumbers_nodes_without_changing_any_result() {
    let data = points(3000, 8, 3);
    let mut g = graph(8);
    for v in &data {
        g.insert(v);
    }
    g.quantize(QuantizedDistance::L2Squared);
    let queries = points(50, 8, 4);
    let before: Vec<Vec<(u32, f32)>> = queries.iter().map(|q| g.search(q, 10, 40, None)).collect();
    let old_of_new = g.reorder();
    let mut seen = old_of_new.clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..3000).collect::<Vec<u32>>(), "not a permutation");
    assert_ne!(
        old_of_new, seen,
        "breadth-first order is not the insertion order"
    );
    for (q, want) in queries.iter().zip(&before) {
        let got: Vec<(u32, f32)> = g
            .search(q, 10, 40, None)
            .into_iter()
            .map(|(n, d)| (old_of_new[n as usize], d))
            .collect();
        assert_eq!(&got, want);
    }
    // Inserting after a reorder still works and finds the new node.
    let extra = points(1, 8, 77).remove(0);
    let node = g.insert(&extra);
    assert_eq!(g.search(&extra, 1, 40, None)[0].0, node);
}
