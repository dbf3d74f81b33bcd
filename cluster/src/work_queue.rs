//! Heavy, rare jobs (promotions) on a JetStream work queue: one node runs each,
//! and another takes it over when that node dies.
//!
//! Layout: stream [`JOBS_STREAM`] (retention `WorkQueue`: a message leaves the
//! stream once acknowledged) on subjects `engram.jobs.KIND`, one durable pull
//! consumer [`WORKERS`] shared by every node (one consumer group), explicit acks.
//! A node pulls one message only while it runs none, starts the job through its
//! [`JobRunner`] and, while it runs, sends `AckProgress` every [`PROGRESS_EVERY`] so
//! the server keeps the message ([`ACK_WAIT`]) however long the job takes. When the
//! node dies the progress stops, and [`ACK_WAIT`] later the message is delivered to
//! another node (at most [`MAX_DELIVER`] deliveries: a job that kills every node it
//! runs on stops there). A finished job (done, failed or cancelled) is acknowledged:
//! a failure is the job's answer, not a reason to run it again.
//!
//! Status from any node: every job's status (the kind's JSON, as the local job
//! framework reports it) is kept in the key-value bucket [`STATUS_BUCKET`] under
//! `KIND.COLLECTION.ID`, written when the job is queued and every [`PROGRESS_EVERY`]
//! by the node that runs it, with that node, the delivery and every run so far
//! ([`Record`]). A record that says running but whose node stopped writing for
//! [`STALE_AFTER`] reads "interrupted". A cancel asked on any node is a key
//! `...ID.cancel`, which the running node checks with its progress.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{kv, stream, AckKind, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{nats, Error, Node, Result};

/// The work-queue stream.
pub const JOBS_STREAM: &str = "ENGRAM-JOBS";
/// Its subjects: `engram.jobs.` and the job's kind.
pub const JOBS_SUBJECT_PREFIX: &str = "engram.jobs.";
/// The one durable consumer every node pulls from.
pub const WORKERS: &str = "workers";
/// The bucket of job statuses.
pub const STATUS_BUCKET: &str = "engram-jobs";
/// How long the server waits for an acknowledgment (or progress) before it
/// delivers the message to another node.
pub const ACK_WAIT: Duration = Duration::from_secs(20);
/// How often a running job's node says it is alive (and refreshes the status).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// Deliveries of one job at most.
pub const MAX_DELIVER: i64 = 4;
/// A running job whose node has not written its status for this long is reported
/// interrupted (the node died; a redelivery, if one is left, rewrites it).
pub const STALE_AFTER: Duration = Duration::from_secs(3 * ACK_WAIT.as_secs());
/// How long a queued job may wait for a node: the stream's messages expire then.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A job as queued: what to run, where, and its id (the same on every delivery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedJob {
    /// The job kind ("promotion").
    pub kind: String,
    pub collection: String,
    pub id: String,
    /// The kind's request, as the node that queued it validated it.
    pub request: Value,
}

impl QueuedJob {
    /// The job's key in [`STATUS_BUCKET`].
    pub fn key(&self) -> String {
        status_key(&self.kind, &self.collection, &self.id)
    }
}

fn status_key(kind: &str, collection: &str, id: &str) -> String {
    format!("{kind}.{collection}.{id}")
}

/// One delivery of a job (the store's type, so job statuses show it).
pub use engram_store::jobs::JobRun as Run;

/// A job's status as stored: the kind's status JSON, and where it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The kind's status (`PromotionStatus`, ...), with `node`, `delivery` and `runs`
    /// added when it is read ([`Record::view`]).
    pub status: Value,
    /// Every delivery so far, oldest first.
    #[serde(default)]
    pub runs: Vec<Run>,
    /// Unix milliseconds of the last write.
    pub updated_ms: u64,
}

