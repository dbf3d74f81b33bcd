//! # engram-inverter: what an attacker holding the vectors would read
//!
//! Embeddings are not anonymous: vec2text recovers most short inputs from their
//! vectors by a loop of guess, re-embed, compare, correct. This crate ships that
//! attack so an operator can measure it on their own collection, and the defences
//! that blunt it, with their cost in retrieval quality.
//!
//! - The contract (`inverter.rs`, read it first): [`Inverter`], [`Inversion`].
//! - [`probe`]: the hypothesiser, a ridge bag-of-words probe (faer, closed form);
//!   [`train_probe`]: the training workflow (texts, embeddings cache, fit).
//! - [`lexicon`]: WordPiece pieces and a name dictionary the search can also
//!   propose, with e-mail and number guesses built from them (`candidates.rs`);
//!   words spelled piece by piece (`spelling.rs`), pieces ranked with their head
//!   ([`piece_rank`]).
//! - [`fluency`]: the word-bigram prior the search adds to the cosine.
//! - [`lm_prior`]: SmolLM2 as a language prior that re-ranks the best candidates.
//! - [`search`]: [`CosineSearch`], probe hypothesis + batched beam-search correction
//!   (options in `search_options.rs`); a beam over the spellings of the structured
//!   words of the best hypothesis (`slot_beam.rs`, `structured.rs`), its e-mail
//!   fillings held to the shape of real addresses ([`address_prior`]).
//! - [`defence`]: Gaussian noise and keyed rotation of stored vectors.
//! - [`audit`]: sample, invert, scan for secrets, compare defences; JSON and HTML.
//! - [`metrics`], [`secrets`], [`corpus`], [`eval`]: scores, secret scanners,
//!   training/evaluation text, the `engram eval inversion` harness.
//! - [`pii`]: the PII benchmark (planted names, e-mails, numbers) and the attack's
//!   measured strength every report states.

pub mod address_prior;
pub mod audit;
mod candidates;
pub mod corpus;
pub mod defence;
mod error;
pub mod eval;
pub mod fluency;
mod inverter;
pub mod lexicon;
pub mod lm_prior;
pub mod metrics;
pub mod piece_rank;
pub mod pieces;
pub mod pii;
pub mod probe;
pub mod search;
mod search_options;
pub mod secrets;
pub mod slot_beam;
pub mod spelling;
pub mod structured;
pub mod text;
pub mod train_probe;
pub mod variants;

pub use audit::{AuditDoc, AuditInput, AuditOptions, AuditQuery, AuditReport};
pub use defence::Defence;
pub use error::{Error, Result};
pub use inverter::{Hypothesis, Inversion, Inverter};
pub use probe::{Probe, TrainOptions};
pub use search::{CosineSearch, SearchOptions};
