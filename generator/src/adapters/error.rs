//! What the adapter registry can refuse or fail to find, apart from the crate's general
//! errors (files, tensors, shapes).
//!
//! Why an enum of its own inside [`crate::Error`]: whoever serves adapters maps these
//! to distinct answers (no such version, an operation refused, a bad name), and matching
//! one nested enum keeps that mapping in one arm per case. Messages say what to do
//! without naming a transport or a command.

use std::path::PathBuf;

/// A registry error: wrapped in [`crate::Error::Registry`].
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry has no such version, or nothing earlier to roll back to (the HTTP
    /// layer maps this to 404).
    #[error("no adapter {what} for collection '{collection}': list the collection's adapter versions to see which exist and which is active")]
    NotFound {
        /// The collection.
        collection: String,
        /// What was looked for ("version 3", "earlier active version ...").
        what: String,
    },

    /// The registry refuses an operation, and says why and what to do instead (the HTTP
    /// layer maps this to 409).
    #[error("refused: {0}")]
    Refused(String),

    /// A collection name that cannot be a directory of the registry (the HTTP layer maps
    /// this to 400).
    #[error("collection name '{0}' cannot name adapters: use 1-128 letters, digits, '-', '_' or '.', not starting with '.'")]
    InvalidName(String),

    /// A stored file (PEFT config or weights, manifest, registry state) is unreadable.
    #[error("{} is not a valid {kind} ({reason}): restore it from a backup, or delete that adapter version and train it again", path.display())]
    Corrupt {
        /// What the file should be ("adapter_config.json", "registry state", ...).
        kind: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl RegistryError {
    /// A `Corrupt` error, as the crate's error.
    pub(crate) fn corrupt(
        kind: &'static str,
        path: impl Into<PathBuf>,
        reason: impl ToString,
    ) -> crate::Error {
        RegistryError::Corrupt {
            kind,
            path: path.into(),
            reason: reason.to_string(),
        }
        .into()
    }
}
