//! What a training of stage two leaves on disk (`engram train contextual`): the
//! weights (`stage_two.safetensors`, what [`crate::StageTwo::from_file`] and the bundled
//! copy read), the loss chart (`stage_two_loss.svg`) and the manifest
//! (`stage_two.json`).
//!
//! Why a manifest: the weights Engram ships must be reproducible and judged by what
//! they were trained on. It records the command, the data file's SHA-256, the
//! options, the losses and the weights' SHA-256, next to the figures the caller
//! measured (validation split, held-out dataset).

use std::path::{Path, PathBuf};

use engram_metrics::chart;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::stage_two_train::{TrainOptions, Trained};

/// Losses are charted (and the last one reported) as means over this many steps.
const SMOOTHING_STEPS: usize = 20;

/// What the trainer's caller knows about a training: where its data came from and
/// how the result scored.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingRecord {
    /// The command line that trained.
    pub command: String,
    /// The training dataset's name, in the chart's title too.
    pub dataset: String,
    pub data_file: Option<String>,
    pub data_sha256: String,
    pub passages: usize,
    pub questions: usize,
    /// Every this-many-th passage was held out of training for validation.
    pub validate_every: usize,
    /// Training time.
    pub seconds: f64,
    /// The validation split's figures, as the caller's evaluation reports them.
    pub validation: serde_json::Value,
    /// Another dataset's figures, when one was evaluated.
    pub heldout: Option<serde_json::Value>,
}

/// The files [`Trained::save`] wrote.
#[derive(Debug, Clone)]
pub struct SavedTraining {
    pub weights: PathBuf,
    pub chart: PathBuf,
    pub manifest: PathBuf,
}

/// `stage_two.json`: the record, plus what only the training itself knows.
#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(flatten)]
    record: &'a TrainingRecord,
    engram_version: &'static str,
    options: &'a TrainOptions,
    first_loss: Option<f32>,
    last_loss_mean: Option<f64>,
    loss_mean_by_100_steps: Vec<f32>,
    weights_sha256: String,
}

impl Trained {
    /// The loss per step as a running mean over [`SMOOTHING_STEPS`] (fewer when
    /// training was shorter): `(step, mean)` pairs, and the window used.
    pub fn smoothed_losses(&self) -> (usize, Vec<(f64, f64)>) {
        let window = SMOOTHING_STEPS.min(self.losses.len()).max(1);
        let smoothed = self
            .losses
            .windows(window)
            .enumerate()
            .map(|(i, w)| {
                (
                    (i + window) as f64,
                    w.iter().sum::<f32>() as f64 / window as f64,
                )
            })
            .collect();
        (window, smoothed)
    }

    /// Writes the weights, the loss chart and the manifest into `dir` (created if
    /// missing).
    pub fn save(
        &self,
        dir: &Path,
        options: &TrainOptions,
        record: &TrainingRecord,
    ) -> Result<SavedTraining> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let saved = SavedTraining {
            weights: dir.join("stage_two.safetensors"),
            chart: dir.join("stage_two_loss.svg"),
            manifest: dir.join("stage_two.json"),
        };
        write(&saved.weights, &self.net.to_bytes()?)?;
        let (window, smoothed) = self.smoothed_losses();
        let svg = chart::side_by_side(
            &format!("Stage two, trained on {}", record.dataset),
            &[chart::line_panel(
                &format!("InfoNCE loss ({window}-step mean)"),
                "step",
                &smoothed,
                None,
            )],
        );
        write(&saved.chart, svg.as_bytes())?;
        let manifest = Manifest {
            record,
            engram_version: env!("CARGO_PKG_VERSION"),
            options,
            first_loss: self.losses.first().copied(),
            last_loss_mean: smoothed.last().map(|p| p.1),
            loss_mean_by_100_steps: self
                .losses
                .chunks(100)
                .map(|c| c.iter().sum::<f32>() / c.len() as f32)
                .collect(),
            weights_sha256: engram_models::sha256_file(&saved.weights)?,
        };
        // Through a `Value`: its keys come out sorted, as in the manifests written so far.
        let value = serde_json::to_value(&manifest).expect("plain struct serialises");
        let json = serde_json::to_string_pretty(&value).expect("a JSON value serialises");
        write(&saved.manifest, (json + "\n").as_bytes())?;
        Ok(saved)
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    use crate::stage_two::{StageTwo, StageTwoConfig};

    #[test]
    fn a_training_saves_weights_chart_and_a_sorted_manifest() {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let net = StageTwo::load(vb, StageTwoConfig { dim: 4, rank: 2 }).unwrap();
        let trained = Trained {
            net,
            losses: (0..30).map(|i| 2.0 - i as f32 * 0.05).collect(),
        };
        let (window, smoothed) = trained.smoothed_losses();
        assert_eq!((window, smoothed.len()), (20, 11));
        assert_eq!(smoothed[0].0, 20.0);
        let dir = tempfile::tempdir().unwrap();
        let record = TrainingRecord {
            command: "engram train contextual".into(),
            dataset: "toy".into(),
            data_file: Some("toy.jsonl".into()),
            data_sha256: "00".into(),
            passages: 8,
            questions: 8,
            validate_every: 10,
            seconds: 1.5,
            validation: serde_json::json!([]),
            heldout: None,
        };
        let saved = trained
            .save(dir.path(), &TrainOptions::default(), &record)
            .unwrap();
        StageTwo::from_file(&saved.weights).unwrap();
        let svg = std::fs::read_to_string(&saved.chart).unwrap();
        assert!(svg.contains("Stage two, trained on toy"), "{svg}");
        let json = std::fs::read_to_string(&saved.manifest).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            manifest["loss_mean_by_100_steps"].as_array().unwrap().len(),
            1
        );
        assert_eq!(manifest["options"]["seed"], 11);
        assert!(manifest["heldout"].is_null());
        let keys: Vec<&str> = json
            .lines()
            .filter(|l| l.starts_with("  \""))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        assert!(keys.is_sorted(), "{keys:?}");
        assert_eq!(keys.len(), 16, "{keys:?}");
    }
}
