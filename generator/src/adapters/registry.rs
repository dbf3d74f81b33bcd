//! Adapters as named, versioned objects per collection, with one active version that
//! requests use.
//!
//! Layout under the root: `<collection>/v0001/` (PEFT files, `manifest.json`, loss
//! curve), `<collection>/state.json` (`{"active": 2, "history": [1]}`). A version is
//! copied into a temporary directory beside the others and renamed into place, and the
//! state file is replaced atomically, so a crash never leaves a half version or a
//! dangling active pointer.
//!
//! Hot swap: [`AdapterRegistry::active`] returns an `Arc<LoraAdapter>` from an in-memory
//! cache behind a `RwLock`; activating or rolling back loads the new adapter first, then
//! swaps the `Arc`. A request that started with the old adapter keeps its `Arc` and
//! finishes with it; the next request gets the new one. The registry is `Send + Sync`:
//! the server holds one in an `Arc`.
//!
//! Why in the generator: serving an adapter (loading the active one, swapping it) is
//! part of answering, so the database answers without the trainer crate; the trainer
//! only writes adapters and [`AdapterRegistry::register`]s them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::adapters::files::{read_json, write_json};
use crate::adapters::manifest::Manifest;
use crate::adapters::{peft, RegistryError};
use crate::error::{Error, Result};
use crate::llama::LlamaConfig;
use crate::lora::{AdapterKind, LoraAdapter};

const STATE_FILE: &str = "state.json";

/// One stored version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdapterVersion {
    /// The collection.
    pub collection: String,
    /// Version number (1, 2, ...).
    pub version: u32,
    /// Its directory (PEFT files + manifest).
    pub path: PathBuf,
    /// Its manifest, when it has a readable one.
    pub manifest: Option<Manifest>,
    /// LoRA or prefix (from its PEFT config's `peft_type`; None when unreadable).
    pub kind: Option<AdapterKind>,
    /// True for the version requests use.
    pub active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CollectionState {
    active: Option<u32>,
    /// Earlier active versions, oldest first (rollback pops).
    history: Vec<u32>,
    /// Highest version ever registered: numbers are never reused after a delete.
    #[serde(default)]
    last_version: u32,
}

/// An active version number and its loaded adapter.
type ActiveAdapter = (u32, Arc<LoraAdapter>);

/// The adapter store of one base model.
pub struct AdapterRegistry {
    root: PathBuf,
    cfg: LlamaConfig,
    base_sha256: Option<String>,
    /// Per collection: the active version and its loaded adapter (None: base model).
    cache: RwLock<HashMap<String, Option<ActiveAdapter>>>,
    write: Mutex<()>,
}

/// The error for a version that is not stored.
fn no_version(collection: &str, version: u32) -> Error {
    RegistryError::NotFound {
        collection: collection.into(),
        what: format!("version {version}"),
    }
    .into()
}

fn version_dir(v: u32) -> String {
    format!("v{v:04}")
}

/// Collection names become directory names: letters, digits, `-`, `_`, `.` only.
fn check_name(collection: &str) -> Result<()> {
    let ok = !collection.is_empty()
        && collection.len() <= 128
        && !collection.starts_with('.')
        && collection
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName(collection.to_string()).into())
    }
}

