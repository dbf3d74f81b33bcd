//! The write log on JetStream: a store batch published on its subject (a collection's
//! `engram.c.NAME`, or one of its shards' `engram.c.NAME.SHARD`), with the
//! collection's incarnation in header [`INCARNATION`], a message id (a publish retried after a lost answer is stored once) and the
//! subject's expected last sequence (see `engram_store::replica`). Answers once a
//! quorum of the stream's servers has it. After a snapshot trimmed the stream
//! (`crate::snapshot`), a subject whose last message was purged expects none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use bytes::Bytes;
use engram_store::log::Batch;
use engram_store::replica::{Published, Replicator, Subject};

use crate::{STREAM, SUBJECT_PREFIX};

/// The header that carries the collection's incarnation.
pub const INCARNATION: &str = "Engram-Incarnation";

/// The incarnation a log message's headers name (0: none, a message from before
/// incarnations were written).
pub(crate) fn incarnation_of(headers: Option<&async_nats::HeaderMap>) -> u64 {
    headers
        .and_then(|h| h.get(INCARNATION))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0)
}

/// Tries of one publish (a leader election answers "no responders" or times out).
const TRIES: u32 = 8;
/// How long one try waits for the stream's acknowledgment.
const ACK_WAIT: Duration = Duration::from_secs(4);

/// JetStream as the store's replicated log.
pub struct JetStreamLog {
    js: Context,
    runtime: tokio::runtime::Handle,
    node_id: u32,
    /// Makes message ids unique within this process; the start time across restarts.
    counter: AtomicU64,
    started: u128,
}

impl JetStreamLog {
    pub fn new(js: Context, runtime: tokio::runtime::Handle, node_id: u32) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        JetStreamLog {
            js,
            runtime,
            node_id,
            counter: AtomicU64::new(0),
            started,
        }
    }

    /// The last sequence on `subject`, so that a writer that lost a race waits for
    /// everything before it at once rather than for one message at a time.
    async fn last_on(&self, subject: &str) -> Option<u64> {
        let stream = self.js.get_stream(STREAM).await.ok()?;
        let last = stream.get_last_raw_message_by_subject(subject).await.ok()?;
        Some(last.sequence)
    }

    /// Whether `subject`'s last message, `expected`, was trimmed away with the rest
    /// of the stream below a snapshot: the subject then has no message, and the
    /// stream begins after `expected` (a newer message would still be there).
    async fn trimmed_past(&self, subject: &str, expected: u64) -> bool {
        let Ok(mut stream) = self.js.get_stream(STREAM).await else {
            return false;
        };
        let first = match stream.info().await {
            Ok(info) => info.state.first_sequence,
            Err(_) => return false,
        };
        expected > 0 && first > expected && self.last_on(subject).await.is_none()
    }

    async fn publish_async(
        &self,
        subject: String,
        id: String,
        incarnation: u64,
        mut expected: u64,
        payload: Bytes,
    ) -> engram_store::Result<Published> {
        let mut last = String::new();
        for attempt in 0..TRIES {
            let msg = PublishMessage::build()
                .payload(payload.clone())
                .message_id(&id)
                .header(INCARNATION, incarnation.to_string())
                .expected_last_subject_sequence(expected);
            let sent = async { self.js.send_publish(subject.clone(), msg).await?.await };
            match tokio::time::timeout(ACK_WAIT, sent).await {
                Ok(Ok(ack)) => return Ok(Published::Seq(ack.sequence)),
                Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    if self.trimmed_past(&subject, expected).await {
                        // JetStream compares with the subject's last stored message,
                        // none now: expect none (another writer's newer message wins).
                        expected = 0;
                        continue;
                    }
                    return Ok(Published::Conflict(self.last_on(&subject).await));
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no acknowledgment within {} s", ACK_WAIT.as_secs()),
            }
            tracing::warn!(attempt, error = %last, "publish to the write log failed; retrying");
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt + 1))).await;
        }
        Err(engram_store::Error::Unavailable(format!(
            "the replicated write log did not take the write after {TRIES} tries: {last}"
        )))
    }
}

impl Replicator for JetStreamLog {
    fn publish(
        &self,
        subject: Subject<'_>,
        incarnation: u64,
        expected: u64,
        batch: &Batch,
    ) -> engram_store::Result<Published> {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{}-{n}", self.node_id, self.started);
        let subject = format!("{SUBJECT_PREFIX}{}", subject.key());
        let payload = Bytes::from(batch.encode());
        crate::fits_in_one_message(&self.js.client(), payload.len())?;
        // Called from a blocking thread (the store is blocking by design).
        self.runtime
            .block_on(self.publish_async(subject, id, incarnation, expected, payload))
    }
}
