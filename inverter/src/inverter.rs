//! The contract of an embedding inverter. Read this file first.
//!
//! An attacker holds a vector and can query the encoder that made it as a black box
//! (the model is public). An [`Inverter`] turns the vector back into text the way
//! vec2text does: guess, re-embed, compare, correct. The audit only sees this trait,
//! so a stronger attack (a trained corrector, a language-model prior) plugs in here.

use engram_embedder::TextEncoder;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One hypothesis on the way to the reconstruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// 0 is the initial guess; each later step is one round of re-embedding.
    pub step: usize,
    pub text: String,
    /// Cosine between the hypothesis' embedding and the target.
    pub cosine: f32,
    /// Seconds since the inversion started when this hypothesis was the best.
    pub seconds: f64,
}

/// What an inversion returns: the best text found and how the search got there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inversion {
    pub text: String,
    pub cosine: f32,
    /// The best hypothesis after every step (step 0 first).
    pub trajectory: Vec<Hypothesis>,
    /// Texts the encoder embedded during the search (the attack's cost).
    pub encoder_calls: usize,
}

/// Recovers text from a vector with black-box access to the encoder that made it.
pub trait Inverter: Send + Sync {
    /// `target` must have `encoder.dim()` values; it need not be normalised.
    fn invert(&self, target: &[f32], encoder: &dyn TextEncoder) -> Result<Inversion>;
}
