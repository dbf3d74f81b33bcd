//! Request limits, so no single request can exhaust memory or CPU. Every limit
//! is a field here, configurable, and named in the error a request gets.

use serde::{Deserialize, Serialize};

use crate::error::{Error, LimitKind, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Limits {
    /// Largest HTTP request body, in bytes.
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub max_text_bytes: usize,
    pub max_k: usize,
    pub max_ef: usize,
    pub max_id_bytes: usize,
    pub max_metadata_bytes: usize,
    pub max_dimension: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 * 1024 * 1024,
            max_batch: 1000,
            max_text_bytes: 1024 * 1024,
            max_k: 1000,
            max_ef: 10_000,
            max_id_bytes: 512,
            max_metadata_bytes: 64 * 1024,
            max_dimension: 4096,
        }
    }
}

/// Fails with `LimitExceeded` when `got` is over `limit`.
pub fn check(kind: LimitKind, got: usize, limit: usize) -> Result<()> {
    if got > limit {
        Err(Error::LimitExceeded { kind, got, limit })
    } else {
        Ok(())
    }
}
