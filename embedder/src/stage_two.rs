//! The learned stage two of the contextual encoder (variant `contextual-learned`): a
//! small network over frozen MiniLM token states and the collection's corpus context.
//!
//! Why this shape (CDE, Morris & Rush 2024, made small enough to train on two cores):
//! stage one (MiniLM) is frozen; stage two decides how much each token counts, given
//! its state and how rare it is *in this corpus*, then maps the pooled vector through
//! the corpus's whitening, a learned low-rank correction, and an attention over the
//! corpus's topic centroids (the context vectors), subtracting the part of the vector
//! its own topic already explains. Every learned piece starts as the identity of the
//! best training-free variant (`idf-whiten`): the gate at zero, the idf exponent at one,
//! the correction and the centroid mix at zero, so training can only move away from a
//! known-good point. Training lives in [`crate::stage_two_train`]; the weights Engram
//! ships are `embedder/weights/stage_two.safetensors` (how they were made:
//! `stage_two.json` next to them).

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::context::CorpusContext;
use crate::error::{Error, Result};
use crate::minilm::{padded, Pooler};

/// The weights Engram ships, trained by `engram train contextual` (see `stage_two.json`).
const BUNDLED: &[u8] = include_bytes!("../weights/stage_two.safetensors");

/// Sizes of the network; stored in the weights' metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTwoConfig {
    /// Width of the token states and vectors (MiniLM: 384).
    pub dim: usize,
    /// Rank of the learned correction `up(down(z))`.
    pub rank: usize,
}

/// The stage-two network (see the module docs). Plain tensors: `load` reads them from
/// a `VarBuilder`, so training (a `VarMap`) and serving (safetensors) share this code.
pub struct StageTwo {
    pub config: StageTwoConfig,
    /// `(dim, 1)`: a token's pooling logit gains `state . gate`.
    gate: Tensor,
    /// `(dim, 1)`: added to `gate` for queries (their wording is not a document's).
    query_gate: Tensor,
    /// `(1,)`: the exponent of the corpus idf in the pooling weight, minus one.
    idf_power_delta: Tensor,
    /// `(dim, rank)` and `(rank, dim)`: the low-rank correction of the whitened vector.
    down: Tensor,
    up: Tensor,
    /// `(1,)`: how much of the attended centroid is subtracted.
    centroid_mix: Tensor,
    /// `(1,)`: log of the attention's inverse temperature over the centroids, over
    /// [`BASE_SHARPNESS`]'s. (Offsets, so weight decay pulls toward the initialisation.)
    sharpness_delta: Tensor,
}

/// Inverse temperature of the attention over centroids at initialisation.
const BASE_SHARPNESS: f64 = 10.0;

/// The pieces of stage two that can learn, by name, with their tensors' names
/// (`engram train contextual --parts`).
pub const PARTS: [(&str, &[&str]); 5] = [
    ("gate", &["gate"]),
    ("query_gate", &["query_gate"]),
    ("idf", &["idf_power_delta"]),
    ("correction", &["down", "up"]),
    ("centroids", &["centroid_mix", "sharpness_delta"]),
];

/// What stage two reads of a corpus context, as tensors.
pub struct ContextTensors {
    mean: Tensor,
    /// `(dim, dim)` whitening, transposed (vectors are rows).
    whitening_t: Option<Tensor>,
    /// `(k, dim)` unit centroids; `None` when the context has none.
    centroids: Option<Tensor>,
}

impl ContextTensors {
    /// Copies the context's mean, whitening and centroids into tensors.
    pub fn new(context: &CorpusContext) -> Result<Self> {
        let dim = context.dim();
        let dev = Device::Cpu;
        let mean = Tensor::from_slice(context.mean(), dim, &dev)?;
        let whitening_t = match context.whitening() {
            Some(w) => Some(Tensor::from_slice(w, (dim, dim), &dev)?.t()?.contiguous()?),
            None => None,
        };
        let flat: Vec<f32> = context.centroids().flatten().copied().collect();
        let centroids = if flat.is_empty() {
            None
        } else {
            let k = flat.len() / dim;
            Some(Tensor::from_vec(flat, (k, dim), &dev)?)
        };
        Ok(ContextTensors {
            mean,
            whitening_t,
            centroids,
        })
    }
}

