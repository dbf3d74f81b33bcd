//! A frozen projection of the network: the weights in the form each phase runs fastest,
//! plus the adapter hook.
//!
//! - Decoding (one row) multiplies by the quantized weights: they are read once per
//!   token, and Q8_0 reads 4x less memory than F32.
//! - Prompt processing (many rows) multiplies by a dense copy when one is kept
//!   ([`crate::Llama::with_dense_prefill`]): a dense GEMM reuses each weight across rows
//!   and beats candle's quantized dot products 3.5x there.
//! - candle 0.11.1 has an AVX-512 VNNI kernel for Q8_0 only when the input size is a
//!   multiple of 256; SmolLM2's hidden size is 576. On CPUs that have VNNI, the Q8_0
//!   weights are stored with zero columns up to the next multiple of 256 and the input is
//!   padded to match: a third more multiply-adds through a kernel twice as fast.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor, D};

use crate::error::Result;
use crate::lora::{LoraAdapter, LoraTarget};

/// Input sizes the VNNI Q8_0 kernel accepts are multiples of this (candle's QK_K).
const VNNI_BLOCK: usize = 256;

/// `x · Wᵀ` with a frozen dense `W` `(out, in)`, as one op whose backward pass computes
/// only the input's gradient. candle's matmul backward also computes `W`'s gradient: a
/// whole extra GEMM per projection (and a 49,152 × 576 buffer for the output head) that
/// LoRA training throws away, since only the adapter learns.
#[derive(Debug)]
struct FrozenMatmul {
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("frozen-matmul takes f32 inputs");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-matmul takes contiguous inputs");
        };
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.broadcast_matmul(&self.w.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.broadcast_matmul(&self.w)?))
    }
}

/// Quantized (or F32) weights `(out, in)`, padded for the VNNI kernel where that helps.
#[derive(Debug, Clone)]
pub(crate) struct QuantizedLinear {
    weight: QMatMul,
    /// Zero columns appended to `weight` (and so to the input) for the VNNI kernel.
    pad: usize,
    /// Set in training mode for dense F32 weights (see [`FrozenMatmul`]).
    frozen: Option<FrozenOp>,
}

/// The op as candle takes it (shared by the graph nodes that use it).
#[derive(Clone)]
struct FrozenOp(Arc<Box<dyn CustomOp1 + Send + Sync>>);

impl std::fmt::Debug for FrozenOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrozenMatmul")
    }
}

impl QuantizedLinear {
    /// Wraps `weight`, unpadded.
    pub(crate) fn new(weight: QTensor) -> Result<Self> {
        Ok(Self {
            weight: QMatMul::from_qtensor(weight)?,
            pad: 0,
            frozen: None,
        })
    }

    /// Training mode on or off: dense F32 weights then multiply through [`FrozenMatmul`]
    /// (same products, no weight gradient). Quantized weights are left as they are.
    pub(crate) fn set_frozen(&mut self, on: bool) {
        self.frozen = match (&self.weight, on) {
            (QMatMul::Tensor(w), true) if w.dtype() == DType::F32 && self.pad == 0 => {
                Some(FrozenOp(Arc::new(Box::new(FrozenMatmul { w: w.clone() }))))
            }
            _ => None,
        };
    }

    /// Appends zero columns for the VNNI kernel when the weights are Q8_0, their input
    /// size is not a multiple of 256 and this CPU has AVX-512 VNNI; else does nothing.
    pub(crate) fn pad_for_vnni(&mut self) -> Result<()> {
        let QMatMul::QTensor(q) = &self.weight else {
            return Ok(());
        };
        let (n, k) = q.shape().dims2()?;
        let pad = k.next_multiple_of(VNNI_BLOCK) - k;
        if self.pad > 0 || q.dtype() != GgmlDType::Q8_0 || pad == 0 || n % 16 != 0 || !has_vnni() {
            return Ok(());
        }
        let dense = q.dequantize(&q.device())?.pad_with_zeros(1, 0, pad)?;
        // Re-quantizing dequantized Q8_0 blocks gives back the same blocks (same scale).
        self.weight = QMatMul::from_qtensor(QTensor::quantize(&dense, GgmlDType::Q8_0)?)?;
        self.pad = pad;
        Ok(())
    }

    /// `x · Wᵀ`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(op) = &self.frozen {
            if x.dtype() == DType::F32 && x.device().is_cpu() {
                return Ok(x.contiguous()?.apply_op1_arc(op.0.clone())?);
            }
        }
        Ok(match self.pad {
            0 => self.weight.forward(x)?,
            pad => self.weight.forward(&x.pad_with_zeros(D::Minus1, 0, pad)?)?,
        })
    }

    /// The weights as a dense `(out, in)` tensor (padding removed); None when they are
    /// dense already.
    fn dequantize(&self) -> Result<Option<Tensor>> {
        let QMatMul::QTensor(q) = &self.weight else {
            return Ok(None);
        };
        let w = q.dequantize(&q.device())?;
        Ok(Some(w.narrow(1, 0, w.dim(1)? - self.pad)?))
    }
}