impl Record {
    /// The status as the API shows it: the kind's JSON, plus the node that runs (or
    /// ran) it, its delivery, every run, and "interrupted" for a running job whose
    /// node stopped writing (at `now_ms`).
    pub fn view(&self, now_ms: u64) -> Value {
        let mut status = self.status.clone();
        let Some(obj) = status.as_object_mut() else {
            return status;
        };
        if let Some(last) = self.runs.last() {
            obj.insert("node".into(), last.node.into());
            obj.insert("delivery".into(), last.delivery.into());
        }
        obj.insert(
            "runs".into(),
            serde_json::to_value(&self.runs).expect("runs serialise"),
        );
        let stale = now_ms.saturating_sub(self.updated_ms) > STALE_AFTER.as_millis() as u64;
        if obj.get("state") == Some(&Value::from("running")) && !self.runs.is_empty() && stale {
            let node = self.runs.last().map_or(0, |r| r.node);
            obj.insert("state".into(), "interrupted".into());
            obj.insert(
                "error".into(),
                format!(
                    "node {node} stopped reporting {} s ago and no other node took the job over ({} deliveries at most)",
                    now_ms.saturating_sub(self.updated_ms) / 1000,
                    MAX_DELIVER
                )
                .into(),
            );
        }
        status
    }
}

/// What runs queued jobs on a node (the server's engine).
pub trait JobRunner: Send + Sync + 'static {
    /// Starts `job` on this node in the background (its own thread); an error is
    /// the job's failure.
    fn start(&self, job: &QueuedJob) -> std::result::Result<(), String>;
    /// The job's live status JSON on this node (None: it does not run here).
    fn status(&self, job: &QueuedJob) -> Option<Value>;
    /// Asks the job running here to stop.
    fn cancel(&self, job: &QueuedJob);
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn is_running(status: &Value) -> bool {
    status.get("state") == Some(&Value::from("running"))
}

/// The queue as one node uses it.
#[derive(Clone)]
pub struct Queue {
    js: Context,
    replicas: usize,
    node_id: u32,
    /// [`ACK_WAIT`] and [`PROGRESS_EVERY`]; tests shorten them.
    pub ack_wait: Duration,
    pub progress_every: Duration,
}

impl Queue {
    pub fn new(js: Context, replicas: usize, node_id: u32) -> Self {
        Queue {
            js,
            replicas,
            node_id,
            ack_wait: ACK_WAIT,
            progress_every: PROGRESS_EVERY,
        }
    }

    /// The stream, made if missing.
    async fn stream(&self) -> Result<stream::Stream> {
        crate::made(|| {
            self.js.get_or_create_stream(stream::Config {
                name: JOBS_STREAM.to_string(),
                subjects: vec![format!("{JOBS_SUBJECT_PREFIX}>")],
                retention: stream::RetentionPolicy::WorkQueue,
                num_replicas: self.replicas,
                storage: stream::StorageType::File,
                max_age: MAX_AGE,
                ..Default::default()
            })
        })
        .await
    }

    async fn bucket(&self) -> Result<kv::Store> {
        crate::made(|| {
            self.js.create_key_value(kv::Config {
                bucket: STATUS_BUCKET.to_string(),
                history: 1,
                num_replicas: self.replicas,
                ..Default::default()
            })
        })
        .await
    }

    /// Queues `job` with its first status (the kind's JSON, "running" at stage
    /// "queued"); the job's key is the message id, so a job queued twice within the
    /// stream's duplicate window (two minutes) runs once.
    pub async fn enqueue(&self, job: &QueuedJob, status: Value) -> Result<()> {
        self.stream().await?;
        let kv = self.bucket().await?;
        let record = Record {
            status,
            runs: Vec::new(),
            updated_ms: now_ms(),
        };
        put_record(&kv, &job.key(), &record).await?;
        let payload = Bytes::from(serde_json::to_vec(job).expect("jobs serialise"));
        // Repeated safely: the message id makes a second copy a duplicate.
        crate::made(|| async {
            let msg = PublishMessage::build()
                .payload(payload.clone())
                .message_id(job.key());
            self.js
                .send_publish(format!("{JOBS_SUBJECT_PREFIX}{}", job.kind), msg)
                .await?
                .await
        })
        .await?;
        Ok(())
    }