impl StageTwo {
    /// Reads (or, from a `VarMap`, creates with the identity initialisation) the weights.
    pub fn load(vb: VarBuilder, config: StageTwoConfig) -> Result<Self> {
        let StageTwoConfig { dim, rank } = config;
        let zero = Init::Const(0.0);
        Ok(StageTwo {
            config,
            gate: vb.get_with_hints((dim, 1), "gate", zero)?,
            query_gate: vb.get_with_hints((dim, 1), "query_gate", zero)?,
            idf_power_delta: vb.get_with_hints(1, "idf_power_delta", zero)?,
            down: vb.get_with_hints(
                (dim, rank),
                "down",
                Init::Randn {
                    mean: 0.0,
                    stdev: (1.0 / dim as f64).sqrt(),
                },
            )?,
            up: vb.get_with_hints((rank, dim), "up", zero)?,
            centroid_mix: vb.get_with_hints(1, "centroid_mix", zero)?,
            sharpness_delta: vb.get_with_hints(1, "sharpness_delta", zero)?,
        })
    }

    /// The weights Engram ships (loaded once per process).
    pub fn bundled() -> Result<Arc<StageTwo>> {
        static CELL: OnceLock<std::result::Result<Arc<StageTwo>, String>> = OnceLock::new();
        CELL.get_or_init(|| {
            StageTwo::from_bytes(BUNDLED)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| Error::InvalidContext(format!("bundled stage-two weights: {e}")))
    }

    /// Reads weights written by [`StageTwo::to_bytes`] (or `engram train contextual`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: String| Error::InvalidContext(format!("stage-two weights: {why}"));
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not safetensors: {e}")))?;
        let config: StageTwoConfig = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("engram_stage_two"))
            .ok_or_else(|| bad("no engram_stage_two metadata".into()))
            .and_then(|s| serde_json::from_str(s).map_err(|e| bad(format!("metadata: {e}"))))?;
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        StageTwo::load(vb, config).map_err(|e| bad(e.to_string()))
    }

    /// Reads weights from a file (e.g. a model just trained, to evaluate it).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        StageTwo::from_bytes(&bytes)
    }

    /// Serialises the weights with their config as safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors = [
            ("gate", &self.gate),
            ("query_gate", &self.query_gate),
            ("idf_power_delta", &self.idf_power_delta),
            ("down", &self.down),
            ("up", &self.up),
            ("centroid_mix", &self.centroid_mix),
            ("sharpness_delta", &self.sharpness_delta),
        ];
        let meta = std::collections::HashMap::from([(
            "engram_stage_two".to_string(),
            serde_json::to_string(&self.config).expect("plain struct serialises"),
        )]);
        safetensors::serialize(tensors, Some(meta))
            .map_err(|e| Error::InvalidContext(format!("serialising stage two: {e}")))
    }

    /// The knobs, for reports: (idf exponent, centroid mix, sharpness, |gate|,
    /// |query gate|, |up|).
    pub fn summary(&self) -> Result<[f32; 6]> {
        let scalar = |t: &Tensor| -> Result<f32> { Ok(t.to_vec1::<f32>()?[0]) };
        let norm = |t: &Tensor| -> Result<f32> { Ok(t.sqr()?.sum_all()?.sqrt()?.to_scalar()?) };
        Ok([
            1.0 + scalar(&self.idf_power_delta)?,
            scalar(&self.centroid_mix)?,
            BASE_SHARPNESS as f32 * scalar(&self.sharpness_delta)?.exp(),
            norm(&self.gate)?,
            norm(&self.query_gate)?,
            norm(&self.up)?,
        ])
    }

    /// Pools `(batch, len, dim)` token states into unit vectors `(batch, dim)`: softmax
    /// over `idf_power * ln(idf) + state . gate` (plus `state . query_gate` for
    /// queries), where `idf` is `(batch, len)` and 0 marks tokens that must not count
    /// (padding, `[CLS]`/`[SEP]`).
    pub fn pool(&self, states: &Tensor, idf: &Tensor, query: bool) -> Result<Tensor> {
        let (b, l, d) = states.dims3()?;
        let present = idf.gt(0f64)?.to_dtype(DType::F32)?;
        // ln(idf) where present; a large negative logit where not.
        let log_idf = idf
            .maximum(1e-6)?
            .log()?
            .mul(&present)?
            .add(&present.affine(1e4, -1e4)?)?;
        let gate = if query {
            self.gate.add(&self.query_gate)?
        } else {
            self.gate.clone()
        };
        let gated = states.reshape((b * l, d))?.matmul(&gate)?.reshape((b, l))?;
        let logits = log_idf
            .broadcast_mul(&(self.idf_power_delta.affine(1.0, 1.0)?))?
            .add(&gated.mul(&present)?)?;
        let weights = candle_nn::ops::softmax(&logits, D::Minus1)?;
        let pooled = weights.unsqueeze(1)?.matmul(states)?.squeeze(1)?;
        unit_rows(&pooled)
    }

    /// Maps pooled unit vectors `(n, dim)` into the collection's space: centre, whiten,
    /// add the learned correction, subtract the attended centroid, normalise.
    pub fn project(&self, pooled: &Tensor, context: &ContextTensors) -> Result<Tensor> {
        let mut z = pooled.broadcast_sub(&context.mean)?;
        if let Some(w) = &context.whitening_t {
            z = z.matmul(w)?;
        }
        let z = unit_rows(&z)?;
        let mut out = z.add(&z.matmul(&self.down)?.matmul(&self.up)?)?;
        if let Some(c) = &context.centroids {
            let scores = z
                .matmul(&c.t()?)?
                .broadcast_mul(&self.sharpness_delta.exp()?.affine(BASE_SHARPNESS, 0.0)?)?;
            let attended = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(c)?;
            out = out.sub(&attended.broadcast_mul(&self.centroid_mix)?)?;
        }
        unit_rows(&out)
    }
}