impl AdapterRegistry {
    /// Opens (creating) the registry at `root` for adapters of a model of shape `cfg`.
    pub fn open(root: &Path, cfg: &LlamaConfig) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
            cfg: cfg.clone(),
            base_sha256: None,
            cache: RwLock::new(HashMap::new()),
            write: Mutex::new(()),
        })
    }

    /// Opens the registry for adapters of the model in the GGUF file `model` (shape read
    /// from its metadata, fingerprint from its bytes), without loading its weights.
    pub fn open_for_model(root: &Path, model: &Path) -> Result<Self> {
        let content = crate::gguf::GgufFile::read_content(model)?;
        let cfg = LlamaConfig::from_metadata(&content.metadata)
            .map_err(|reason| Error::invalid(model, reason))?;
        Ok(Self::open(root, &cfg)?.with_base_sha256(engram_models::sha256_file(model)?))
    }

    /// Refuses to activate versions whose manifest names another base model (sha256).
    pub fn with_base_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.base_sha256 = Some(sha256.into());
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn collection_dir(&self, collection: &str) -> Result<PathBuf> {
        check_name(collection)?;
        Ok(self.root.join(collection))
    }

    fn state(&self, collection: &str) -> Result<CollectionState> {
        let path = self.collection_dir(collection)?.join(STATE_FILE);
        if !path.is_file() {
            return Ok(CollectionState::default());
        }
        read_json(&path, |e| {
            RegistryError::corrupt("registry state", &path, e)
        })
    }

    fn versions(&self, collection: &str) -> Result<Vec<u32>> {
        let dir = self.collection_dir(collection)?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<u32> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix('v')?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Stores the adapter in `source` (a directory with PEFT files and usually a
    /// `manifest.json`) as the next version of `collection`; does not activate it. The
    /// adapter is loaded first, so a broken one is refused before it is stored.
    pub fn register(&self, collection: &str, source: &Path) -> Result<AdapterVersion> {
        self.register_as(collection, source, None)
    }

    /// Stores the adapter in `source` as version `version` of `collection`, the number
    /// another node gave it (cluster mode: every node holds the same versions under
    /// the same numbers); a version already stored under that number is kept.
    pub fn register_version(
        &self,
        collection: &str,
        source: &Path,
        version: u32,
    ) -> Result<AdapterVersion> {
        self.register_as(collection, source, Some(version))
    }

    fn register_as(
        &self,
        collection: &str,
        source: &Path,
        number: Option<u32>,
    ) -> Result<AdapterVersion> {
        let dir = self.collection_dir(collection)?;
        if let Some(v) = number {
            if let Some(kept) = self.list(collection)?.into_iter().find(|k| k.version == v) {
                return Ok(kept);
            }
        }
        peft::load(source, &self.cfg, collection)?;
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-version-")
            .tempdir_in(&dir)
            .map_err(|e| Error::io("creating a temporary directory in", &dir, e))?;
        let entries = std::fs::read_dir(source).map_err(|e| Error::io("reading", source, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let to = tmp.path().join(entry.file_name());
                std::fs::copy(&path, &to).map_err(|e| Error::io("copying", &path, e))?;
                std::fs::File::open(&to)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io("syncing", &to, e))?;
            }
        }
        let mut state = self.state(collection)?;
        let newest = self.versions(collection)?.last().copied().unwrap_or(0);
        let version = number.unwrap_or(newest.max(state.last_version) + 1);
        let target = dir.join(version_dir(version));
        let tmp_path = tmp.keep();
        std::fs::rename(&tmp_path, &target).map_err(|e| Error::io("renaming into", &target, e))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        state.last_version = state.last_version.max(version);
        write_json(&dir.join(STATE_FILE), &state)?;
        Ok(AdapterVersion {
            collection: collection.into(),
            version,
            manifest: Manifest::load(&target).ok(),
            kind: peft::kind(&target).ok().flatten(),
            path: target,
            active: state.active == Some(version),
        })
    }

    /// Every version of `collection`, oldest first.
    pub fn list(&self, collection: &str) -> Result<Vec<AdapterVersion>> {
        let dir = self.collection_dir(collection)?;
        let state = self.state(collection)?;
        Ok(self
            .versions(collection)?
            .into_iter()
            .map(|v| {
                let path = dir.join(version_dir(v));
                AdapterVersion {
                    collection: collection.into(),
                    version: v,
                    manifest: Manifest::load(&path).ok(),
                    kind: peft::kind(&path).ok().flatten(),
                    path,
                    active: state.active == Some(v),
                }
            })
            .collect())
    }

    /// The manifest of one version.
    pub fn manifest(&self, collection: &str, version: u32) -> Result<Manifest> {
        let path = self.collection_dir(collection)?.join(version_dir(version));
        if !path.is_dir() {
            return Err(no_version(collection, version));
        }
        Manifest::load(&path)
    }

    /// Collections with at least one version.
    pub fn collections(&self) -> Result<Vec<String>> {
        let entries =
            std::fs::read_dir(&self.root).map_err(|e| Error::io("reading", &self.root, e))?;
        let mut out: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| check_name(n).is_ok())
            .filter(|n| self.versions(n).map(|v| !v.is_empty()).unwrap_or(false))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Loads version `version` of `collection` (checking its base model).
    fn load_version(&self, collection: &str, version: u32) -> Result<Arc<LoraAdapter>> {
        let path = self.collection_dir(collection)?.join(version_dir(version));
        if !path.is_dir() {
            return Err(no_version(collection, version));
        }
        if let (Some(want), Ok(m)) = (&self.base_sha256, Manifest::load(&path)) {
            if &m.base_model.sha256 != want {
                return Err(RegistryError::Refused(format!(
                    "version {version} of '{collection}' was trained on base model {} (sha256 {}), not the one loaded: retrain it",
                    m.base_model.name, m.base_model.sha256
                ))
                .into());
            }
        }
        let name = format!("{collection}@v{version}");
        Ok(Arc::new(peft::load(&path, &self.cfg, &name)?))
    }

    fn set_state(
        &self,
        collection: &str,
        state: &CollectionState,
        adapter: Option<ActiveAdapter>,
    ) -> Result<()> {
        write_json(&self.collection_dir(collection)?.join(STATE_FILE), state)?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(collection.to_string(), adapter);
        Ok(())
    }

    /// Makes `version` the one requests use (loaded before the swap).
    pub fn activate(&self, collection: &str, version: u32) -> Result<()> {
        let adapter = self.load_version(collection, version)?;
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.state(collection)?;
        if state.active == Some(version) {
            return Ok(());
        }
        if let Some(previous) = state.active {
            state.history.push(previous);
        }
        state.active = Some(version);
        self.set_state(collection, &state, Some((version, adapter)))
    }

    /// Stops using any adapter for `collection` (answers come from the base model).
    pub fn deactivate(&self, collection: &str) -> Result<()> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.state(collection)?;
        if let Some(previous) = state.active.take() {
            state.history.push(previous);
        }
        self.set_state(collection, &state, None)
    }

    /// Goes back to the previously active version (skipping deleted ones) and returns it.
    pub fn rollback(&self, collection: &str) -> Result<u32> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.state(collection)?;
        let existing = self.versions(collection)?;
        while let Some(previous) = state.history.pop() {
            if Some(previous) == state.active || !existing.contains(&previous) {
                continue;
            }
            let adapter = self.load_version(collection, previous)?;
            state.active = Some(previous);
            self.set_state(collection, &state, Some((previous, adapter)))?;
            return Ok(previous);
        }
        Err(RegistryError::NotFound {
            collection: collection.into(),
            what: "earlier active version to roll back to".into(),
        }
        .into())
    }

    /// Deletes a version; the active one is refused (deactivate or activate another first).
    pub fn delete(&self, collection: &str, version: u32) -> Result<()> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.state(collection)?;
        if state.active == Some(version) {
            return Err(RegistryError::Refused(format!(
                "version {version} is the active adapter of '{collection}': activate another version or deactivate first"
            ))
            .into());
        }
        let path = self.collection_dir(collection)?.join(version_dir(version));
        if !path.is_dir() {
            return Err(no_version(collection, version));
        }
        std::fs::remove_dir_all(&path).map_err(|e| Error::io("deleting", &path, e))
    }

    /// The active version number of `collection`, if any.
    pub fn active_version(&self, collection: &str) -> Result<Option<u32>> {
        Ok(self.state(collection)?.active)
    }

    /// The adapter requests on `collection` should use (None: the base model). Cached in
    /// memory after the first call; cheap (one read lock and an `Arc` clone).
    pub fn active(&self, collection: &str) -> Result<Option<Arc<LoraAdapter>>> {
        Ok(self.active_with_version(collection)?.map(|(_, a)| a))
    }

    /// [`AdapterRegistry::active`] with its version number, read from the same cache
    /// entry, so the two always belong together (answers report which version spoke).
    pub fn active_with_version(&self, collection: &str) -> Result<Option<(u32, Arc<LoraAdapter>)>> {
        check_name(collection)?;
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(collection)
        {
            return Ok(hit.clone());
        }
        let active = match self.state(collection)?.active {
            Some(v) => Some((v, self.load_version(collection, v)?)),
            None => None,
        };
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(collection.to_string(), active.clone());
        Ok(active)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::lora::LoraTarget;
    use crate::testing::tiny_config;

    fn adapter_dir(root: &Path, name: &str, value: f32) -> PathBuf {
        let cfg = tiny_config();
        let mut a = LoraAdapter::new(name, &cfg, 2, 4.0).unwrap();
        let (d_in, d_out) = LoraTarget::Q.dims(&cfg);
        let ta = Tensor::full(value, (2, d_in), &Device::Cpu).unwrap();
        let tb = Tensor::full(value, (d_out, 2), &Device::Cpu).unwrap();
        a.insert(0, LoraTarget::Q, &ta, &tb).unwrap();
        let dir = root.join(name);
        peft::save(&a, 0.0, "tiny", &dir).unwrap();
        dir
    }

    fn value_of(a: &LoraAdapter) -> f32 {
        let (a, _) = a.pair(0, LoraTarget::Q).unwrap();
        a.flatten_all()
            .unwrap()
            .get(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn versions_activate_swap_roll_back_and_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = AdapterRegistry::open(&tmp.path().join("reg"), &tiny_config()).unwrap();
        assert!(reg.active("docs").unwrap().is_none());
        let v1 = reg
            .register("docs", &adapter_dir(tmp.path(), "one", 1.0))
            .unwrap();
        let v2 = reg
            .register("docs", &adapter_dir(tmp.path(), "two", 2.0))
            .unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert!(!v2.active, "registering does not activate");
        assert!(reg.active("docs").unwrap().is_none());

        reg.activate("docs", 1).unwrap();
        let in_flight = reg.active("docs").unwrap().unwrap();
        assert_eq!(value_of(&in_flight), 1.0);
        reg.activate("docs", 2).unwrap();
        // The request that started with v1 still holds v1; new requests get v2.
        assert_eq!(value_of(&in_flight), 1.0);
        assert_eq!(value_of(&reg.active("docs").unwrap().unwrap()), 2.0);
        assert_eq!(reg.active("docs").unwrap().unwrap().name(), "docs@v2");
        let listed: Vec<(u32, bool)> = reg
            .list("docs")
            .unwrap()
            .iter()
            .map(|v| (v.version, v.active))
            .collect();
        assert_eq!(listed, vec![(1, false), (2, true)]);
        assert_eq!(reg.collections().unwrap(), vec!["docs".to_string()]);

        assert!(matches!(
            reg.delete("docs", 2),
            Err(Error::Registry(RegistryError::Refused(_)))
        ));
        assert_eq!(reg.rollback("docs").unwrap(), 1);
        assert_eq!(value_of(&reg.active("docs").unwrap().unwrap()), 1.0);
        reg.delete("docs", 2).unwrap();
        assert!(matches!(
            reg.activate("docs", 2),
            Err(Error::Registry(RegistryError::NotFound { .. }))
        ));
        assert!(reg.rollback("docs").is_err(), "nothing earlier");

        // A fresh registry on the same root (a restarted server) sees the same state.
        let again = AdapterRegistry::open(&tmp.path().join("reg"), &tiny_config()).unwrap();
        assert_eq!(again.active_version("docs").unwrap(), Some(1));
        assert_eq!(value_of(&again.active("docs").unwrap().unwrap()), 1.0);
        let v3 = again
            .register("docs", &adapter_dir(tmp.path(), "three", 3.0))
            .unwrap();
        assert_eq!(v3.version, 3, "numbers are never reused");
        again.deactivate("docs").unwrap();
        assert!(again.active("docs").unwrap().is_none());
    }

    #[test]
    fn versions_can_be_stored_under_given_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = AdapterRegistry::open(&tmp.path().join("reg"), &tiny_config()).unwrap();
        let three = reg
            .register_version("docs", &adapter_dir(tmp.path(), "three", 3.0), 3)
            .unwrap();
        assert_eq!(three.version, 3);
        // The same number again keeps the stored version.
        let again = reg
            .register_version("docs", &adapter_dir(tmp.path(), "other", 9.0), 3)
            .unwrap();
        assert_eq!(again.path, three.path);
        reg.activate("docs", 3).unwrap();
        assert_eq!(value_of(&reg.active("docs").unwrap().unwrap()), 3.0);
        let one = reg
            .register_version("docs", &adapter_dir(tmp.path(), "one", 1.0), 1)
            .unwrap();
        assert_eq!(one.version, 1);
        // A local registration after them takes the next free number.
        let next = reg
            .register("docs", &adapter_dir(tmp.path(), "four", 4.0))
            .unwrap();
        assert_eq!(next.version, 4);
    }

    #[test]
    fn bad_names_and_broken_adapters_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = AdapterRegistry::open(tmp.path(), &tiny_config()).unwrap();
        assert!(matches!(
            reg.active("../etc"),
            Err(Error::Registry(RegistryError::InvalidName(_)))
        ));
        assert!(reg.list("a/b").is_err());
        let broken = tmp.path().join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join(peft::CONFIG_FILE), b"{}").unwrap();
        assert!(reg.register("docs", &broken).is_err());
        assert!(reg.list("docs").unwrap().is_empty());
        assert!(matches!(
            reg.activate("docs", 7),
            Err(Error::Registry(RegistryError::NotFound { .. }))
        ));
    }
}
