//! End-to-end tests: the real `engram` binary, real HTTP, real RocksDB, and the
//! real MiniLM model where text is involved.

mod answer;
mod api;
mod api_fuzz;
mod audit;
mod bad_input;
mod cluster;
mod cluster_audit;
mod cluster_context;
mod cluster_jobs;
mod cluster_placement;
mod cluster_records;
mod cluster_restore;
mod cluster_snapshot;
mod contextual;
mod crash;
mod faults;
mod generation_limits;
mod hardening_store;
mod hot;
mod jobs;
mod prefix_peft;
mod prefix_promote;
mod promote;
mod questions;
mod restore;
mod retrieval;
mod security;
mod stale;
mod support;
