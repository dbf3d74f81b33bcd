//! The search's options and their bounds (`search.rs` runs them).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchOptions {
    /// Rounds of correction (0: the ordered probe hypothesis alone).
    pub steps: usize,
    /// Hypotheses kept between rounds.
    pub beam: usize,
    /// Candidate texts embedded per round, over the whole beam (one encoder call).
    pub candidates: usize,
    /// Rounds without improvement before the search jumps to a perturbed copy of its
    /// best text (or stops, once its jumps are spent).
    pub patience: usize,
    pub seed: u64,
    /// Weight of the bigram prior: candidates rank by `cosine + fluency x mean
    /// log-probability per word` (0: cosine alone; see `fluency.rs`).
    #[serde(default = "default_fluency")]
    pub fluency: f32,
    /// Weight of the language model's mean log-probability per token, added to the
    /// score of the `lm_candidates` best candidates of every step (0: no language
    /// model; see `lm_prior.rs`). Needs a prior given with
    /// [`crate::CosineSearch::with_language_prior`].
    #[serde(default)]
    pub lm_weight: f32,
    /// Candidates per step the language model re-ranks (the best by cosine and bigram
    /// prior); the rest drop out of that step.
    #[serde(default = "default_lm_candidates")]
    pub lm_candidates: usize,
    /// Width of the slot beam over the structured words of each step's best
    /// hypothesis (its e-mail address and a digit string; see
    /// `slot_beam.rs`, `structured.rs`); 0: off, the words grow one greedy edit per
    /// step only. Needs the lexicon.
    #[serde(default)]
    pub slot_width: usize,
    /// Sentences the slot beam scores per step at most (on top of `candidates`).
    #[serde(default = "default_slot_budget")]
    pub slot_budget: usize,
}

fn default_slot_budget() -> usize {
    96
}

fn default_lm_candidates() -> usize {
    8
}

fn default_fluency() -> f32 {
    0.03
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            steps: 20,
            beam: 2,
            candidates: 128,
            patience: 4,
            seed: 4,
            fluency: default_fluency(),
            lm_weight: 0.0,
            lm_candidates: default_lm_candidates(),
            slot_width: 0,
            slot_budget: default_slot_budget(),
        }
    }
}

/// Upper bounds a caller may ask for (keeps a request from running for hours).
pub const MAX_STEPS: usize = 200;
pub const MAX_BEAM: usize = 16;
pub const MAX_SLOT_WIDTH: usize = 16;
pub const MAX_SLOT_BUDGET: usize = 512;

impl SearchOptions {
    pub fn validate(&self) -> Result<()> {
        if self.steps > MAX_STEPS {
            return Err(Error::invalid(
                "steps",
                format!("{} is over the limit of {MAX_STEPS}", self.steps),
            ));
        }
        if self.beam == 0 || self.beam > MAX_BEAM {
            return Err(Error::invalid(
                "beam",
                format!("{} is out of range; use 1 to {MAX_BEAM}", self.beam),
            ));
        }
        if !(0.0..=1.0).contains(&self.fluency) {
            return Err(Error::invalid("fluency", "use a weight from 0 to 1"));
        }
        if !(0.0..=1.0).contains(&self.lm_weight) {
            return Err(Error::invalid("lm_weight", "use a weight from 0 to 1"));
        }
        if !(1..=self.candidates).contains(&self.lm_candidates) {
            return Err(Error::invalid(
                "lm_candidates",
                "use 1 to the number of candidates per step",
            ));
        }
        if self.slot_width > MAX_SLOT_WIDTH {
            return Err(Error::invalid(
                "slot_width",
                format!("use 0 (off) to {MAX_SLOT_WIDTH}"),
            ));
        }
        if !(1..=MAX_SLOT_BUDGET).contains(&self.slot_budget) {
            return Err(Error::invalid(
                "slot_budget",
                format!("use 1 to {MAX_SLOT_BUDGET} sentences per step"),
            ));
        }
        if !(8..=1024).contains(&self.candidates) {
            return Err(Error::invalid(
                "candidates",
                "use 8 to 1024 candidates per step",
            ));
        }
        Ok(())
    }
}