    /// Every job record of `kind` in `collection`.
    pub async fn list(&self, kind: &str, collection: &str) -> Result<Vec<Record>> {
        let kv = self.bucket().await?;
        let prefix = status_key(kind, collection, "");
        let mut keys = kv.keys().await.map_err(nats)?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(nats)?;
            // Ids hold no dot: `...ID.cancel` keys are skipped.
            match k.strip_prefix(&prefix) {
                Some(id) if !id.contains('.') => out.extend(read_record(&kv, &k).await?),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Asks the node running a job to stop it (it looks with its progress).
    pub async fn request_cancel(&self, kind: &str, collection: &str, id: &str) -> Result<()> {
        let kv = self.bucket().await?;
        let key = format!("{}.cancel", status_key(kind, collection, id));
        kv.put(key, Bytes::from_static(b"1")).await.map_err(nats)?;
        Ok(())
    }

    /// Removes every job record of `collection` (every kind, cancel requests too),
    /// when the collection is deleted. A job still queued is then dropped when it is
    /// delivered, and a running one stops at its next progress (its record is gone).
    pub async fn forget_collection(&self, collection: &str) -> Result<usize> {
        let kv = self.bucket().await?;
        let mut keys = kv.keys().await.map_err(nats)?;
        let mut doomed = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(nats)?;
            // `KIND.COLLECTION.ID[.cancel]`: collection names hold no dot.
            if k.split('.').nth(1) == Some(collection) {
                doomed.push(k);
            }
        }
        for k in &doomed {
            kv.purge(k).await.map_err(nats)?;
        }
        Ok(doomed.len())
    }

    /// Pulls and runs queued jobs, one at a time, for as long as the node runs.
    pub async fn work(self, runner: Arc<dyn JobRunner>) {
        loop {
            if let Err(e) = self.work_once(&runner).await {
                tracing::warn!(error = %e, "pulling from the job queue stopped; resuming");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn work_once(&self, runner: &Arc<dyn JobRunner>) -> Result<()> {
        let stream = self.stream().await?;
        let consumer = stream
            .get_or_create_consumer(
                WORKERS,
                pull::Config {
                    durable_name: Some(WORKERS.to_string()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_deliver: MAX_DELIVER,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats)?;
        let kv = self.bucket().await?;
        loop {
            // One message at a time: the next is pulled once this job is over.
            let mut batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .map_err(nats)?;
            while let Some(message) = batch.next().await {
                let message = message.map_err(nats)?;
                self.run_one(runner, &kv, message).await;
            }
        }
    }

    /// Runs one delivered job to its end, keeping its message and status alive.
    async fn run_one(
        &self,
        runner: &Arc<dyn JobRunner>,
        kv: &kv::Store,
        message: async_nats::jetstream::Message,
    ) {
        let delivery = message.info().map_or(1, |i| i.delivered);
        let job: QueuedJob = match serde_json::from_slice(&message.payload) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "an unreadable queued job; dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        let me = self.node_id;
        tracing::info!(kind = %job.kind, collection = %job.collection, id = %job.id, node = me, delivery, "running a queued job");
        let key = job.key();
        // The record is written before the job is queued: gone means the job's
        // collection was deleted (its records went with it), so the job is dropped.
        let (mut record, mut revision) = match read_entry(kv, &key).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                tracing::info!(id = %job.id, collection = %job.collection, "a queued job of a deleted collection: dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, id = %job.id, "cannot read the job's record; it will be delivered again");
                let _ = message
                    .ack_with(AckKind::Nak(Some(self.progress_every)))
                    .await;
                return;
            }
        };
        record.runs.push(Run {
            node: me,
            delivery,
            started_ms: now_ms(),
        });
        // The runner blocks (it reads the store, loads models): off the runtime.
        let call = |f: fn(&dyn JobRunner, &QueuedJob) -> Option<Value>| {
            let (runner, job) = (runner.clone(), job.clone());
            async move {
                tokio::task::spawn_blocking(move || f(runner.as_ref(), &job))
                    .await
                    .ok()
                    .flatten()
            }
        };
        let refused = call(|r, j| r.start(j).err().map(Value::from)).await;
        if let Some(e) = &refused {
            fail(
                &mut record.status,
                e.as_str().unwrap_or("the job did not start"),
            );
        }
        loop {
            if refused.is_none() {
                match call(|r, j| r.status(j)).await {
                    Some(status) => record.status = status,
                    // Started here, so its record was stored: gone means its
                    // collection went away meanwhile.
                    None => fail(
                        &mut record.status,
                        "the job's record is gone (its collection was deleted?)",
                    ),
                }
            }
            record.updated_ms = now_ms();
            match update_record(kv, &key, &record, revision).await {
                Ok(Some(r)) => revision = r,
                Ok(None) => {
                    // The record was removed under the job: its collection was
                    // deleted. The job stops here and writes nothing more.
                    tracing::info!(id = %job.id, collection = %job.collection, "the job's record was removed (its collection deleted): stopping it");
                    call(|r, j| {
                        r.cancel(j);
                        None
                    })
                    .await;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, id = %job.id, "cannot store the job's status")
                }
            }
            if !is_running(&record.status) {
                break;
            }
            if let Err(e) = message.ack_with(AckKind::Progress).await {
                tracing::warn!(error = %e, id = %job.id, "cannot extend the job's message");
            }
            if let Ok(Some(_)) = kv.get(format!("{key}.cancel")).await {
                call(|r, j| {
                    r.cancel(j);
                    None
                })
                .await;
            }
            tokio::time::sleep(self.progress_every).await;
        }
        let _ = kv.delete(format!("{key}.cancel")).await;
        if let Err(e) = message.double_ack().await {
            tracing::warn!(error = %e, id = %job.id, "the finished job's acknowledgment was not confirmed; it may run again");
        }
    }
}

async fn put_record(kv: &kv::Store, key: &str, record: &Record) -> Result<()> {
    let bytes = serde_json::to_vec(record).expect("records serialise");
    kv.put(key, bytes.into()).await.map_err(nats)?;
    Ok(())
}

async fn read_record(kv: &kv::Store, key: &str) -> Result<Option<Record>> {
    Ok(read_entry(kv, key).await?.map(|(record, _)| record))
}

/// A record and its revision; None when the key is absent, deleted or purged.
async fn read_entry(kv: &kv::Store, key: &str) -> Result<Option<(Record, u64)>> {
    let Some(entry) = kv.entry(key).await.map_err(nats)? else {
        return Ok(None);
    };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    let record = serde_json::from_slice(&entry.value)
        .map_err(|e| Error::Nats(format!("job record {key} is unreadable: {e}")))?;
    Ok(Some((record, entry.revision)))
}

/// Writes a running job's record over revision `revision` (its own last write);
/// returns the new revision, or None when the record was removed meanwhile (its
/// collection deleted: [`Queue::forget_collection`]), so a job never brings back
/// the record of a deleted collection. Another writer in between (a node thought
/// dead that came back) is overwritten, as a plain put would.
async fn update_record(
    kv: &kv::Store,
    key: &str,
    record: &Record,
    revision: u64,
) -> Result<Option<u64>> {
    let bytes = serde_json::to_vec(record).expect("records serialise");
    if let Ok(r) = kv.update(key, bytes.clone().into(), revision).await {
        return Ok(Some(r));
    }
    match kv.entry(key).await.map_err(nats)? {
        Some(e) if e.operation == kv::Operation::Put => kv
            .update(key, bytes.into(), e.revision)
            .await
            .map(Some)
            .map_err(nats),
        _ => Ok(None),
    }
}

/// Marks a status failed with `error`.
fn fail(status: &mut Value, error: &str) {
    if let Some(obj) = status.as_object_mut() {
        obj.insert("state".into(), "failed".into());
        obj.insert("error".into(), error.into());
    }
}

/// The queue from a server's blocking threads (the engine's calls).
impl Node {
    pub fn queue(&self) -> Queue {
        Queue::new(self.js.clone(), self.config.replicas(), self.config.node_id)
    }

    /// Starts pulling queued jobs for `runner` on this node.
    pub fn serve_jobs(&self, runner: Arc<dyn JobRunner>) {
        self.handle().spawn(self.queue().work(runner));
    }

    /// Queues `job` (see [`Queue::enqueue`]); from a blocking thread.
    pub fn queue_job(&self, job: &QueuedJob, status: Value) -> Result<()> {
        self.handle().block_on(self.queue().enqueue(job, status))
    }

    /// Every job of `kind` in `collection` as the API shows it ([`Record::view`]);
    /// from a blocking thread.
    pub fn jobs(&self, kind: &str, collection: &str) -> Result<Vec<Value>> {
        let records = self
            .handle()
            .block_on(self.queue().list(kind, collection))?;
        let now = now_ms();
        Ok(records.iter().map(|r| r.view(now)).collect())
    }

    /// Removes `collection`'s job records ([`Queue::forget_collection`]); from a
    /// blocking thread.
    pub fn forget_jobs(&self, collection: &str) -> Result<usize> {
        self.handle()
            .block_on(self.queue().forget_collection(collection))
    }

    /// Asks the node running the job to stop it; from a blocking thread.
    pub fn cancel_job(&self, kind: &str, collection: &str, id: &str) -> Result<()> {
        self.handle()
            .block_on(self.queue().request_cancel(kind, collection, id))
    }
}

#[cfg(test)]
#[path = "work_queue_tests.rs"]
pub(crate) mod tests;
