//! Exact top-k on an NVIDIA GPU (feature `cuda`).
//!
//! The contract, in three calls:
//!
//! ```no_run
//! # fn main() -> engram_kernels::Result<()> {
//! use engram_kernels::{cuda::GpuExact, Metric};
//! let gpu = GpuExact::new(0)?; // KernelError::NoCudaDriver without a driver
//! let data = vec![0.5f32; 1000 * 64];
//! let matrix = gpu.upload(&data, 64, Metric::Dot)?; // once
//! let top = gpu.search(&matrix, &data[..3 * 64], 10)?; // per batch of queries
//! assert_eq!((top.k, top.queries()), (10, 3));
//! # Ok(()) }
//! ```
//!
//! CUDA is loaded at run time (cudarc with `dynamic-loading`) and the kernels
//! are compiled from [`source`]'s strings by NVRTC when [`GpuExact::new`]
//! runs, so building with `--features cuda` needs no toolkit and a binary
//! built so still runs (and reports the missing driver) on a machine without
//! one.
//!
//! A search is two kernels per sub-batch of queries: `gemm_keys`, a tiled
//! shared-memory SGEMM (`Q·Xᵀ`, FP32 throughout) whose epilogue writes cost
//! keys, then `select_topk`, one block per query: a 4-pass radix select of the
//! k-th smallest key and a bitonic sort of the k survivors. Sub-batches are
//! sized so the `queries × n` key matrix stays under [`KEY_BYTES`].

mod source;

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, Ptx};

pub use source::MAX_K;
use source::{GEMM_THREADS, KERNELS, SELECT_THREADS, SOURCE, TILE};

use crate::{KernelError, Metric, Result, TopK};

/// Most bytes of the `queries × n` key matrix held at once.
pub const KEY_BYTES: usize = 2 << 30;

fn cuda_err(e: DriverError) -> KernelError {
    KernelError::Cuda(e.to_string())
}

/// Whether the CUDA driver library can be loaded (no panic when it cannot).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library by its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether NVRTC, the run-time compiler, can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the NVRTC library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles [`source`]'s kernels to PTX for `arch` (e.g. `"compute_90"`).
/// Needs NVRTC only, no GPU.
pub fn compile(arch: &str) -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(KernelError::NoNvrtc);
    }
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "-std=c++17".into()],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts)
        .map_err(|e| KernelError::Nvrtc(e.to_string()))
}

/// A GPU with the exact-search kernels loaded.
pub struct GpuExact {
    stream: Arc<CudaStream>,
    norms: CudaFunction,
    gemm: CudaFunction,
    select: CudaFunction,
    name: String,
}

/// An `n × dim` matrix resident on the GPU, with what its metric needs:
/// normalized rows for cosine, squared norms for L2.
pub struct GpuMatrix {
    data: CudaSlice<f32>,
    sq_norms: CudaSlice<f32>,
    n: usize,
    dim: usize,
    metric: Metric,
}

