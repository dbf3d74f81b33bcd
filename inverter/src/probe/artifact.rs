//! The probe on disk: `probe.safetensors` (int8 weights with a scale per word, the
//! calibration and the bigram prior's counts) and `probe.json` (vocabulary,
//! thresholds, manifest), and the copy of `inverter/artifacts` compiled into the
//! binary.
//!
//! Why int8: a 20,000-word probe is 7.7 MB instead of 31 and ranks words as the f32
//! one does; the artifact is committed and bundled, so its size matters.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Manifest, Probe};
use crate::error::{Error, Result};
use crate::fluency::BigramPrior;

/// Where the trained probe lives in the repository (`engram train inverter` writes it).
pub fn default_dir() -> PathBuf {
    std::env::var_os("ENGRAM_INVERTER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts")))
}

const WEIGHTS_FILE: &str = "probe.safetensors";
const META_FILE: &str = "probe.json";
const FORMAT: u32 = 3;

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    dim: usize,
    threshold: f32,
    extra_threshold: f32,
    vocab: Vec<String>,
    manifest: Manifest,
}

impl Probe {
    /// Writes `probe.safetensors` (int8 weights `[vocab, dim + 1]` with one f32 scale
    /// per word: a 20,000-word probe in 7.7 MB, ranking as the f32 one does) and
    /// `probe.json` (vocabulary, thresholds, manifest) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (codes, scales) = quantize_rows(&self.weights, self.dim + 1);
        let bytes: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::I8,
            vec![self.vocab.len(), self.dim + 1],
            &bytes,
        )
        .map_err(|e| Error::Solve(format!("weights: {e}")))?;
        let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (absent, gap) = (f32_bytes(&self.absent), f32_bytes(&self.gap));
        let scales = f32_bytes(&scales);
        let (unigrams, keys, counts) = self.fluency.to_arrays();
        let u32_bytes = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (unigrams, keys, counts) = (u32_bytes(&unigrams), u32_bytes(&keys), u32_bytes(&counts));
        use safetensors::Dtype::{F32, U32};
        let data = safetensors::serialize(
            [
                ("weight", view),
                ("scale", flat_view(F32, &scales)?),
                ("unigrams", flat_view(U32, &unigrams)?),
                ("pair_keys", flat_view(U32, &keys)?),
                ("pair_counts", flat_view(U32, &counts)?),
                ("absent", flat_view(F32, &absent)?),
                ("gap", flat_view(F32, &gap)?),
            ],
            None,
        )
        .map_err(|e| Error::Solve(format!("weights: {e}")))?;
        let path = dir.join(WEIGHTS_FILE);
        std::fs::write(&path, data).map_err(|e| Error::io(&path, e))?;
        let meta = Meta {
            format: FORMAT,
            dim: self.dim,
            threshold: self.threshold,
            extra_threshold: self.extra_threshold,
            vocab: self.vocab.clone(),
            manifest: self.manifest.clone(),
        };
        let path = dir.join(META_FILE);
        let json = serde_json::to_string_pretty(&meta).expect("plain struct serialises");
        std::fs::write(&path, json + "\n").map_err(|e| Error::io(&path, e))
    }

    /// Reads what [`Probe::save`] wrote; a missing or damaged artifact is an error
    /// naming the directory and the command that builds it.
    pub fn load(dir: &Path) -> Result<Probe> {
        let bad = |reason: String| Error::Artifact {
            dir: dir.to_path_buf(),
            reason,
        };
        let meta = std::fs::read_to_string(dir.join(META_FILE))
            .map_err(|e| bad(format!("{META_FILE}: {e}")))?;
        let bytes = std::fs::read(dir.join(WEIGHTS_FILE))
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
        Self::from_artifact(dir, &meta, &bytes)
    }

    /// The probe committed in `inverter/artifacts`, compiled into the binary so the
    /// audit works wherever the binary is run from.
    pub fn bundled() -> Result<Probe> {
        Self::from_artifact(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts (bundled)")),
            include_str!("../../artifacts/probe.json"),
            include_bytes!("../../artifacts/probe.safetensors"),
        )
    }

    /// The probe audits and evaluations use: the one in `ENGRAM_INVERTER_DIR` when
    /// that is set (a retrained probe), else the [bundled](Probe::bundled) one.
    pub fn default_probe() -> Result<Probe> {
        match std::env::var_os("ENGRAM_INVERTER_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => Self::load(Path::new(&dir)),
            None => Self::bundled(),
        }
    }

    /// A probe from its manifest (JSON) and weights (safetensors); `dir` names it
    /// in errors.
    fn from_artifact(dir: &Path, meta: &str, bytes: &[u8]) -> Result<Probe> {
        let bad = |reason: String| Error::Artifact {
            dir: dir.to_path_buf(),
            reason,
        };
        let meta: Meta =
            serde_json::from_str(meta).map_err(|e| bad(format!("{META_FILE}: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "format {} (this build reads {FORMAT})",
                meta.format
            )));
        }
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
        let t = st
            .tensor("weight")
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
        let shape = [meta.vocab.len(), meta.dim + 1];
        if t.dtype() != safetensors::Dtype::I8 || t.shape() != shape {
            return Err(bad(format!(
                "weight is {:?} {:?}, expected I8 {shape:?}",
                t.dtype(),
                t.shape()
            )));
        }
        // A flat tensor of 4-byte values of `dtype` (of `len` values, when given).
        let flat = |name: &str, dtype, len: Option<usize>| -> Result<Vec<[u8; 4]>> {
            let t = st
                .tensor(name)
                .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
            if t.dtype() != dtype || t.shape().len() != 1 || len.is_some_and(|n| t.shape() != [n]) {
                return Err(bad(format!("{name} has the wrong type or shape")));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| [b[0], b[1], b[2], b[3]])
                .collect())
        };
        let calibration = |name: &str| -> Result<Vec<f32>> {
            let raw = flat(name, safetensors::Dtype::F32, Some(meta.vocab.len()))?;
            Ok(raw.into_iter().map(f32::from_le_bytes).collect())
        };
        let counts = |name: &str| -> Result<Vec<u32>> {
            let raw = flat(name, safetensors::Dtype::U32, None)?;
            Ok(raw.into_iter().map(u32::from_le_bytes).collect())
        };
        let scales = calibration("scale")?;
        let weights = t
            .data()
            .chunks_exact(meta.dim + 1)
            .zip(&scales)
            .flat_map(|(row, &s)| row.iter().map(move |&c| c as i8 as f32 * s))
            .collect();
        let (absent, gap) = (calibration("absent")?, calibration("gap")?);
        let fluency = BigramPrior::from_arrays(
            counts("unigrams")?,
            &counts("pair_keys")?,
            &counts("pair_counts")?,
            meta.vocab.len(),
        )
        .map_err(|e| bad(format!("bigram prior: {e}")))?;
        let index = meta
            .vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();
        Ok(Probe {
            vocab: meta.vocab,
            index,
            weights,
            dim: meta.dim,
            absent,
            gap,
            fluency,
            threshold: meta.threshold,
            extra_threshold: meta.extra_threshold,
            manifest: meta.manifest,
        })
    }
}

/// Symmetric int8 codes per row of `width` values, and each row's scale.
fn quantize_rows(weights: &[f32], width: usize) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(weights.len() / width);
    for row in weights.chunks_exact(width) {
        let max = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        codes.extend(
            row.iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (codes, scales)
}

/// A flat tensor of 4-byte values (the calibration, scales and bigram counts).
fn flat_view(
    dtype: safetensors::Dtype,
    bytes: &[u8],
) -> Result<safetensors::tensor::TensorView<'_>> {
    safetensors::tensor::TensorView::new(dtype, vec![bytes.len() / 4], bytes)
        .map_err(|e| Error::Solve(format!("artifact tensor: {e}")))
}
