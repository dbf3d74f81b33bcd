//! Benchmark of exact top-k on the GPU (`GpuExact`) and on the CPU
//! (`exact_topk`), one JSON line per measurement on stdout for
//! `kernels/benches/torch_topk.py` to compare with torch on the same GPU.
//!
//! ```sh
//! cargo build --release -p engram-kernels --features cuda --example gpu_topk
//! gpu_topk N DIM METRIC BATCHES KS CPU_QUERIES   # e.g. 1000000 384 dot 1,16,128,1024 10,100 16
//! ```

use std::time::Instant;

use engram_kernels::cuda::GpuExact;
use engram_kernels::{exact_topk, Metric, SplitMix};

fn list(arg: &str) -> Vec<usize> {
    arg.split(',')
        .map(|s| s.parse().expect("a comma-separated list of numbers"))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let n: usize = get(1, "1000000").parse().expect("N");
    let dim: usize = get(2, "384").parse().expect("DIM");
    let metric = match get(3, "dot").as_str() {
        "dot" => Metric::Dot,
        "cosine" => Metric::Cosine,
        "l2" => Metric::L2,
        other => panic!("metric must be dot, cosine or l2, got {other}"),
    };
    let batches = list(&get(4, "1,16,128,1024"));
    let ks = list(&get(5, "10,100"));
    let cpu_queries: usize = get(6, "16").parse().expect("CPU_QUERIES");
    let mname = format!("{metric:?}").to_lowercase();

    let mut rng = SplitMix::new(42);
    let t = Instant::now();
    let data: Vec<f32> = (0..n * dim).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let max_q = batches
        .iter()
        .copied()
        .chain([cpu_queries])
        .max()
        .unwrap_or(1);
    let queries: Vec<f32> = (0..max_q * dim).map(|_| rng.unit() * 2.0 - 1.0).collect();
    eprintln!(
        "data {n} x {dim} generated in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let gpu = match GpuExact::new(0) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("GPU skipped: {e}");
            None
        }
    };
    let t = Instant::now();
    let m = gpu
        .as_ref()
        .map(|g| g.upload(&data, dim, metric).expect("upload"));
    if let (Some(g), Some(_)) = (&gpu, &m) {
        eprintln!(
            "{}: uploaded in {:.3}s",
            g.device_name(),
            t.elapsed().as_secs_f64()
        );
    }

    for &k in &ks {
        let (Some(gpu), Some(m)) = (&gpu, &m) else {
            break;
        };
        for &q in &batches {
            let qs = &queries[..q * dim];
            gpu.search(m, qs, k).expect("warm-up search");
            let mut times = Vec::new();
            let start = Instant::now();
            while times.len() < 5 || (start.elapsed().as_secs_f64() < 0.5 && times.len() < 50) {
                let t = Instant::now();
                let top = gpu.search(m, qs, k).expect("search");
                times.push(t.elapsed().as_secs_f64());
                assert_eq!(top.queries(), q);
            }
            report("engram-gpu", n, dim, &mname, q, k, &mut times);
        }
    }

    // CPU exact path on all cores, and agreement with the GPU on the same batch.
    if cpu_queries > 0 {
        let k = ks[0];
        let qs = &queries[..cpu_queries * dim];
        let t = Instant::now();
        let cpu = exact_topk(&data, qs, dim, k, metric);
        let mut times = vec![t.elapsed().as_secs_f64()];
        report("engram-cpu", n, dim, &mname, cpu_queries, k, &mut times);
        if let (Some(gpu), Some(m)) = (&gpu, &m) {
            let gpu_top = gpu.search(m, qs, k).expect("search");
            let same = gpu_top
                .ids
                .iter()
                .zip(&cpu.ids)
                .filter(|(a, b)| a == b)
                .count();
            eprintln!("GPU vs CPU ids agree: {same} / {}", cpu.ids.len());
        }
    }
}

fn report(imp: &str, n: usize, dim: usize, metric: &str, q: usize, k: usize, times: &mut [f64]) {
    times.sort_by(f64::total_cmp);
    let ms = times[times.len() / 2] * 1e3;
    let qps = q as f64 / (ms / 1e3);
    println!(
        "{{\"impl\":\"{imp}\",\"n\":{n},\"dim\":{dim},\"metric\":\"{metric}\",\"q\":{q},\"k\":{k},\"ms\":{ms:.4},\"qps\":{qps:.1},\"threads\":{}}}",
        std::thread::available_parallelism().map_or(1, |t| t.get())
    );
    eprintln!(
        "{imp:>11} n={n} dim={dim} {metric} q={q:>5} k={k:>4}: {ms:9.3} ms/batch {qps:12.1} QPS"
    );
}
