//! Fitting the probe ([`Probe::train`]): ridge regression from embeddings to word
//! counts in closed form, a per-word calibration, and the ridge strength and bag
//! thresholds chosen on a validation split.
//!
//! Why here and not next to the scoring: fitting needs the normal equations, faer's
//! Cholesky and the threshold search, none of which a loaded probe uses.

use std::collections::HashMap;

use engram_metrics::token_f1::word_f1;
use faer::linalg::solvers::Solve;
use faer::Mat;

use super::{bag, linear_scores, presence, Manifest, Probe, Source};
use crate::error::{Error, Result};
use crate::fluency::BigramPrior;
use crate::text::words;

/// Knobs of [`Probe::train`]; the defaults made the committed probe.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub vocab: usize,
    pub seed: u64,
    pub lambdas: Vec<f64>,
    /// Share of sentences held back to choose lambda and the threshold.
    pub validation: f64,
    /// At most this many of them (scoring a 20,000-word vocabulary for every
    /// threshold pair is the slow part of the choice).
    pub max_validation: usize,
    /// Sentences per encoder call.
    pub batch: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            vocab: 20_000,
            seed: 4,
            lambdas: vec![0.01, 0.03, 0.1],
            validation: 0.1,
            max_validation: 3000,
            batch: 128,
        }
    }
}

