//! Requests between nodes about one shard (a shard's query, a forwarded write):
//! asking one replica of the shard ([`ask_replica`]), answering them on the replica
//! ([`answer_each`]), and the answer on the wire: the result, or the store's error by
//! kind, so that the asking node answers its client with the status the serving
//! node would have given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{RequestErrorKind, Subscriber};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{nats, Error, Node, Result};

/// How long a shard with no replica listening is asked again (a collection just
/// created is placed within `scatter::REPLAN_EVERY`); nobody received the request,
/// so asking again is safe.
pub(crate) const NO_REPLICA_WAIT: Duration = Duration::from_secs(3);

/// This node's requests of one kind since it started (`GET /cluster`, `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardRequests {
    /// Sent to a replica of a shard this node does not serve, and answered.
    pub sent: u64,
    /// Other nodes' requests answered here.
    pub taken: u64,
}

/// The running counts behind [`ShardRequests`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) taken: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) -> ShardRequests {
        ShardRequests {
            sent: self.sent.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
        }
    }
}

/// One request about shard `shard` of `collection`, in the words its errors use.
pub(crate) struct ShardRequest<'a> {
    pub collection: &'a str,
    pub shard: u32,
    /// Names the request in a 400's message ("query", "documents").
    pub what: &'a str,
    /// The longest the answer may take, retries included.
    pub wait: Duration,
    /// Said after "did not answer within N s" (what the client may do then).
    pub on_timeout: &'a str,
}

/// Sends `payload` to one replica listening on `subject` (the shard's queue group)
/// and reads its [`Reply`].
pub(crate) async fn ask_replica<T: for<'de> Deserialize<'de>>(
    node: &Node,
    subject: String,
    payload: bytes::Bytes,
    r: &ShardRequest<'_>,
) -> Result<T> {
    let (collection, shard) = (r.collection, r.shard);
    let started = Instant::now();
    loop {
        let left = r.wait.saturating_sub(started.elapsed());
        let request = async_nats::client::Request::new()
            .payload(payload.clone())
            .timeout(Some(left));
        match node.client.send_request(subject.clone(), request).await {
            Ok(msg) => return Reply::decode(&msg.payload, collection, shard, r.what),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                if started.elapsed() >= NO_REPLICA_WAIT {
                    return Err(Error::Unavailable(format!(
                        "shard {shard} of collection '{collection}' has no live replica answering (none for {:.1} s); retry, and see GET /cluster",
                        started.elapsed().as_secs_f64()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) if e.kind() == RequestErrorKind::TimedOut => {
                return Err(Error::Timeout(format!(
                    "shard {shard} of collection '{collection}' did not answer within {} s{}",
                    r.wait.as_secs(),
                    r.on_timeout
                )))
            }
            Err(e) => return Err(nats(e)),
        }
    }
}

/// Answers each request on `sub`, in its own task: `handle` runs on a blocking
/// thread (the store's blocking pool bounds the work) with the request's payload,
/// and its result goes back as a [`Reply`].
pub(crate) async fn answer_each<T, F>(node: Arc<Node>, mut sub: Subscriber, handle: F)
where
    T: Serialize + Send + 'static,
    F: Fn(&Node, &[u8]) -> engram_store::Result<T> + Clone + Send + Sync + 'static,
{
    while let Some(msg) = sub.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let (node, handle) = (node.clone(), handle.clone());
        tokio::spawn(async move {
            let me = node.config.node_id;
            let worker = node.clone();
            let answer = tokio::task::spawn_blocking(move || handle(&worker, &msg.payload))
                .await
                .unwrap_or_else(|e| Err(engram_store::Error::Unavailable(format!("worker: {e}"))));
            if let Err(e) = node
                .client
                .publish(reply_to, Reply::encode(me, answer))
                .await
            {
                tracing::warn!(error = %e, "an answer to another node was not sent");
            }
        });
    }
}

/// An answer on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply<T> {
    Done(T),
    /// The serving node's error: its kind and message.
    Failed {
        node: u32,
        kind: FailKind,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum FailKind {
    NotFound,
    DocumentNotFound { id: String },
    Invalid,
    Conflict,
    Unavailable,
}

impl FailKind {
    fn of(e: &engram_store::Error) -> Self {
        use engram_store::Error as E;
        match e {
            E::CollectionNotFound(_) => FailKind::NotFound,
            E::DocumentNotFound { id, .. } => FailKind::DocumentNotFound { id: id.clone() },
            E::InvalidInput { .. }
            | E::LimitExceeded { .. }
            | E::InvalidFilter(_)
            | E::WrongDimension { .. } => FailKind::Invalid,
            E::Conflict { .. } => FailKind::Conflict,
            _ => FailKind::Unavailable,
        }
    }
}

impl<T: Serialize> Reply<T> {
    /// Node `node`'s answer of `result`, as bytes.
    pub(crate) fn encode(node: u32, result: engram_store::Result<T>) -> bytes::Bytes {
        let reply = match result {
            Ok(t) => Reply::Done(t),
            Err(e) => Reply::Failed {
                node,
                kind: FailKind::of(&e),
                message: e.to_string(),
            },
        };
        serde_json::to_vec(&reply).expect("serialises").into()
    }
}

impl<T: for<'de> Deserialize<'de>> Reply<T> {
    /// The answer in `bytes` to a request about shard `shard` of `collection` (`what`
    /// names the request in a 400's message).
    pub(crate) fn decode(bytes: &[u8], collection: &str, shard: u32, what: &str) -> Result<T> {
        let reply: Reply<T> = serde_json::from_slice(bytes).map_err(nats)?;
        let (node, kind, message) = match reply {
            Reply::Done(t) => return Ok(t),
            Reply::Failed {
                node,
                kind,
                message,
            } => (node, kind, message),
        };
        use engram_store::Error as E;
        Err(match kind {
            FailKind::NotFound => E::CollectionNotFound(collection.to_string()).into(),
            FailKind::DocumentNotFound { id } => E::DocumentNotFound {
                collection: collection.to_string(),
                id,
            }
            .into(),
            FailKind::Invalid => E::invalid(what, message).into(),
            FailKind::Conflict => E::conflict(what, message).into(),
            FailKind::Unavailable => Error::Unavailable(format!(
                "shard {shard} of collection '{collection}' (node {node}): {message}"
            )),
        })
    }
}

/// A cluster error as the store reports it to its callers (which map store errors
/// to HTTP statuses): the store's own errors as they are, the rest unavailable.
pub(crate) fn to_store_error(e: Error) -> engram_store::Error {
    match e {
        Error::Store(e) => e,
        other => engram_store::Error::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_nodes_error_keeps_its_kind() {
        use engram_store::Error as E;
        let back = |e: E| Reply::<u64>::decode(&Reply::<u64>::encode(3, Err(e)), "c", 1, "write");
        assert!(matches!(
            back(E::CollectionNotFound("c".into())),
            Err(Error::Store(E::CollectionNotFound(_)))
        ));
        assert!(matches!(
            back(E::DocumentNotFound { collection: "c".into(), id: "x".into() }),
            Err(Error::Store(E::DocumentNotFound { id, .. })) if id == "x"
        ));
        assert!(matches!(
            back(E::invalid("documents", "bad")),
            Err(Error::Store(E::InvalidInput { .. }))
        ));
        assert!(matches!(
            back(E::Unavailable("log down".into())),
            Err(Error::Unavailable(m)) if m.contains("node 3") && m.contains("log down")
        ));
        assert_eq!(
            Reply::<u64>::decode(&Reply::encode(3, Ok(42u64)), "c", 1, "write").unwrap(),
            42
        );
    }
}
