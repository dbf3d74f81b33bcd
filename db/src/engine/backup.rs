//! Backup and restore of a whole database directory: the store's RocksDB
//! checkpoint plus the application's files beside it (`adapters/`, `promotions/`).
//!
//! Why restore stages: a restore that copies into the data directory in place
//! leaves a half-copied database when anything fails midway (a directory the copy
//! does not expect, a full disk, a truncated backup). So a restore copies the
//! backup into a sibling staging directory, syncs it, verifies it (the same files
//! as the backup, and a database that opens and reads every collection's
//! documents), and only then swaps it in by renames: on any failure before the
//! swap the data directory is untouched and the staging directory removed.

use std::path::{Path, PathBuf};

use engram_store::storage::Storage;

use crate::error::{Error, Result};

/// The application's directories inside a data directory that a backup carries
/// besides the RocksDB files.
pub(super) const APP_DIRS: [&str; 2] = ["adapters", "promotions"];

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// Where the replaced data directory was moved (with `force` over a non-empty one).
    pub aside: Option<PathBuf>,
}

/// Copies a directory tree (files and folders only), syncing every file and folder
/// so a crash right after the copy cannot leave it half on disk.
pub(super) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        } else {
            return Err(Error::invalid(
                "backup",
                format!(
                    "{} is neither a file nor a directory; a backup holds only those",
                    entry.path().display()
                ),
            ));
        }
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Every file under `dir` with its size, by path relative to `dir`, sorted.
fn listing(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                walk(root, &entry.path(), out)?;
            } else {
                let rel = entry.path().strip_prefix(root).expect("under root").into();
                out.push((rel, entry.metadata()?.len()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Checks a staged copy before it replaces anything: the same files and sizes as
/// the backup, and a database that opens and reads back every collection's
/// documents (RocksDB verifies block checksums as it reads).
fn verify(backup: &Path, staged: &Path) -> Result<()> {
    if listing(backup)? != listing(staged)? {
        return Err(Error::corrupt(format!(
            "the copy of {} differs from the backup's files",
            backup.display()
        )));
    }
    let broken = |e: engram_store::Error| {
        Error::corrupt(format!(
            "the backup in {} does not open as a database ({e}); it is incomplete or damaged",
            backup.display()
        ))
    };
    let storage = Storage::open(staged).map_err(broken)?;
    let collections = storage.collections::<serde_json::Value>().map_err(broken)?;
    for (name, _) in collections {
        storage
            .scan_documents::<serde_json::Value>(&name, |_, _| Ok(()))
            .map_err(broken)?;
    }
    Ok(())
}

/// Restores `backup` into `data_dir`, all or nothing: stage, verify, then swap.
/// A non-empty `data_dir` is replaced only with `force`, and only when no server
/// holds it; it is then moved aside (`<data_dir>.replaced-<unix time>`), never
/// deleted, so a mistaken restore can be undone by hand.
pub fn restore(backup: &Path, data_dir: &Path, force: bool) -> Result<Restored> {
    if !backup.join("CURRENT").is_file() {
        return Err(Error::invalid(
            "backup",
            format!(
                "{} is not an Engram backup (no RocksDB CURRENT file)",
                backup.display()
            ),
        ));
    }
    let occupied = data_dir.is_dir() && std::fs::read_dir(data_dir)?.next().is_some();
    if occupied && !force {
        return Err(Error::invalid(
            "data_dir",
            format!(
                "{} is not empty; stop the server and pass --force to replace it (the old one is moved aside)",
                data_dir.display()
            ),
        ));
    }
    // Opening a database a server holds fails on RocksDB's lock: that is how a live
    // restore is refused.
    if occupied && data_dir.join("CURRENT").exists() {
        if let Err(e) = Storage::open(data_dir) {
            return Err(Error::invalid(
                "data_dir",
                format!(
                    "{} is in use or unreadable ({e}); stop the server first",
                    data_dir.display()
                ),
            ));
        }
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| Error::invalid("data_dir", "name a directory, not a root"))?
        .to_string_lossy()
        .into_owned();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let staged = copy_tree(backup, &staging).and_then(|()| verify(backup, &staging));
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    // Swap: the old directory goes aside (or, empty, away), the staged one in.
    let aside = if occupied {
        let aside = parent.join(format!(
            "{name}.replaced-{}",
            engram_store::clock::unix_now()
        ));
        std::fs::rename(data_dir, &aside)?;
        Some(aside)
    } else {
        if data_dir.is_dir() {
            std::fs::remove_dir(data_dir)?;
        }
        None
    };
    if let Err(e) = std::fs::rename(&staging, data_dir) {
        if let Some(aside) = &aside {
            let _ = std::fs::rename(aside, data_dir);
        }
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.into());
    }
    sync_dir(&parent)?;
    Ok(Restored { aside })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::engine_without_models as engine;
    use serde_json::json;

    /// A database with one collection of two documents and an adapter folder.
    fn backup_of_a_database(root: &Path) -> PathBuf {
        let data = root.join("data");
        let e = engine(&data);
        let req = serde_json::from_value(json!({"dimension": 2})).unwrap();
        e.store().create_collection("docs", req).unwrap();
        let docs = serde_json::from_value(json!([
            {"id": "a", "vector": [1.0, 0.0], "text": "alpha"},
            {"id": "b", "vector": [0.0, 1.0], "text": "beta"},
        ]))
        .unwrap();
        e.store().upsert("docs", docs).unwrap();
        let v1 = data.join("adapters/docs/v0001");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("adapter_config.json"), "{}").unwrap();
        let run = data.join("promotions/docs/abc");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("synth.jsonl"), "").unwrap();
        let backup = root.join("backup");
        e.backup(&backup).unwrap();
        backup
    }

    fn documents(dir: &Path) -> usize {
        let e = engine(dir);
        e.store().collection_info("docs").unwrap().documents
    }

    #[test]
    fn restores_a_backup_with_adapters_into_a_new_and_an_existing_directory() {
        let root = tempfile::tempdir().unwrap();
        let backup = backup_of_a_database(root.path());
        let target = root.path().join("restored");
        let r = restore(&backup, &target, false).unwrap();
        assert!(r.aside.is_none());
        assert!(target
            .join("adapters/docs/v0001/adapter_config.json")
            .is_file());
        assert!(target.join("promotions/docs/abc/synth.jsonl").is_file());
        assert_eq!(documents(&target), 2);

        let err = restore(&backup, &target, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        let r = restore(&backup, &target, true).unwrap();
        let aside = r.aside.expect("the old directory is kept aside");
        assert!(aside.join("CURRENT").is_file());
        assert_eq!(documents(&target), 2);
        let leftovers: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
            .collect();
        assert!(leftovers.is_empty(), "no staging directory is left behind");
    }

    #[test]
    fn a_damaged_backup_leaves_the_target_untouched() {
        let root = tempfile::tempdir().unwrap();
        let backup = backup_of_a_database(root.path());
        let target = root.path().join("restored");
        restore(&backup, &target, false).unwrap();
        let tables = |dir: &Path| -> Vec<(PathBuf, u64)> {
            let all = listing(dir).unwrap();
            all.into_iter()
                .filter(|(p, _)| {
                    p.extension().is_some_and(|x| x == "sst") || p.starts_with("adapters")
                })
                .collect()
        };
        let before = tables(&target);
        // Truncate every table file of the backup.
        for entry in std::fs::read_dir(&backup).unwrap().flatten() {
            if entry.path().extension().is_some_and(|x| x == "sst") {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(entry.path())
                    .unwrap();
                f.set_len(f.metadata().unwrap().len() / 2).unwrap();
            }
        }
        let err = restore(&backup, &target, true).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        assert_eq!(tables(&target), before, "the target is untouched");
        assert_eq!(documents(&target), 2);
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.contains("restoring") || n.contains("replaced")),
            "{names:?}"
        );
    }

    #[test]
    fn a_directory_that_is_not_a_backup_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let err = restore(root.path(), &root.path().join("t"), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an Engram backup"), "{err}");
        assert!(!root.path().join("t").exists());
    }
}
