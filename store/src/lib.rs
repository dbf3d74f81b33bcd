//! Engram's store: collections of documents over RocksDB, an HNSW graph and a BM25
//! index per collection, server-side embedding, hybrid queries, corpus contexts
//! and backups. No transport, no language model, no trainer: the application
//! (`engram-db`) puts HTTP, the CLI, answering, adapters and jobs around it.
//!
//! Read `store` first: it is the whole set of operations.

pub mod api;
pub mod clock;
pub mod collection;
pub mod compaction;
pub mod context_build;
pub mod error;
pub mod filter;
pub mod flush;
pub mod fusion;
pub mod graph_dump;
pub mod hot;
pub mod index;
pub mod jobs;
pub mod keyword;
pub mod limits;
pub mod log;
pub mod questions;
pub mod replica;
pub mod shard_scope;
pub mod storage;
pub mod store;
pub mod validate;

pub use context_build::{ContextBuild, ContextQueue, ContextRequest};
pub use error::{Error, LimitKind, Result};
pub use store::{
    hybrid_depth, EncoderLoader, FetchedHits, Gathered, HitFetch, ShardChunk, ShardCounts,
    ShardDocument, ShardExport, ShardPage, ShardQuery, ShardRanking, ShardScan, Store,
    DEFAULT_EMBEDDER,
};
