// TEMPORARY profiling scratch; deleted before hand-off.
use candle_core::{Device, Tensor, D};
use std::time::Instant;
fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) {
    f();
    let t = Instant::now();
    for _ in 0..reps { f(); }
    println!("{name}: {:.1} ms", t.elapsed().as_secs_f64() * 1000.0 / reps as f64);
}
#[test]
fn ops() {
    let d = Device::Cpu;
    let h = Tensor::randn(0f32, 1.0, (8, 256, 1536), &d).unwrap();
    time("gelu_erf 8x256x1536", 5, || { h.gelu_erf().unwrap(); });
    time("gelu tanh 8x256x1536", 5, || { h.gelu().unwrap(); });
    let x = Tensor::randn(0f32, 1.0, (8, 256, 384), &d).unwrap();
    let w = Tensor::randn(0f32, 1.0, (1536, 384), &d).unwrap();
    time("linear 384->1536 (broadcast_matmul w.t())", 5, || { x.broadcast_matmul(&w.t().unwrap()).unwrap(); });
    let s = Tensor::randn(0f32, 1.0, (8, 12, 256, 256), &d).unwrap();
    time("softmax generic 8x12x256x256", 5, || { candle_nn::ops::softmax(&s, D::Minus1).unwrap(); });
    time("softmax_last_dim 8x12x256x256", 5, || { candle_nn::ops::softmax_last_dim(&s).unwrap(); });
    let m = Tensor::randn(0f32, 1.0, (8, 1, 1, 256), &d).unwrap();
    time("broadcast_add mask", 5, || { s.broadcast_add(&m).unwrap(); });
    let q = Tensor::randn(0f32, 1.0, (8, 12, 256, 32), &d).unwrap();
    time("q k^T", 5, || { q.matmul(&q.t().unwrap()).unwrap(); });
    time("probs v", 5, || { s.matmul(&q).unwrap(); });
    let x2 = Tensor::randn(0f32, 1.0, (8, 256, 384), &d).unwrap();
    time("transpose_for_scores", 5, || { x2.reshape((8,256,12,32)).unwrap().transpose(1,2).unwrap().contiguous().unwrap(); });
    time("div by sqrt", 5, || { (&s / 5.6).unwrap(); });
}
