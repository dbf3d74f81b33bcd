//! Engram's store: RocksDB for durability, an HNSW graph per collection for
//! search, server-side embedding, and the REST server and CLI around them.
//!
//! Read `engine` first: it is the whole set of operations, with no HTTP in it.

pub mod adapters;
pub mod answer;
pub mod api_types;
pub mod cli;
pub mod collection;
pub mod config;
mod contextualize;
pub mod engine;
pub mod error;
pub mod eval;
pub mod filter;
pub mod fusion;
mod hnsw;
pub mod hot;
pub mod index;
pub mod keyword;
pub mod limits;
pub mod server;
pub mod storage;
mod validate;

pub use engine::Engine;
pub use error::{Error, Result};
