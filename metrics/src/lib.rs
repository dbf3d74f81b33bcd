//! The measures Engram reports, in one place so that a figure means the same thing
//! wherever it is printed: the database's retrieval and answer evaluations, the
//! trainer's gate, and the inverter's leakage audit all score with these functions.
//!
//! - [`token_f1`]: the multiset word F1 over word lists, the one core behind every
//!   token F1 the project reports (answers and reconstructions normalise words
//!   differently; that module says why).
//! - [`qa`]: answer scoring as reading-comprehension benchmarks do it (SQuAD's
//!   normalisation): exact match, best token F1 over the gold answers, contains.
//! - [`facts`]: the facts a rag answer took from its passages, and the share of them
//!   a closed-book answer repeats (the weights gate's comparison with rag).
//! - [`ranking`]: nDCG@k, recall@k and reciprocal rank with binary relevance.
//! - [`chart`]: self-contained SVG line charts for benchmark results and loss curves.
//!
//! No dependencies: the crates that measure link it without pulling anything else in.

pub mod chart;
pub mod facts;
pub mod qa;
pub mod ranking;
pub mod token_f1;
