//! The one error type of the store. Every failure a user can cause is a variant
//! with a message that says what to do; the HTTP layer maps variants to status
//! codes in a single match (`server::error`), and the CLI prints the message.

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
        };
        f.write_str(s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("collection '{0}' does not exist; create it with PUT /collections/{0}")]
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
    #[error("too many {kind}: {got} given, the limit is {limit}")]
    LimitExceeded {
        kind: LimitKind,
        got: usize,
        limit: usize,
    },
    #[error("{0}")]
    InvalidFilter(String),
    #[error("collection '{collection}' does not fit the model's window: its {documents} documents make a prompt of {tokens} tokens and the window is {window} tokens (with room kept for the answer); use mode 'rag' to send only the top passages, or promote the collection to an adapter (`engram promote {collection}`) and use mode 'weights'")]
    ContextTooLong {
        collection: String,
        documents: usize,
        tokens: usize,
        window: usize,
    },
    #[error("collection '{0}' has no active adapter, so mode 'weights' cannot answer; use mode 'rag' (or 'auto', which falls back to it), or train one with `engram promote {0}`")]
    NoAdapter(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the language model failed: {0}")]
    Generator(#[from] engram_generator::Error),
    #[error("the embedder failed: {0}")]
    Embedder(#[from] engram_embedder::Error),
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("corrupt record in storage: {0}")]
    Corrupt(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Inverter(#[from] engram_inverter::Error),
    #[error("{0}")]
    Trainer(#[from] engram_trainer::Error),
    #[error("promotion '{id}' of collection '{collection}' does not exist; list them with GET /collections/{collection}/promotions")]
    PromotionNotFound { collection: String, id: String },
    #[error("collection '{0}' is being promoted already; follow GET /collections/{0}/promotions or wait for it to finish")]
    PromotionRunning(String),
    #[error("audit '{id}' of collection '{collection}' does not exist; list them with GET /collections/{collection}/audits")]
    AuditNotFound { collection: String, id: String },
    #[error("audit '{0}' has no report: it is {1}; follow GET .../audits/{0}/status")]
    AuditNotReady(String, String),
}

impl Error {
    /// Shorthand for the most common user error: one field of a request is wrong.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