impl Probe {
    /// Trains on `sentences` and their embeddings (see
    /// [`crate::train_probe::embed_texts`]), made by the encoder named `encoder`.
    pub fn train(
        sentences: &[String],
        emb: &[Vec<f32>],
        encoder: &str,
        opts: &TrainOptions,
        sources: Vec<Source>,
    ) -> Result<Probe> {
        if emb.len() != sentences.len() || emb.is_empty() {
            return Err(Error::invalid(
                "embeddings",
                format!("{} embeddings for {} sentences", emb.len(), sentences.len()),
            ));
        }
        if sentences.len() < 50 {
            return Err(Error::invalid(
                "sentences",
                format!("{} given; the probe needs at least 50", sentences.len()),
            ));
        }
        if opts.vocab == 0 || opts.lambdas.is_empty() {
            return Err(Error::invalid(
                "options",
                "vocab and lambdas must not be empty",
            ));
        }
        // Reproducible split: a seeded shuffle, then the last share validates.
        let mut order: Vec<usize> = (0..sentences.len()).collect();
        let mut rng = engram_kernels::SplitMix::new(opts.seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let n_val = ((sentences.len() as f64 * opts.validation) as usize)
            .clamp(1, opts.max_validation.max(1));
        let (train_idx, val_idx) = order.split_at(order.len() - n_val);

        let tokenised: Vec<Vec<String>> = sentences.iter().map(|s| words(s)).collect();
        let vocab = build_vocab(train_idx.iter().map(|&i| &tokenised[i]), opts.vocab);
        let index: HashMap<String, usize> = vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();

        let dim = emb[0].len();

        let d = dim + 1;
        // Normal equations X^T X and X^T Y of a set of rows (X with a bias column).
        let accumulate = |rows: &[usize]| -> Normal {
            let mut gram = Mat::<f64>::zeros(d, d);
            let mut rhs = Mat::<f64>::zeros(d, vocab.len());
            let mut pres = Mat::<f64>::zeros(d, vocab.len());
            let mut npres = vec![0.0f64; vocab.len()];
            let mut tot = vec![0.0f64; d];
            for &i in rows {
                let x: Vec<f64> = emb[i].iter().map(|&v| v as f64).chain([1.0]).collect();
                for a in 0..d {
                    for b in 0..=a {
                        gram[(a, b)] += x[a] * x[b];
                    }
                }
                let mut counts: HashMap<usize, f64> = HashMap::new();
                for w in &tokenised[i] {
                    if let Some(&k) = index.get(w) {
                        *counts.entry(k).or_default() += 1.0;
                    }
                }
                for (k, c) in counts {
                    npres[k] += 1.0;
                    for a in 0..d {
                        rhs[(a, k)] += c * x[a];
                        pres[(a, k)] += x[a];
                    }
                }
                for a in 0..d {
                    tot[a] += x[a];
                }
            }
            for a in 0..d {
                for b in 0..a {
                    gram[(b, a)] = gram[(a, b)];
                }
            }
            Normal {
                gram,
                rhs,
                pres,
                npres,
                tot,
                n: rows.len() as f64,
            }
        };
        // Mean score with and without each word: linear in the mean embeddings.
        let calibrate = |weights: &[f32], nm: &Normal| -> (Vec<f32>, Vec<f32>) {
            let (mut absent, mut gap) = (Vec::new(), Vec::new());
            for (k, w) in weights.chunks_exact(d).enumerate() {
                let np = nm.npres[k].max(1.0);
                let na = (nm.n - nm.npres[k]).max(1.0);
                let (mut on, mut off) = (0.0f64, 0.0f64);
                for (a, (&wa, &ta)) in w.iter().zip(&nm.tot).enumerate() {
                    on += wa as f64 * nm.pres[(a, k)] / np;
                    off += wa as f64 * (ta - nm.pres[(a, k)]) / na;
                }
                absent.push(off as f32);
                gap.push((on - off).max(1e-3) as f32);
            }
            (absent, gap)
        };
        // (X^T X + lambda I) W = X^T Y, the bias unpenalised; one Cholesky for all words.
        let solve = |gram: &Mat<f64>, rhs: &Mat<f64>, lambda: f64| -> Result<Vec<f32>> {
            let mut g = gram.clone();
            for a in 0..dim {
                g[(a, a)] += lambda;
            }
            let llt = g
                .llt(faer::Side::Lower)
                .map_err(|e| Error::Solve(format!("{e:?}")))?;
            let w = llt.solve(rhs);
            // Row-major per word: word k's weights are column k of the solution.
            let mut out = Vec::with_capacity(vocab.len() * d);
            for k in 0..vocab.len() {
                out.extend((0..d).map(|a| w[(a, k)] as f32));
            }
            Ok(out)
        };
        let nm = accumulate(train_idx);

        let firsts: Vec<f32> = (3..=18).map(|t| t as f32 * 0.05).collect();
        let extras: Vec<f32> = vec![0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0];
        let (mut best_lambda, mut best_t, mut best_f1) = (opts.lambdas[0], (0.5, 0.5), -1.0);
        for &lambda in &opts.lambdas {
            let weights = solve(&nm.gram, &nm.rhs, lambda)?;
            let (absent, gap) = calibrate(&weights, &nm);
            let scores: Vec<(Vec<f32>, Vec<f32>)> = val_idx
                .iter()
                .map(|&i| {
                    let s = linear_scores(&weights, dim, &emb[i]);
                    let p = presence(&s, &absent, &gap);
                    (s, p)
                })
                .collect();
            for &t1 in &firsts {
                for &t2 in &extras {
                    let f1: f64 = val_idx
                        .iter()
                        .zip(&scores)
                        .map(|(&i, (s, p))| word_f1(&bag(&vocab, s, p, t1, t2), &tokenised[i]))
                        .sum::<f64>()
                        / val_idx.len() as f64;
                    if f1 > best_f1 {
                        (best_lambda, best_t, best_f1) = (lambda, (t1, t2), f1);
                    }
                }
            }
        }
        let all: Vec<usize> = (0..sentences.len()).collect();
        let nm = accumulate(&all);
        let weights = solve(&nm.gram, &nm.rhs, best_lambda)?;
        let (absent, gap) = calibrate(&weights, &nm);
        let fluency = BigramPrior::count(tokenised.iter(), &index, vocab.len())?;
        Ok(Probe {
            vocab,
            index,
            weights,
            dim,
            absent,
            gap,
            fluency,
            threshold: best_t.0,
            extra_threshold: best_t.1,
            manifest: Manifest {
                seed: opts.seed,
                encoder: encoder.to_string(),
                sources,
                train_sentences: train_idx.len(),
                validation_sentences: val_idx.len(),
                lambda: best_lambda,
                lambdas_tried: opts.lambdas.clone(),
                validation_f1: best_f1,
            },
        })
    }
}

/// The `size` most frequent words (ties broken alphabetically, so reproducible).
pub fn build_vocab<'a>(texts: impl Iterator<Item = &'a Vec<String>>, size: usize) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in texts {
        for w in t {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(size)
        .map(|(w, _)| w.to_string())
        .collect()
}

/// The normal equations of a set of rows, plus per-word presence sums for calibration.
struct Normal {
    gram: Mat<f64>,
    rhs: Mat<f64>,
    /// Column k: sum of the embeddings of the texts that contain word k.
    pres: Mat<f64>,
    npres: Vec<f64>,
    tot: Vec<f64>,
    n: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_ranks_by_count_then_alphabet() {
        let texts = [words("b a c b"), words("c b d")];
        assert_eq!(build_vocab(texts.iter(), 3), ["b", "c", "a"]);
    }
}
