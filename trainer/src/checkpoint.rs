//! Training checkpoints: adapter variables, optimizer moments, step, loss history and
//! the RNG position, written atomically so a `kill -9` at any moment leaves either the
//! previous checkpoint or the new one, never a half-written one.
//!
//! Layout: `<dir>/step-000040/{tensors.safetensors, state.json}`. A checkpoint is
//! written into a temporary directory next to them and renamed into place (a rename is
//! atomic on one file system); leftovers of an interrupted write start with `.tmp` and
//! are ignored and cleaned. The RNG needs no stored state of its own: every random draw
//! of step `s` is derived from `(seed, s)` (data order, dropout masks), so the step is
//! the RNG position.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lora::AdapterVars;
use crate::optim::AdamW;
use crate::util::{read_json, write_json};

const TENSORS: &str = "tensors.safetensors";
const STATE: &str = "state.json";

/// The loss of one optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepLoss {
    /// 1-based step number.
    pub step: usize,
    /// Mean loss over the step's micro-batches (nats per target token).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// Everything but the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps done.
    pub step: usize,
    /// The run's seed (the RNG position is `(seed, step)`).
    pub seed: u64,
    /// Fingerprint of the configuration and data: a checkpoint of another run is refused.
    pub fingerprint: String,
    /// Losses so far.
    pub losses: Vec<StepLoss>,
    /// Target tokens trained on so far.
    pub tokens: usize,
}

/// Writes a checkpoint of `vars`, `optimizer` and `state` into `dir`, then removes all
/// but the newest `keep` checkpoints.
pub fn save(
    dir: &Path,
    vars: &AdapterVars,
    optimizer: &AdamW,
    state: &CheckpointState,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-step-")
        .tempdir_in(dir)
        .map_err(|e| Error::io("creating a temporary directory in", dir, e))?;
    let mut tensors: HashMap<String, Tensor> = vars.named();
    let names = var_names(vars);
    for (name, (m, v)) in names.iter().zip(optimizer.moments()) {
        tensors.insert(format!("adam.m.{name}"), m);
        tensors.insert(format!("adam.v.{name}"), v);
    }
    let tensors_path = tmp.path().join(TENSORS);
    candle_core::safetensors::save(&tensors, &tensors_path)?;
    write_json(&tmp.path().join(STATE), state)?;
    for f in [TENSORS, STATE] {
        let p = tmp.path().join(f);
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("syncing", &p, e))?;
    }
    let target = dir.join(format!("step-{:06}", state.step));
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| Error::io("replacing", &target, e))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &target).map_err(|e| Error::io("renaming into", &target, e))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let all = list(dir)?;
    for (_, old) in all.iter().rev().skip(keep.max(1)) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(target)
}

/// The optimizer's variable names, in its order.
fn var_names(vars: &AdapterVars) -> Vec<String> {
    vars.named_vars().into_iter().map(|(n, _)| n).collect()
}

/// Complete checkpoints in `dir`, oldest first. Leftover temporary directories of an
/// interrupted write are removed.
pub fn list(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp") {
            let _ = std::fs::remove_dir_all(entry.path());
            continue;
        }
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok()) {
            if entry.path().join(STATE).is_file() && entry.path().join(TENSORS).is_file() {
                out.push((step, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Restores the newest readable checkpoint in `dir` whose fingerprint is
/// `fingerprint` into `vars` and `optimizer`; None when there is none. A damaged
/// checkpoint (unreadable state or tensors, a tensor missing or misshapen) is
/// skipped with a warning for the one before it, and with none left training starts
/// over: a bad file costs the steps since the previous checkpoint, never the run.
pub fn restore_latest(
    dir: &Path,
    fingerprint: &str,
    vars: &AdapterVars,
    optimizer: &mut AdamW,
) -> Result<Option<CheckpointState>> {
    for (_, path) in list(dir)?.into_iter().rev() {
        match read_checkpoint(&path, fingerprint, vars) {
            Ok(Restorable {
                state,
                tensors,
                moments,
            }) => {
                vars.restore(&tensors)?;
                optimizer.restore(state.step, &moments)?;
                return Ok(Some(state));
            }
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!(error = %e, "skipping a damaged checkpoint");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A checkpoint read and checked whole, before anything is restored from it.
struct Restorable {
    state: CheckpointState,
    tensors: HashMap<String, Tensor>,
    moments: Vec<(Tensor, Tensor)>,
}

fn read_checkpoint(path: &Path, fingerprint: &str, vars: &AdapterVars) -> Result<Restorable> {
    let state_path = path.join(STATE);
    let state: CheckpointState = read_json(&state_path, |e| {
        Error::corrupt("checkpoint state", &state_path, e)
    })?;
    if state.fingerprint != fingerprint {
        return Err(Error::Refused(format!(
            "the checkpoint in {} belongs to another training run (different data or configuration): delete that directory or use another output directory",
            path.display()
        )));
    }
    let tensors_path = path.join(TENSORS);
    let tensors = candle_core::safetensors::load(&tensors_path, &Device::Cpu)
        .map_err(|e| Error::corrupt("checkpoint", &tensors_path, e))?;
    let get = |k: String| {
        tensors
            .get(&k)
            .cloned()
            .ok_or_else(|| Error::corrupt("checkpoint", &tensors_path, format!("{k} is missing")))
    };
    // Every variable with its shape, and its two moments, or nothing is restored.
    let current = vars.named();
    let mut moments = Vec::new();
    for name in var_names(vars) {
        let (value, want) = (get(name.clone())?, current[&name].dims());
        if value.dims() != want {
            return Err(Error::corrupt(
                "checkpoint",
                &tensors_path,
                format!("{name} is {:?}, expected {want:?}", value.dims()),
            ));
        }
        moments.push((
            get(format!("adam.m.{name}"))?,
            get(format!("adam.v.{name}"))?,
        ));
    }
    Ok(Restorable {
        state,
        tensors,
        moments,
    })
}
