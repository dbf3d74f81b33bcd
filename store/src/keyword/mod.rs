//! Keyword search: a BM25 inverted index per collection, persisted in RocksDB
//! next to the documents, for the `keyword` and `hybrid` query modes.

mod bm25;
mod index;
mod term_stats;
mod tokenizer;

pub use bm25::Bm25;
pub use index::{DocTerms, KeywordIndex, KeywordUpdate};
pub use term_stats::{query_terms, TermStats};
pub use tokenizer::tokenize;
