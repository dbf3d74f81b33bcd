//! What a node answers another node's request with (a shard's query, a forwarded
//! write): the result, or the store's error by kind, so that the asking node answers
//! its client with the status the serving node would have given.

use serde::{Deserialize, Serialize};

use crate::{nats, Error, Result};

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
