//! Exact top-k: the CPU path against a plain sort, and (feature `cuda`) the
//! GPU path against the CPU path. GPU tests print a message and pass when no
//! CUDA driver is present (CI has no GPU).

use engram_kernels::{exact_topk, Metric, TopK};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const METRICS: [Metric; 3] = [Metric::Dot, Metric::Cosine, Metric::L2];

fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// Checks `got` against the reference `want` for the same inputs: same k and
/// shape, scores position by position within 1e-4 of the pair's magnitude
/// (`|q|·|x|`, so near-zero dot products are not held to a relative bound),
/// and every returned id really has the score it was returned with, so ids
/// may differ only where scores tie.
fn assert_same_topk(
    got: &TopK,
    want: &TopK,
    data: &[f32],
    queries: &[f32],
    dim: usize,
    metric: Metric,
) {
    assert_eq!(got.k, want.k, "k");
    assert_eq!(got.ids.len(), want.ids.len(), "result count");
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let max_norm = data.chunks_exact(dim).map(norm).fold(0.0f32, f32::max);
    let mut same_ids = 0;
    for (qi, qv) in queries.chunks_exact(dim).enumerate() {
        let mag = match metric {
            Metric::Cosine => 1.0,
            Metric::Dot => norm(qv) * max_norm,
            Metric::L2 => (norm(qv) + max_norm).powi(2),
        };
        let tol = 1e-4 * mag.max(1e-6);
        let (gi, gs) = got.row(qi);
        let (wi, ws) = want.row(qi);
        let mut seen = std::collections::HashSet::new();
        for j in 0..got.k {
            assert!(
                (gs[j] - ws[j]).abs() <= tol,
                "{metric:?} q{qi} rank {j}: score {} vs {} (tol {tol})",
                gs[j],
                ws[j]
            );
            let id = gi[j] as usize;
            assert!(seen.insert(id), "{metric:?} q{qi}: id {id} returned twice");
            let x = &data[id * dim..(id + 1) * dim];
            let true_score = metric.score(qv, x);
            assert!(
                (gs[j] - true_score).abs() <= tol,
                "{metric:?} q{qi} rank {j}: id {id} returned with {} but scores {true_score}",
                gs[j]
            );
            same_ids += usize::from(gi[j] == wi[j]);
        }
    }
    // Random data has few exact ties: nearly every id must agree.
    assert!(
        same_ids * 100 >= got.ids.len() * 95,
        "only {same_ids} of {} ids agree",
        got.ids.len()
    );
}

/// The plainest possible reference: score everything, sort.
fn sorted_reference(data: &[f32], queries: &[f32], dim: usize, k: usize, metric: Metric) -> TopK {
    let n = data.len() / dim;
    let k = k.min(n);
    let mut out = TopK {
        k,
        ..TopK::default()
    };
    for qv in queries.chunks_exact(dim) {
        let mut all: Vec<(f32, u32)> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, x)| (metric.score(qv, x), i as u32))
            .collect();
        all.sort_by(|a, b| {
            let o = a.0.total_cmp(&b.0);
            if metric.higher_is_better() {
                o.reverse()
            } else {
                o
            }
            .then(a.1.cmp(&b.1))
        });
        out.ids.extend(all[..k].iter().map(|p| p.1));
        out.scores.extend(all[..k].iter().map(|p| p.0));
    }
    out
}

#[test]
fn cpu_exact_matches_a_full_sort() {
    let mut rng = StdRng::seed_from_u64(7);
    for (n, dim, q, k) in [
        (1000, 50, 9, 10),
        (2500, 17, 3, 100),
        (5, 8, 2, 10),
        (3000, 384, 4, 1),
    ] {
        let data = random(&mut rng, n * dim);
        let queries = random(&mut rng, q * dim);
        for metric in METRICS {
            let got = exact_topk(&data, &queries, dim, k, metric);
            let want = sorted_reference(&data, &queries, dim, k, metric);
            assert_eq!(got.ids, want.ids, "{metric:?} n={n} dim={dim}");
            assert_same_topk(&got, &want, &data, &queries, dim, metric);
        }
    }
}