/// A frozen projection of a block with the adapter hook.
#[derive(Debug, Clone)]
pub(crate) struct AdaptedLinear {
    weight: QuantizedLinear,
    /// The weights dequantized, `(in, out)`, for multi-row inputs.
    dense_t: Option<Tensor>,
    layer: usize,
    target: LoraTarget,
}

impl AdaptedLinear {
    /// Wraps `weight` (`(out, in)`), the `target` projection of block `layer`.
    pub(crate) fn new(weight: QTensor, layer: usize, target: LoraTarget) -> Result<Self> {
        Ok(Self {
            weight: QuantizedLinear::new(weight)?,
            dense_t: None,
            layer,
            target,
        })
    }

    /// See [`QuantizedLinear::pad_for_vnni`].
    pub(crate) fn pad_for_vnni(&mut self) -> Result<()> {
        self.weight.pad_for_vnni()
    }

    /// See [`QuantizedLinear::set_frozen`].
    pub(crate) fn set_frozen(&mut self, on: bool) {
        self.weight.set_frozen(on)
    }

    /// Keeps a dequantized copy of the weights (in `dtype`) for multi-row inputs.
    pub(crate) fn set_dense(&mut self, dtype: DType) -> Result<()> {
        if let Some(w) = self.weight.dequantize()? {
            self.dense_t = Some(w.to_dtype(dtype)?.t()?.contiguous()?);
        }
        Ok(())
    }

    /// `x · Wᵀ`, plus the adapter's delta for this projection when there is one.
    pub(crate) fn forward(&self, x: &Tensor, adapter: Option<&LoraAdapter>) -> Result<Tensor> {
        let rows = x.elem_count() / x.dim(D::Minus1)?;
        let y = match &self.dense_t {
            Some(w) if rows > 1 => x
                .to_dtype(w.dtype())?
                .broadcast_matmul(w)?
                .to_dtype(x.dtype())?,
            _ => self.weight.forward(x)?,
        };
        match adapter {
            Some(adapter) => match adapter.delta(self.layer, self.target, x)? {
                Some(delta) => Ok((y + delta)?),
                None => Ok(y),
            },
            None => Ok(y),
        }
    }
}

fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::testing::max_diff;

    #[test]
    fn frozen_matmul_gives_the_products_and_only_the_input_gradient() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.2, (24, 40), &dev).unwrap();
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 5, 40), &dev).unwrap())
            .unwrap();
        let mut linear =
            QuantizedLinear::new(QTensor::quantize(&w, GgmlDType::F32).unwrap()).unwrap();
        let plain = linear.forward(x.as_tensor()).unwrap();
        let plain_grad = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        linear.set_frozen(true);
        assert!(linear.frozen.is_some());
        let frozen = linear.forward(x.as_tensor()).unwrap();
        let frozen_grad = frozen.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(&plain, &frozen) < 1e-5);
        let (a, b) = (
            plain_grad.get(x.as_tensor()).unwrap(),
            frozen_grad.get(x.as_tensor()).unwrap(),
        );
        assert!(max_diff(a, b) < 1e-4, "{}", max_diff(a, b));
        linear.set_frozen(false);
        assert!(linear.frozen.is_none());
    }

    #[test]
    fn padded_weights_give_the_same_products() {
        // Uniform in ±0.35 and ±1.7: standard deviations about 0.2 and 1.
        let w = crate::testing::seeded_uniform((32, 576), 1, 0.35);
        let x = crate::testing::seeded_uniform((1, 576), 2, 1.7)
            .unsqueeze(0)
            .unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let plain = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap())
            .unwrap()
            .forward(&x)
            .unwrap();
        let mut linear = QuantizedLinear::new(q).unwrap();
        linear.pad_for_vnni().unwrap();
        assert_eq!(linear.pad, if has_vnni() { 192 } else { 0 });
        let padded = linear.forward(&x).unwrap();
        let exact = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        // Both quantize the input to 8 bits, in different block formats (the VNNI kernel
        // uses one scale per 256 values, the plain one per 32): every output stays within
        // 5% of the outputs' standard deviation (~4.8) of the exact product.
        let (to_plain, to_exact) = (max_diff(&padded, &plain), max_diff(&padded, &exact));
        let plain_to_exact = max_diff(&plain, &exact);
        eprintln!(
            "padded vs plain {to_plain}, vs exact {to_exact}; plain vs exact {plain_to_exact}"
        );
        let scale: f32 = exact
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .sqrt()
            .unwrap()
            .to_scalar()
            .unwrap();
        let bound = 0.05 * scale;
        assert!(
            to_exact < bound && to_plain < bound,
            "{to_exact} {to_plain} (bound {bound})"
        );
        let dense = linear.dequantize().unwrap().unwrap();
        assert_eq!(dense.dims(), [32, 576]);
    }
}