/// Rows scaled to unit length (zero rows stay zero).
pub(crate) fn unit_rows(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Stage two as a MiniLM pooler: idf of each token in the corpus (0 for `[CLS]`/`[SEP]`
/// and padding), learned pooling (the query side's for `query`), then (with a
/// `context`; fitting one needs the pooled vectors alone) the projection into the
/// collection's space.
pub struct StageTwoPooler<'a> {
    pub net: &'a StageTwo,
    pub idf: &'a (dyn Fn(u32) -> f32 + Sync),
    pub context: Option<&'a ContextTensors>,
    pub query: bool,
}

impl Pooler<Vec<f32>> for StageTwoPooler<'_> {
    fn pool(&self, states: &Tensor, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let idf = padded(seqs, states.dim(1)?, self.idf)?;
        let mut v = self.net.pool(states, &idf, self.query)?;
        if let Some(context) = self.context {
            v = self.net.project(&v, context)?;
        }
        Ok(v.to_vec2::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn fresh(dim: usize) -> (VarMap, StageTwo) {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let net = StageTwo::load(vb, StageTwoConfig { dim, rank: 4 }).unwrap();
        (map, net)
    }

    #[test]
    fn fresh_weights_pool_by_idf() {
        // Identity initialisation: the pooled vector is the idf-weighted mean.
        let (_, net) = fresh(3);
        let states = Tensor::new(
            &[[[1f32, 0., 0.], [0., 1., 0.], [5., 5., 5.]]],
            &Device::Cpu,
        )
        .unwrap();
        let idf = Tensor::new(&[[1f32, 3., 0.]], &Device::Cpu).unwrap();
        let v = net
            .pool(&states, &idf, true)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let n = (1f32 + 9.0).sqrt();
        for (got, want) in v[0].iter().zip([1.0 / n, 3.0 / n, 0.0]) {
            assert!((got - want).abs() < 1e-5, "{:?}", v);
        }
    }

    #[test]
    fn weights_round_trip_through_bytes() {
        let (_, net) = fresh(5);
        let back = StageTwo::from_bytes(&net.to_bytes().unwrap()).unwrap();
        assert_eq!(back.config, net.config);
        assert_eq!(
            back.down.to_vec2::<f32>().unwrap(),
            net.down.to_vec2::<f32>().unwrap()
        );
        assert!(StageTwo::from_bytes(b"junk").is_err());
    }

    #[test]
    fn bundled_weights_load() {
        let net = StageTwo::bundled().unwrap();
        assert_eq!(net.config.dim, 384);
    }
}