impl GpuMatrix {
    /// Rows.
    pub fn len(&self) -> usize {
        self.n
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Components per row.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The metric searches use.
    pub fn metric(&self) -> Metric {
        self.metric
    }
}

impl GpuExact {
    /// Opens GPU `ordinal` and compiles the kernels for it.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_present() {
            return Err(KernelError::NoCudaDriver);
        }
        let count = CudaContext::device_count().map_err(cuda_err)?;
        if ordinal >= count.max(0) as usize {
            return Err(KernelError::Cuda(format!(
                "no CUDA device {ordinal} ({count} present)"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err)?;
        let (major, minor) = ctx.compute_capability().map_err(cuda_err)?;
        let ptx = compile(&format!("compute_{major}{minor}"))?;
        let module = ctx.load_module(ptx).map_err(cuda_err)?;
        let f = |name: &str| module.load_function(name).map_err(cuda_err);
        let name = ctx.name().map_err(cuda_err)?;
        Ok(Self {
            norms: f(KERNELS[0])?,
            gemm: f(KERNELS[1])?,
            select: f(KERNELS[2])?,
            stream: ctx.default_stream(),
            name,
        })
    }

    /// The device's name, for logs and benchmarks.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Copies `data` (`n × dim`, row-major) to the GPU for searches with
    /// `metric`. Cosine rows are normalized first (zero rows stay zero).
    pub fn upload(&self, data: &[f32], dim: usize, metric: Metric) -> Result<GpuMatrix> {
        let n = rows(data.len(), dim)?;
        let normalized;
        let host = if metric == Metric::Cosine {
            normalized = normalized_rows(data, dim);
            &normalized
        } else {
            data
        };
        let s = &self.stream;
        let buf = s.clone_htod(host).map_err(cuda_err)?;
        let mut sq_norms = s.alloc_zeros::<f32>(n.max(1)).map_err(cuda_err)?;
        if metric == Metric::L2 && n > 0 {
            let warps = 8u32;
            let cfg = LaunchConfig {
                grid_dim: ((n as u32).div_ceil(warps), 1, 1),
                block_dim: (32 * warps, 1, 1),
                shared_mem_bytes: 0,
            };
            let (n64, d32) = (n as i64, dim as i32);
            let mut l = s.launch_builder(&self.norms);
            l.arg(&buf).arg(&mut sq_norms).arg(&n64).arg(&d32);
            // SAFETY: argument types and order match `row_sq_norms`; `buf`
            // holds n × dim floats and `sq_norms` n.
            unsafe { l.launch(cfg) }.map_err(cuda_err)?;
        }
        s.synchronize().map_err(cuda_err)?;
        Ok(GpuMatrix {
            data: buf,
            sq_norms,
            n,
            dim,
            metric,
        })
    }

    /// Exact top-`k` (`1..=MAX_K`, capped at the matrix's rows) of each query
    /// in `queries` (`q × dim`, row-major); an empty batch gives an empty
    /// result. Scores follow [`Metric`]; ties may come in any order.
    pub fn search(&self, m: &GpuMatrix, queries: &[f32], k: usize) -> Result<TopK> {
        if k == 0 || k > MAX_K {
            return Err(KernelError::InvalidK { k, max: MAX_K });
        }
        let q = rows(queries.len(), m.dim)?;
        let kk = k.min(m.n);
        if q == 0 || kk == 0 {
            return Ok(TopK {
                k: kk,
                ..TopK::default()
            });
        }
        let normalized;
        let host_q = if m.metric == Metric::Cosine {
            normalized = normalized_rows(queries, m.dim);
            &normalized
        } else {
            queries
        };
        let s = &self.stream;
        let dq = s.clone_htod(host_q).map_err(cuda_err)?;
        let batch = (KEY_BYTES / (m.n * 4)).clamp(1, q);
        let batch = if batch >= TILE as usize {
            batch / TILE as usize * TILE as usize
        } else {
            batch
        };
        // SAFETY (uninitialized device memory): `gemm_keys` writes every key
        // `select_topk` then reads (b × n per sub-batch), and `select_topk`
        // writes all q × kk outputs before they are copied back.
        let (mut keys, mut ids_d, mut keys_d) = unsafe {
            (
                s.alloc::<f32>(batch * m.n).map_err(cuda_err)?,
                s.alloc::<u32>(q * kk).map_err(cuda_err)?,
                s.alloc::<f32>(q * kk).map_err(cuda_err)?,
            )
        };
        let (n32, d32, n64, k32) = (m.n as i32, m.dim as i32, m.n as i64, kk as i32);
        let l2 = i32::from(m.metric == Metric::L2);
        for start in (0..q).step_by(batch) {
            let b = batch.min(q - start);
            let qv = dq.slice(start * m.dim..(start + b) * m.dim);
            let cfg = LaunchConfig {
                grid_dim: ((m.n as u32).div_ceil(TILE), (b as u32).div_ceil(TILE), 1),
                block_dim: (GEMM_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let b32 = b as i32;
            let mut l = s.launch_builder(&self.gemm);
            l.arg(&qv).arg(&m.data).arg(&m.sq_norms).arg(&mut keys);
            l.arg(&b32).arg(&n32).arg(&d32).arg(&n64).arg(&l2);
            // SAFETY: argument types and order match `gemm_keys`; `qv` holds
            // b × dim floats, `m.data` n × dim, `keys` at least b × n.
            unsafe { l.launch(cfg) }.map_err(cuda_err)?;

            let mut ids_v = ids_d.slice_mut(start * kk..(start + b) * kk);
            let mut keys_v = keys_d.slice_mut(start * kk..(start + b) * kk);
            let cfg = LaunchConfig {
                grid_dim: (b as u32, 1, 1),
                block_dim: (SELECT_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = s.launch_builder(&self.select);
            l.arg(&keys)
                .arg(&n64)
                .arg(&k32)
                .arg(&mut ids_v)
                .arg(&mut keys_v);
            // SAFETY: argument types and order match `select_topk`; `keys`
            // holds b rows of n, the outputs b × kk with kk <= min(n, MAX_K).
            unsafe { l.launch(cfg) }.map_err(cuda_err)?;
        }
        let ids = s.clone_dtoh(&ids_d).map_err(cuda_err)?;
        let mut scores = s.clone_dtoh(&keys_d).map_err(cuda_err)?;
        s.synchronize().map_err(cuda_err)?;
        match m.metric {
            Metric::Dot | Metric::Cosine => scores.iter_mut().for_each(|v| *v = -*v),
            Metric::L2 => {
                for (qv, row) in queries.chunks_exact(m.dim).zip(scores.chunks_exact_mut(kk)) {
                    let qq = crate::dot(qv, qv);
                    row.iter_mut().for_each(|v| *v = (*v + qq).max(0.0));
                }
            }
        }
        Ok(TopK { k: kk, ids, scores })
    }
}

/// Rows of a row-major buffer, checking its shape.
fn rows(len: usize, dim: usize) -> Result<usize> {
    if dim == 0 || !len.is_multiple_of(dim) {
        return Err(KernelError::Shape { len, dim });
    }
    let n = len / dim;
    if i32::try_from(n).is_err() || i32::try_from(dim).is_err() {
        return Err(KernelError::Shape { len, dim });
    }
    Ok(n)
}

fn normalized_rows(data: &[f32], dim: usize) -> Vec<f32> {
    let mut out = data.to_vec();
    for row in out.chunks_exact_mut(dim) {
        crate::normalize(row);
    }
    out
}
