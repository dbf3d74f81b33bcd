//! End-to-end tests: the real `engram` binary, real HTTP, real RocksDB, and the
//! real MiniLM model where text is involved.

mod answer;
mod api;
mod audit;
mod bad_input;
mod contextual;
mod crash;
mod hot;
mod jobs;
mod promote;
mod retrieval;
mod security;
mod support;
