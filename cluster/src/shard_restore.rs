//! A shard that no live node keeps, brought back onto the node placed on it from
//! the newest snapshot that holds it and the write log after that snapshot.
//!
//! Why: with records that follow placement a shard lives on its replicas alone; at
//! replication 1 (or with every replica lost) the node placed on it next has no one
//! to copy it from ([`crate::shard_move`]). Nothing is lost all the same: the
//! stream is trimmed only as far as every shard is in some snapshot
//! (`snapshot::covered_to`), so the newest snapshot holding the shard plus the
//! shard's messages after that snapshot's sequence are its whole state. The node
//! downloads that snapshot, opens it aside as a store of its own, exports the shard
//! from it and imports the copy, applies the shard's messages between the
//! snapshot's sequence and its own applied one (read from the stream by subject),
//! then the writes its follower passed over meanwhile ([`crate::hold`]), and keeps
//! the shard, as a copy does.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::stream::RawMessageErrorKind;
use engram_store::limits::Limits;
use engram_store::log::Batch;
use engram_store::Store;

use crate::shard_move::{import, keep, write_copy};
use crate::{nats, snapshot, Error, Node, Result, STREAM, SUBJECT_PREFIX};

/// Restores `collection`'s `shard` here (see the module's doc). Returns how many
/// documents came from the snapshot.
pub(crate) async fn restore(node: &Arc<Node>, collection: &str, shard: u32) -> Result<u64> {
    let started = Instant::now();
    let key = format!("{collection}.{shard}");
    let tail = node.hold.keep_tail(&key);
    let applied = node.store.store().applied_seq();
    tail.after(applied);
    let objects = snapshot::bucket(&node.js, node.config.replicas()).await?;
    let listed = snapshot::list_in(&objects).await?;
    let mut stream = node.js.get_stream(STREAM).await.map_err(nats)?;
    let first_seq = stream.info().await.map_err(nats)?.state.first_sequence;
    // Every message after the snapshot must still be in the stream.
    let from = listed
        .iter()
        .find(|s| s.holds(&key) && s.seq + 1 >= first_seq);
    if from.is_none() && first_seq > 1 {
        return Err(Error::Snapshot(format!(
            "shard {shard} of '{collection}' is kept by no live node, no snapshot holds it and the stream begins at {first_seq}: start a node that kept it"
        )));
    }
    let copying = (collection.to_string(), shard);
    node.copying.lock().expect("lock").insert(copying.clone());
    let restored = async {
        let staging = tempfile::tempdir()
            .map_err(|e| Error::Snapshot(format!("cannot stage a snapshot: {e}")))?;
        let db = match from {
            Some(snap) => Some(crate::bootstrap::stage(&objects, snap, staging.path()).await?),
            None => None,
        };
        let (owner, name) = (node.store.clone(), collection.to_string());
        let documents = tokio::task::spawn_blocking(move || {
            import_from(owner.store(), db.as_deref(), &name, shard)
        })
        .await
        .map_err(nats)??;
        // The snapshot's sequence (checked when it was staged), whether the shard came
        // from it or, its collection being newer, from the log alone.
        let base = from.map_or(0, |s| s.seq);
        let replayed = replay(node, &stream, &key, base, applied).await?;
        let (paused, tail) = keep(node, collection, shard, applied, &tail).await?;
        Ok::<_, Error>((base, documents, replayed, paused, tail))
    }
    .await;
    node.copying.lock().expect("lock").remove(&copying);
    let (base, documents, replayed, paused, tail) = restored?;
    tracing::info!(
        collection,
        shard,
        snapshot = from.map_or("none", |s| s.name.as_str()),
        snapshot_seq = base,
        documents,
        replayed,
        tail,
        seconds = started.elapsed().as_secs_f64(),
        paused_ms = paused.as_secs_f64() * 1e3,
        "shard restored from its snapshot and the log; its records are kept here from now on"
    );
    Ok(documents)
}

/// Imports `collection`'s `shard` as the snapshot database in `db` holds it (none:
/// the shard starts empty); its documents. Blocking.
fn import_from(
    live: &Store,
    db: Option<&std::path::Path>,
    collection: &str,
    shard: u32,
) -> engram_store::Result<u64> {
    if let Some(db) = db {
        let no_models: Box<engram_store::EncoderLoader> =
            Box::new(|m| Err(engram_embedder::Error::UnsupportedModel(m.to_string())));
        let snap = Store::open_with_loader(db, Limits::default(), no_models)?;
        let file = tempfile::NamedTempFile::new()
            .map_err(|e| engram_store::Error::Unavailable(format!("shard restore: {e}")))?;
        let incarnation = live.incarnation(collection)?;
        match write_copy(&snap, collection, shard, file.as_file()) {
            // The collection as it is now, in the snapshot: its shard from there.
            Ok(export) if export.incarnation == incarnation => {
                drop(snap);
                return import(live, collection, shard, &export, file.path());
            }
            // Created (again) after the snapshot: its shard is all in the log.
            Ok(_) | Err(engram_store::Error::CollectionNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    live.begin_shard_import(collection, shard)?;
    Ok(0)
}

/// Applies the messages of shard `key` in (`after`, `upto`] from the stream to the
/// shard being restored; how many there were.
async fn replay(
    node: &Node,
    stream: &async_nats::jetstream::stream::Stream,
    key: &str,
    after: u64,
    upto: u64,
) -> Result<u64> {
    let subject = format!("{SUBJECT_PREFIX}{key}");
    let (mut next, mut applied) = (after + 1, 0);
    while next <= upto {
        let message = match stream
            .get_first_raw_message_by_subject(&subject, next)
            .await
        {
            Ok(m) if m.sequence <= upto => m,
            Ok(_) => break,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => break,
            Err(e) => return Err(nats(e)),
        };
        let seq = message.sequence;
        let incarnation = crate::log::incarnation_of(Some(&message.headers));
        let (owner, key) = (node.store.clone(), key.to_string());
        tokio::task::spawn_blocking(move || {
            let batch = Batch::decode(&message.payload)?;
            owner
                .store()
                .apply_shard_tail(seq, &key, incarnation, batch)
        })
        .await
        .map_err(nats)??;
        applied += 1;
        next = seq + 1;
    }
    Ok(applied)
}
