//! The application's error type: the store's errors, and what answering, adapters,
//! audits and promotions add. Messages say what to do without naming a transport;
//! the HTTP layer maps variants to status codes in one match (`server::error`), and
//! the CLI prints the message.

pub use engram_store::LimitKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] engram_store::Error),
    #[error("collection '{collection}' does not fit the model's window: its {documents} documents make a prompt of {tokens} tokens and the window is {window} tokens (with room kept for the answer); use mode 'rag' to send only the top passages, or promote the collection to an adapter and use mode 'weights'")]
    ContextTooLong {
        collection: String,
        documents: usize,
        tokens: usize,
        window: usize,
    },
    #[error("collection '{0}' has no active adapter, so mode 'weights' cannot answer; use mode 'rag' (or 'auto', which falls back to it), or promote the collection to train one")]
    NoAdapter(String),
    #[error("{0}")]
    NotFound(String),
    /// Too much of one kind of work is running already; try again later.
    #[error("{0}")]
    Busy(String),
    /// An admitted generation reached its deadline before its first token.
    #[error("the answer did not start within the server's {deadline_s} s deadline (its prompt is {prompt_tokens} tokens, and it may have waited for a free slot); retry later, send a shorter prompt, or raise [generation] deadline_s")]
    DeadlineExceeded {
        deadline_s: f64,
        prompt_tokens: usize,
    },
    #[error("the language model failed: {0}")]
    Generator(engram_generator::Error),
    /// The adapter registry has no such version, refuses, or finds a file unreadable
    /// (the generator's registry errors, kept apart so they do not read as a model
    /// failure).
    #[error("{0}")]
    Adapter(engram_generator::RegistryError),
    #[error("{0}")]
    Inverter(#[from] engram_inverter::Error),
    #[error("{0}")]
    Trainer(#[from] engram_trainer::Error),
    #[error("promotion '{id}' of collection '{collection}' does not exist; list the collection's promotions to find its id")]
    PromotionNotFound { collection: String, id: String },
    #[error("collection '{0}' is being promoted already; follow that promotion's status or wait for it to finish")]
    PromotionRunning(String),
    #[error("audit '{id}' of collection '{collection}' does not exist; list the collection's audits to find its id")]
    AuditNotFound { collection: String, id: String },
    #[error("audit '{0}' has no report: it is {1}; follow its status until it is done")]
    AuditNotReady(String, String),
}

impl Error {
    /// Shorthand for the most common user error: one field of a request is wrong.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Store(engram_store::Error::invalid(what, message))
    }

    /// A corrupt record of the application's own (job records, statuses).
    pub fn corrupt(message: impl Into<String>) -> Self {
        Error::Store(engram_store::Error::Corrupt(message.into()))
    }
}

impl From<engram_generator::Error> for Error {
    fn from(e: engram_generator::Error) -> Self {
        match e {
            engram_generator::Error::Registry(r) => Error::Adapter(r),
            other => Error::Generator(other),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Store(engram_store::Error::Io(e))
    }
}

impl From<engram_embedder::Error> for Error {
    fn from(e: engram_embedder::Error) -> Self {
        Error::Store(engram_store::Error::Embedder(e))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
