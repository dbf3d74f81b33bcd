//! The hypothesiser: a bag-of-words probe, ridge regression from an embedding to how
//! often each vocabulary word occurs in the text it came from.
//!
//! Why linear and closed-form: Song & Raghunathan (2020) show that word presence is
//! largely linearly decodable from sentence embeddings; a ridge probe trains in seconds
//! on CPU (one 385 x 385 Cholesky solve with faer for every word at once), is exactly
//! reproducible, and its linearity gives the search a corrector for free: the probe
//! applied to the residual `target - embed(hypothesis)` says which words are missing
//! (positive) and which are superfluous (negative). Counts rather than 0/1 presence
//! are regressed because token F1 is a multiset score ("the" three times).
//!
//! The probe is one type in three files: this one holds it and what the search asks
//! of it (scores, presence, the residual's delta, the predicted bag); `fit.rs` solves
//! it from embeddings (the ridge, the calibration, the thresholds chosen on
//! validation); `artifact.rs` writes and reads it (int8 safetensors and a JSON
//! manifest, and the copy compiled into the binary). Gathering and embedding the
//! training texts is the workflow's, `crate::train_probe`.

mod artifact;
mod fit;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::fluency::BigramPrior;

pub use artifact::default_dir;
pub use fit::{build_vocab, TrainOptions};

/// Where the training sentences came from, for the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub lines: usize,
    /// Passages whose sentences were used (held-out ones excluded).
    pub passages_used: usize,
    /// How passages were chosen, in words.
    pub rule: String,
}

/// The reproducibility record written next to the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub seed: u64,
    pub encoder: String,
    pub sources: Vec<Source>,
    pub train_sentences: usize,
    pub validation_sentences: usize,
    /// Ridge strength chosen on the validation split (of the candidates tried).
    pub lambda: f64,
    pub lambdas_tried: Vec<f64>,
    /// Bag token F1 on the validation split with the chosen lambda and threshold.
    pub validation_f1: f64,
}

/// A trained probe: `scores(v)[w]` is the expected count of word `w` in v's text.
pub struct Probe {
    vocab: Vec<String>,
    index: HashMap<String, usize>,
    /// `vocab.len()` rows of `dim + 1` (the last column is the bias).
    weights: Vec<f32>,
    dim: usize,
    /// Calibration per word: the mean score over training texts without the word,
    /// and the gap to the mean over texts with it. Raw ridge scores of rare words are
    /// tiny (their expected count is), so ranking by raw score would only ever pick
    /// function words; `presence = (score - absent) / gap` puts "park" and "the" on
    /// one scale (about 0 when absent, 1 when present).
    absent: Vec<f32>,
    gap: Vec<f32>,
    /// The search's language prior over the same vocabulary, counted on the same
    /// training texts (see `fluency.rs`).
    fluency: BigramPrior,
    /// A word's first copy enters the bag when its presence exceeds this.
    pub threshold: f32,
    /// Each further copy enters while the expected count minus the copies already in
    /// exceeds this (both thresholds chosen on validation).
    pub extra_threshold: f32,
    pub manifest: Manifest,
}

impl Probe {
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    pub fn word_index(&self, word: &str) -> Option<usize> {
        self.index.get(word).copied()
    }

    /// Mean bigram log-probability per word of `words` (how much they read like the
    /// training prose).
    pub fn fluency(&self, words: &[String]) -> f32 {
        self.fluency.score(words, &self.index)
    }

    /// Expected count of every vocabulary word in the text behind `v`.
    pub fn scores(&self, v: &[f32]) -> Vec<f32> {
        linear_scores(&self.weights, self.dim, v)
    }

    /// How many words the text behind `scores` has: the probe is linear, so the sum
    /// of the expected counts is the regression of the in-vocabulary length, scaled
    /// up by the training texts' vocabulary coverage. (On held-out texts it runs
    /// about a tenth short, with a mean error of 3 words in 25.)
    pub fn expected_words(&self, scores: &[f32]) -> f32 {
        scores.iter().sum::<f32>().max(0.0) / self.fluency.coverage().max(0.5)
    }

    /// Calibrated presence of every word (see the field docs), from [`Probe::scores`].
    pub fn presence(&self, scores: &[f32]) -> Vec<f32> {
        presence(scores, &self.absent, &self.gap)
    }

    /// Presence difference predicted from a residual (the probe is linear, so no
    /// bias): which words `target` has that the hypothesis whose embedding was
    /// subtracted lacks (positive), and which it has too many of (negative).
    pub fn delta(&self, target: &[f32], hypothesis: &[f32]) -> Vec<f32> {
        let diff: Vec<f32> = target.iter().zip(hypothesis).map(|(a, b)| a - b).collect();
        let row = self.dim + 1;
        self.weights
            .chunks_exact(row)
            .zip(&self.gap)
            .map(|(w, g)| engram_kernels::dot(&w[..self.dim], &diff) / g)
            .collect()
    }

    /// The multiset of words the scores predict, most certain first.
    pub fn bag(&self, scores: &[f32]) -> Vec<String> {
        let p = self.presence(scores);
        bag(
            &self.vocab,
            scores,
            &p,
            self.threshold,
            self.extra_threshold,
        )
    }
}

/// Rows of `dim` weights plus a bias, applied to `v`.
fn linear_scores(weights: &[f32], dim: usize, v: &[f32]) -> Vec<f32> {
    weights
        .chunks_exact(dim + 1)
        .map(|w| engram_kernels::dot(&w[..dim], v) + w[dim])
        .collect()
}

fn presence(scores: &[f32], absent: &[f32], gap: &[f32]) -> Vec<f32> {
    scores
        .iter()
        .zip(absent.iter().zip(gap))
        .map(|(s, (a, g))| (s - a) / g)
        .collect()
}

/// First copies by presence (`> first`), further copies by expected count: copy
/// k + 1 while `score - k > extra`. Sorted by that value, highest first.
fn bag(vocab: &[String], scores: &[f32], presence: &[f32], first: f32, extra: f32) -> Vec<String> {
    let mut items: Vec<(f32, usize)> = Vec::new();
    for (k, (&s, &p)) in scores.iter().zip(presence).enumerate() {
        if p <= first {
            continue;
        }
        items.push((p, k));
        let mut copy = 1.0;
        while s - copy > extra && copy < 8.0 {
            items.push((s - copy, k));
            copy += 1.0;
        }
    }
    items.sort_by(|a, b| b.0.total_cmp(&a.0));
    items.into_iter().map(|(_, k)| vocab[k].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bag_takes_copies_above_threshold() {
        let vocab: Vec<String> = ["the", "cat", "dog"].map(String::from).to_vec();
        // the: present (0.9), copies at 2.2 - 1 = 1.2 and 0.2 (> 0.1), not 2.2 - 3;
        // cat: present (0.7); dog: presence 0.3 is under 0.5, out.
        let b = bag(&vocab, &[2.2, 0.6, 0.4], &[0.9, 0.7, 0.3], 0.5, 0.1);
        assert_eq!(b, ["the", "the", "cat", "the"]);
        assert_eq!(presence(&[0.5], &[0.1], &[0.8]), [0.5]);
    }
}