#[test]
fn cpu_exact_edge_cases() {
    let data = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
    let empty = exact_topk(&data, &[], 2, 5, Metric::Dot);
    assert_eq!((empty.k, empty.queries()), (3, 0));
    let all = exact_topk(&data, &[1.0, 0.5], 2, 10, Metric::Dot);
    assert_eq!(all.k, 3);
    assert_eq!(all.ids, [2, 0, 1]);
    assert_eq!(all.scores, [1.5, 1.0, 0.5]);
    let l2 = exact_topk(&data, &[1.0, 0.0], 2, 1, Metric::L2);
    assert_eq!((l2.ids[0], l2.scores[0]), (0, 0.0));
    assert_eq!(exact_topk(&[], &[1.0, 2.0], 2, 3, Metric::L2).k, 0);
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use engram_kernels::cuda::{self, GpuExact, MAX_K};
    use engram_kernels::KernelError;

    fn gpu() -> Option<GpuExact> {
        match GpuExact::new(0) {
            Ok(g) => {
                eprintln!("GPU: {}", g.device_name());
                Some(g)
            }
            Err(KernelError::NoCudaDriver) => {
                eprintln!("SKIPPED: no CUDA driver found, GPU test not run");
                None
            }
            Err(e) => panic!("CUDA driver present but GpuExact::new failed: {e}"),
        }
    }

    #[test]
    fn nvrtc_compiles_the_kernels() {
        if !cuda::nvrtc_present() {
            eprintln!("SKIPPED: no NVRTC found, kernels not compiled");
            return;
        }
        let ptx = cuda::compile("compute_90").expect("NVRTC compiles the kernels");
        assert!(ptx.to_src().contains("select_topk"));
    }

    #[test]
    fn no_driver_is_a_clear_error() {
        if cuda::driver_present() {
            eprintln!("driver present: nothing to check");
            return;
        }
        let err = GpuExact::new(0).err().expect("no GPU");
        assert_eq!(err, KernelError::NoCudaDriver);
        assert!(err.to_string().contains("no CUDA driver found"));
    }

    #[test]
    fn gpu_matches_cpu_on_odd_sizes() {
        let Some(gpu) = gpu() else { return };
        let mut rng = StdRng::seed_from_u64(11);
        // n not a multiple of the 128-row tile; q not a multiple either.
        for (n, dim, q) in [
            (1000, 50, 7),
            (3001, 384, 130),
            (777, 784, 5),
            (2049, 1536, 33),
            (129, 384, 1),
        ] {
            let data = random(&mut rng, n * dim);
            let queries = random(&mut rng, q * dim);
            for metric in METRICS {
                let m = gpu.upload(&data, dim, metric).unwrap();
                for k in [1, 10, 100, MAX_K] {
                    let got = gpu.search(&m, &queries, k).unwrap();
                    let want = exact_topk(&data, &queries, dim, k, metric);
                    assert_same_topk(&got, &want, &data, &queries, dim, metric);
                }
            }
            eprintln!("GPU == CPU: n={n} dim={dim} q={q}, k in 1, 10, 100, {MAX_K}");
        }
    }

    #[test]
    fn gpu_edge_cases() {
        let Some(gpu) = gpu() else { return };
        let mut rng = StdRng::seed_from_u64(12);
        let (n, dim) = (37, 50);
        let data = random(&mut rng, n * dim);
        let m = gpu.upload(&data, dim, Metric::L2).unwrap();
        // Empty batch.
        let empty = gpu.search(&m, &[], 10).unwrap();
        assert_eq!((empty.k, empty.queries(), empty.ids.len()), (10, 0, 0));
        // k > n: every row, sorted.
        let queries = random(&mut rng, 3 * dim);
        let all = gpu.search(&m, &queries, 100).unwrap();
        assert_eq!(all.k, n);
        assert_same_topk(
            &all,
            &exact_topk(&data, &queries, dim, 100, Metric::L2),
            &data,
            &queries,
            dim,
            Metric::L2,
        );
        // Duplicate rows tie: both must come back with the same score.
        let mut dup = data.clone();
        dup.extend_from_slice(&data[..dim]);
        let m2 = gpu.upload(&dup, dim, Metric::Dot).unwrap();
        let top = gpu.search(&m2, &data[..dim], 2).unwrap();
        let mut ids = top.ids.clone();
        ids.sort();
        assert_eq!(ids, [0, n as u32]);
        // Errors, not panics.
        assert!(matches!(
            gpu.search(&m, &queries, 0),
            Err(KernelError::InvalidK { .. })
        ));
        assert!(matches!(
            gpu.search(&m, &queries, MAX_K + 1),
            Err(KernelError::InvalidK { .. })
        ));
        assert!(matches!(
            gpu.search(&m, &queries[1..], 5),
            Err(KernelError::Shape { .. })
        ));
    }
}
