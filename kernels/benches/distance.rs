//! Scalar reference vs the dispatched kernel for the distances the HNSW hot
//! loop and rescoring call, at common embedding sizes (50: GloVe, 384:
//! MiniLM, 784: MNIST, 1536: OpenAI). Throughput is the bytes of both inputs,
//! so criterion's report reads directly as memory bandwidth (GB/s).
//!
//! `cargo bench -p engram-kernels` (measurement time is kept short: the
//! kernels are tiny and stable). `ENGRAM_KERNELS=avx2+fma cargo bench ...`
//! measures the AVX2 kernels on an AVX-512 machine.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engram_kernels::{self as kernels, scalar};

const DIMS: [usize; 4] = [50, 384, 784, 1536];

type PairFn = fn(&[f32], &[f32]) -> f32;

/// Deterministic, non-trivial inputs (no RNG needed for timing).
fn inputs(dim: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..dim)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0)
        .collect();
    let b = (0..dim)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
        .collect();
    (a, b)
}

fn bench_pair(c: &mut Criterion, name: &str, reference: PairFn, dispatched: PairFn) {
    let mut group = c.benchmark_group(name);
    for dim in DIMS {
        let (a, b) = inputs(dim);
        group.throughput(Throughput::Bytes((2 * dim * size_of::<f32>()) as u64));
        group.bench_with_input(BenchmarkId::new("scalar", dim), &dim, |bench, _| {
            bench.iter(|| reference(black_box(&a), black_box(&b)))
        });
        group.bench_with_input(
            BenchmarkId::new(kernels::backend(), dim),
            &dim,
            |bench, _| bench.iter(|| dispatched(black_box(&a), black_box(&b))),
        );
    }
    group.finish();
}

fn distances(c: &mut Criterion) {
    eprintln!("dispatched backend: {}", kernels::backend());
    bench_pair(c, "dot", scalar::dot, kernels::dot);
    bench_pair(c, "l2_squared", scalar::l2_squared, kernels::l2_squared);
    bench_pair(
        c,
        "cosine",
        scalar::cosine_similarity,
        kernels::cosine_similarity,
    );
}

fn int8(c: &mut Criterion) {
    let mut group = c.benchmark_group("dot_i8");
    for dim in DIMS {
        let a: Vec<i8> = (0..dim).map(|i| (i * 37 % 251) as i8).collect();
        let b: Vec<i8> = (0..dim).map(|i| (i * 53 % 241) as i8).collect();
        group.throughput(Throughput::Bytes((2 * dim) as u64));
        group.bench_with_input(BenchmarkId::new("scalar", dim), &dim, |bench, _| {
            bench.iter(|| scalar::dot_i8(black_box(&a), black_box(&b)))
        });
        group.bench_with_input(BenchmarkId::new("dispatched", dim), &dim, |bench, _| {
            bench.iter(|| kernels::dot_i8(black_box(&a), black_box(&b)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = distances, int8
}
criterion_main!(benches);
