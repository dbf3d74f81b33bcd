//! Engram, the application: the service layer around the store (`engine`: answers,
//! adapters, audits, promotions), the REST server, the `engram` CLI and the
//! evaluation harness. The store itself, with no transport and no language model,
//! is the `engram-store` crate.
//!
//! Read `engine` first: it is what the server and the CLI call.

pub mod answer;
pub mod api_types;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod eval;
pub mod server;

pub use engine::Engine;
pub use engram_store::{limits, Store};
pub use error::{Error, Result};
