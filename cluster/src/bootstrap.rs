//! Bootstrapping a node from a snapshot, before its store opens (`engram serve
//! --cluster` calls [`prepare`] first): a node whose data directory is behind the
//! stream's first message (the stream was trimmed past it), or empty while a
//! snapshot exists, downloads the newest snapshot, checks its SHA-256, unpacks it
//! beside the data directory, checks it opens at the sequence it is named for, and
//! swaps it in; the follower then replays the stream's tail after that sequence.
//!
//! A snapshot that fails any check is logged and the next older one is tried (one
//! whose tail the stream no longer holds is useless and skipped). With none usable,
//! an empty node replays the whole stream if the stream still holds it; otherwise
//! start-up stops with an error that says what to do. A data directory that is
//! replaced is moved aside (`<dir>.replaced-<unix time>`), never deleted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use async_nats::jetstream::object_store::ObjectStore;
use engram_store::store::applied_seq_in;

use crate::snapshot::{self, SnapshotInfo};
use crate::{archive, connect, nats, ClusterConfig, Error, Result, STREAM};

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The data directory was kept; the follower resumes after `applied`.
    Kept { applied: u64 },
    /// Replaced by this snapshot; the follower replays the tail after its sequence.
    Bootstrapped {
        snapshot: SnapshotInfo,
        seconds: f64,
    },
    /// Empty, and no snapshot usable: the whole stream is replayed.
    FullReplay,
}

/// Whether a node needs a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Need {
    /// Its next message is still in the stream.
    No,
    /// It holds no database and a snapshot exists: faster than a replay.
    Preferred,
    /// The stream no longer holds its next message.
    Required,
}

/// What a node that applied up to `applied` needs, the stream beginning at
/// `first_seq` (an empty stream's first sequence is its last plus one); `empty`: its
/// data directory holds no database yet.
pub fn need(applied: u64, first_seq: u64, empty: bool, any_snapshot: bool) -> Need {
    if applied + 1 < first_seq {
        Need::Required
    } else if empty && any_snapshot {
        Need::Preferred
    } else {
        Need::No
    }
}

/// Brings the data directory up to a point the stream continues from (see the
/// module comment). Blocking: run before the store opens.
pub fn prepare(config: &ClusterConfig, data_dir: &Path) -> Result<Prepared> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the bootstrap runtime: {e}")))?;
    runtime.block_on(async {
        let js = connect(config).await?;
        let applied = applied_seq_in(data_dir)?;
        let mut stream = js.get_stream(STREAM).await.map_err(nats)?;
        let first_seq = stream.info().await.map_err(nats)?.state.first_sequence;
        let store = snapshot::bucket(&js, config.replicas()).await?;
        let snapshots = snapshot::list_in(&store).await?;
        let empty = !data_dir.join("CURRENT").is_file();
        let need = need(applied, first_seq, empty, !snapshots.is_empty());
        if need == Need::No {
            return Ok(Prepared::Kept { applied });
        }
        tracing::info!(
            applied,
            first_seq,
            snapshots = snapshots.len(),
            "bootstrapping this node from the newest snapshot"
        );
        let mut reasons = Vec::new();
        for snap in &snapshots {
            if snap.seq + 1 < first_seq {
                reasons.push(format!(
                    "{} is at {}, before the stream's first message {first_seq}",
                    snap.name, snap.seq
                ));
                continue;
            }
            let started = Instant::now();
            match restore(&store, snap, data_dir).await {
                Ok(()) => {
                    let seconds = started.elapsed().as_secs_f64();
                    tracing::info!(name = %snap.name, seq = snap.seq, bytes = snap.bytes, seconds, "bootstrapped from the snapshot; replaying the stream after it");
                    return Ok(Prepared::Bootstrapped {
                        snapshot: snap.clone(),
                        seconds,
                    });
                }
                Err(e) => {
                    tracing::warn!(name = %snap.name, error = %e, "snapshot not usable; trying the previous one");
                    reasons.push(format!("{}: {e}", snap.name));
                }
            }
        }
        if need == Need::Preferred {
            tracing::warn!(reasons = ?reasons, "no snapshot usable; replaying the whole stream");
            return Ok(Prepared::FullReplay);
        }
        Err(Error::Snapshot(format!(
            "this node has applied the write log up to {applied}, the stream now begins at {first_seq}, and no snapshot is usable ({}); take one on a live node (`engram cluster snapshot`) and start this node again",
            if reasons.is_empty() { "there is none".to_string() } else { reasons.join("; ") }
        )))
    })
}

/// Downloads `snap`, checks it, and swaps it in as `data_dir`; on any failure the
/// data directory is untouched and the staging directory removed.
async fn restore(store: &ObjectStore, snap: &SnapshotInfo, data_dir: &Path) -> Result<()> {
    let name = data_dir
        .file_name()
        .ok_or_else(|| Error::Config("the data directory must be named, not a root".into()))?
        .to_string_lossy()
        .into_owned();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fail = |e: std::io::Error| Error::Snapshot(format!("bootstrap: {e}"));
    std::fs::create_dir_all(&parent).map_err(fail)?;
    let staging = parent.join(format!(".{name}.bootstrap-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(fail)?;
    }
    std::fs::create_dir_all(&staging).map_err(fail)?;
    let staged = stage(store, snap, &staging).await;
    let swapped = staged.and_then(|db| swap_in(&db, data_dir, &parent, &name));
    let _ = std::fs::remove_dir_all(&staging);
    swapped
}

/// Downloads and checks `snap` into `staging`; the unpacked database's directory.
pub(crate) async fn stage(
    store: &ObjectStore,
    snap: &SnapshotInfo,
    staging: &Path,
) -> Result<PathBuf> {
    let file = staging.join("snapshot.snap");
    let (bytes, sha) = snapshot::fetch(store, &snap.name, Some(&file)).await?;
    if sha != snap.sha256 || bytes != snap.bytes {
        return Err(Error::Snapshot(format!(
            "checksum mismatch: {bytes} bytes with SHA-256 {sha}, stored as {} bytes with {}",
            snap.bytes, snap.sha256
        )));
    }
    let db = staging.join("db");
    archive::unpack(&file, &db)?;
    let _ = std::fs::remove_file(&file);
    let at = applied_seq_in(&db)
        .map_err(|e| Error::Snapshot(format!("the unpacked database does not open: {e}")))?;
    if at != snap.seq {
        return Err(Error::Snapshot(format!(
            "the unpacked database is at sequence {at}, not {} as named",
            snap.seq
        )));
    }
    Ok(db)
}

/// Moves a non-empty `data_dir` aside and `db` in its place.
fn swap_in(db: &Path, data_dir: &Path, parent: &Path, name: &str) -> Result<()> {
    let fail = |e: std::io::Error| Error::Snapshot(format!("bootstrap: {e}"));
    let occupied = data_dir.is_dir() && std::fs::read_dir(data_dir).map_err(fail)?.next().is_some();
    if occupied {
        let aside = parent.join(format!(
            "{name}.replaced-{}",
            engram_store::clock::unix_now()
        ));
        std::fs::rename(data_dir, &aside).map_err(fail)?;
        tracing::warn!(aside = %aside.display(), "the old data directory was moved aside");
    } else if data_dir.is_dir() {
        std::fs::remove_dir(data_dir).map_err(fail)?;
    }
    std::fs::rename(db, data_dir).map_err(fail)?;
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(fail)
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
mod tests;
