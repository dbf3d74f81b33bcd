//! The matrix products of the BERT forward pass on faer, and attention as one fused
//! pass per (sequence, head).
//!
//! Why: on MiniLM's shapes candle 0.11's f32 matmul ran at 77-82 GFLOP/s on two cores
//! here, faer's at 89-162 (`cargo run --release -p engram-embedder --example
//! gemm_probe`), and matmuls are most of an embedding's time. Attention is computed
//! straight from the fused QKV output (no transposed copies of q, k and v), only over a
//! sequence's real tokens (right padding is skipped, not masked), with one task per
//! (sequence, head) on rayon's pool.

use candle_core::{CpuStorage, Device, Result, Storage, Tensor};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::cpu_ops::softmax_row_;

/// Runs `f` on the contiguous f32 data of `t`.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("the CPU kernels take f32 tensors on the CPU");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("the CPU kernels take contiguous tensors");
    };
    Ok(f(&data[start..end]))
}

/// `x · w_t + bias` for `x` `[m, k]`, `w_t` `[k, n]` (a weight stored transposed) and
/// `bias` `[n]`; returns `[m, n]`. Parallel over rayon's pool.
pub fn linear(x: &Tensor, w_t: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (k2, n) = w_t.dims2()?;
    if k != k2 || bias.dims1()? != n {
        candle_core::bail!(
            "linear: shapes [{m}, {k}] x [{k2}, {n}] + [{}]",
            bias.elem_count()
        );
    }
    let mut out = with_f32(bias, |b| b.repeat(m))?;
    with_f32(x, |xs| {
        with_f32(w_t, |ws| {
            let a = MatRef::from_row_major_slice(xs, m, k);
            let b = MatRef::from_row_major_slice(ws, k, n);
            let c = MatMut::from_row_major_slice_mut(&mut out, m, n);
            faer::linalg::matmul::matmul(c, Accum::Add, a, b, 1.0f32, Par::rayon(0));
        })
    })??;
    Tensor::from_vec(out, (m, n), &Device::Cpu)
}

/// Multi-head self-attention from the fused projection `qkv` `[batch * len, 3 * hidden]`
/// (q, k, v side by side, each `heads` blocks of `hidden / heads` columns), for sequences
/// of `lengths[b]` real tokens padded on the right to `len`. Returns the context
/// `[batch * len, hidden]`; padded rows are zero (they feed nothing real: real tokens
/// never attend to padding).
pub fn attention(qkv: &Tensor, lengths: &[usize], heads: usize) -> Result<Tensor> {
    let (tokens, width) = qkv.dims2()?;
    let batch = lengths.len();
    let hidden = width / 3;
    if batch == 0
        || !tokens.is_multiple_of(batch)
        || hidden * 3 != width
        || !hidden.is_multiple_of(heads)
    {
        candle_core::bail!(
            "attention: qkv [{tokens}, {width}] does not fit {batch} sequences of {heads} heads"
        );
    }
    let len = tokens / batch;
    if lengths.iter().any(|&l| l > len) {
        candle_core::bail!("attention: a sequence is longer than the padded length {len}");
    }
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let blocks: Vec<(usize, usize, Vec<f32>)> = with_f32(qkv, |all| {
        let tasks: Vec<(usize, usize)> = (0..batch)
            .flat_map(|b| (0..heads).map(move |h| (b, h)))
            .filter(|&(b, _)| lengths[b] > 0)
            .collect();
        tasks
            .into_par_iter()
            .map(|(b, h)| {
                let real = lengths[b];
                let rows = &all[b * len * width..];
                // Contiguous copies of this head's q, kᵀ and v: small matmuls on packed
                // operands run several times faster than on strided views.
                let (mut q, mut kt, mut v) = (
                    vec![0f32; real * d],
                    vec![0f32; d * real],
                    vec![0f32; real * d],
                );
                for t in 0..real {
                    let row = &rows[t * width..];
                    q[t * d..(t + 1) * d].copy_from_slice(&row[h * d..(h + 1) * d]);
                    v[t * d..(t + 1) * d]
                        .copy_from_slice(&row[2 * hidden + h * d..2 * hidden + (h + 1) * d]);
                    for (j, &x) in row[hidden + h * d..hidden + (h + 1) * d].iter().enumerate() {
                        kt[j * real + t] = x;
                    }
                }
                let q = MatRef::from_row_major_slice(&q, real, d);
                let k_t = MatRef::from_row_major_slice(&kt, d, real);
                let v = MatRef::from_row_major_slice(&v, real, d);
                let mut scores = vec![0f32; real * real];
                let s = MatMut::from_row_major_slice_mut(&mut scores, real, real);
                faer::linalg::matmul::matmul(s, Accum::Replace, q, k_t, scale, Par::Seq);
                for row in scores.chunks_mut(real) {
                    softmax_row_(row);
                }
                let mut context = vec![0f32; real * d];
                let c = MatMut::from_row_major_slice_mut(&mut context, real, d);
                let p = MatRef::from_row_major_slice(&scores, real, real);
                faer::linalg::matmul::matmul(c, Accum::Replace, p, v, 1.0f32, Par::Seq);
                (b, h, context)
            })
            .collect()
    })?;
    let mut out = vec![0f32; tokens * hidden];
    for (b, h, context) in blocks {
        for (t, row) in context.chunks(d).enumerate() {
            let at = (b * len + t) * hidden + h * d;
            out[at..at + d].copy_from_slice(row);
        }
    }
    Tensor::from_vec(out, (tokens, hidden), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (37, 19), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (19, 23), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 23, &dev)?;
        let ours = linear(&x, &w, &b)?;
        let reference = x.matmul(&w)?.broadcast_add(&b)?;
        let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        assert!(linear(&x, &b.unsqueeze(1)?, &b).is_err());
        Ok(())
    }
}
