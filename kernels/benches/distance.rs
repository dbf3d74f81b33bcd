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

/// Bytes streamed per iteration of the scan group: far beyond any last-level cache.
const SCAN_BYTES: usize = 256 << 20;

/// One query against every row of a matrix much larger than the caches, next to a
/// plain single-core read of as many bytes: the first figures above are the kernels
/// on cached vectors, these say how near a scan of uncached vectors comes to what one
/// core can pull from memory at all (the bound an exact scan or rescoring works
/// against).
fn scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan_256MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(SCAN_BYTES as u64));
    let words: Vec<u64> = (0..SCAN_BYTES / 8).map(|i| i as u64 * 31).collect();
    group.bench_function("memory read (u64 sum)", |bench| {
        bench.iter(|| {
            black_box(&words)
                .iter()
                .fold(0u64, |acc, &w| acc.wrapping_add(w))
        })
    });
    drop(words);
    let matrix: Vec<f32> = (0..SCAN_BYTES / 4)
        .map(|i| (i % 97) as f32 / 97.0)
        .collect();
    for dim in DIMS {
        let (query, _) = inputs(dim);
        let rows = matrix.len() / dim;
        group.throughput(Throughput::Bytes((rows * dim * size_of::<f32>()) as u64));
        group.bench_with_input(BenchmarkId::new("dot", dim), &dim, |bench, _| {
            bench.iter(|| {
                black_box(&matrix)
                    .chunks_exact(dim)
                    .map(|row| kernels::dot(&query, row))
                    .sum::<f32>()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = distances, int8, scan
}
criterion_main!(benches);
