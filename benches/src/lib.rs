//! What the benchmark binaries share: reading a data set made by
//! `scripts/ann_data.py` (meta.json and raw little-endian arrays) and medians;
//! the cluster benches' nodes and clients (`nodes`); CPU accounting from `/proc`
//! and the N-machine model (`cpu`).

pub mod cpu;
pub mod nodes;

use std::path::Path;

use anyhow::{bail, Context, Result};
use engram_store::index::Metric;
use serde_json::Value;

/// A data set's `meta.json`, with what every reader needs of it.
pub struct AnnMeta {
    pub json: Value,
    pub name: String,
    pub n: usize,
    pub n_test: usize,
    pub dim: usize,
    pub metric: Metric,
}

impl AnnMeta {
    pub fn read(dir: &Path) -> Result<Self> {
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("meta.json")).with_context(|| {
                format!(
                    "reading {}/meta.json (run scripts/ann_data.py)",
                    dir.display()
                )
            })?,
        )?;
        let metric = match json["metric"].as_str() {
            Some("cosine") | Some("angular") => Metric::Cosine,
            Some("euclidean") => Metric::Euclidean,
            Some("dot") => Metric::Dot,
            other => bail!("unknown metric {other:?}"),
        };
        Ok(AnnMeta {
            name: json["name"].as_str().unwrap_or("?").to_string(),
            n: meta_usize(&json, "n")?,
            n_test: meta_usize(&json, "n_test")?,
            dim: meta_usize(&json, "dim")?,
            metric,
            json,
        })
    }
}

pub fn meta_usize(meta: &Value, key: &str) -> Result<usize> {
    meta[key]
        .as_u64()
        .map(|v| v as usize)
        .with_context(|| format!("meta.json lacks {key}"))
}

/// Reads `len` little-endian 4-byte values (f32 vectors or i32 ids) from a raw file.
pub fn read_le4<T>(path: &Path, len: usize, decode: fn([u8; 4]) -> T) -> Result<Vec<T>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() != len * 4 {
        bail!(
            "{}: {} bytes, expected {}",
            path.display(),
            bytes.len(),
            len * 4
        );
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| decode([b[0], b[1], b[2], b[3]]))
        .collect())
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}
