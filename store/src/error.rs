//! The store's error type. Every failure a user can cause is a variant with a
//! message that says what to do in words any interface can use (the REST API, the
//! CLI, a library caller): no message names an HTTP route or a command. The
//! application maps variants to HTTP statuses in one match (`engram-db`'s
//! `server::error`).

use std::fmt;

/// Which limit a request went over: kept as data so the message can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    BatchSize,
    TextBytes,
    TopK,
    Ef,
    IdBytes,
    MetadataBytes,
    Dimension,
    /// Cluster mode: one message of the replicated log (a shard's part of a write).
    LogMessageBytes,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LimitKind::BatchSize => "documents per request",
            LimitKind::TextBytes => "bytes of text per document",
            LimitKind::TopK => "k (results per query)",
            LimitKind::Ef => "ef (search breadth)",
            LimitKind::IdBytes => "bytes per document id",
            LimitKind::MetadataBytes => "bytes of metadata per document",
            LimitKind::Dimension => "vector dimensions",
            LimitKind::LogMessageBytes => {
                "bytes in one message of the cluster's log, the servers' max_payload (a write's part for one shard is one message: send fewer or smaller documents per request)"
            }
        };
        f.write_str(s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("collection '{0}' does not exist; create it first, then add documents")]
    CollectionNotFound(String),
    #[error("collection '{0}' already exists with a different configuration; delete it first or use another name")]
    CollectionExists(String),
    #[error("document '{id}' does not exist in collection '{collection}'")]
    DocumentNotFound { collection: String, id: String },
    #[error("invalid collection name '{0}': use 1-64 characters from A-Z a-z 0-9 _ -")]
    InvalidCollectionName(String),
    #[error("vector has {got} dimensions but collection '{collection}' expects {expected}")]
    WrongDimension {
        collection: String,
        expected: usize,
        got: usize,
    },
    #[error("{what}: {message}")]
    InvalidInput { what: String, message: String },
    /// A well-formed request the collection's kind or state refuses (text sent to
    /// a collection of vectors, a context build on a collection that is not
    /// contextual): no schema can say so, the same request suits another collection.
    #[error("{what}: {message}")]
    Conflict { what: String, message: String },
    #[error("too many {kind}: {got} given, the limit is {limit}")]
    LimitExceeded {
        kind: LimitKind,
        got: usize,
        limit: usize,
    },
    #[error("{0}")]
    InvalidFilter(String),
    #[error("{0}")]
    Cancelled(String),
    #[error("the embedder failed: {0}")]
    Embedder(#[from] engram_embedder::Error),
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("corrupt record in storage: {0}")]
    Corrupt(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Cluster mode: the replicated log did not answer, or this node has not yet
    /// applied what a request waits for (`min_seq`).
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    /// Shorthand for the most common user error: one field of a request is wrong.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            message: message.into(),
        }
    }

    /// A request the collection's kind or state refuses (see `Error::Conflict`).
    pub fn conflict(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Conflict {
            what: what.into(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
