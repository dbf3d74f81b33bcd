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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use engram_embedder::TextEncoder;
use engram_metrics::token_f1::word_f1;
use faer::linalg::solvers::Solve;
use faer::Mat;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fluency::BigramPrior;
use crate::text::words;

/// Where the trained probe lives in the repository (`engram train inverter` writes it).
pub fn default_dir() -> PathBuf {
    std::env::var_os("ENGRAM_INVERTER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts")))
}

const WEIGHTS_FILE: &str = "probe.safetensors";
const META_FILE: &str = "probe.json";
const FORMAT: u32 = 3;

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

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    dim: usize,
    threshold: f32,
    extra_threshold: f32,
    vocab: Vec<String>,
    manifest: Manifest,
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

    /// Trains on `sentences` and their embeddings (see [`embed_texts`]), made by the
    /// encoder named `encoder`.
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

    /// Writes `probe.safetensors` (int8 weights `[vocab, dim + 1]` with one f32 scale
    /// per word: a 20,000-word probe in 7.7 MB, ranking as the f32 one does) and
    /// `probe.json` (vocabulary, thresholds, manifest) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (codes, scales) = quantize_rows(&self.weights, self.dim + 1);
        let bytes: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::I8,
            vec![self.vocab.len(), self.dim + 1],
            &bytes,
        )
        .map_err(|e| Error::Solve(format!("weights: {e}")))?;
        let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (absent, gap) = (f32_bytes(&self.absent), f32_bytes(&self.gap));
        let scales = f32_bytes(&scales);
        let (unigrams, keys, counts) = self.fluency.to_arrays();
        let u32_bytes = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (unigrams, keys, counts) = (u32_bytes(&unigrams), u32_bytes(&keys), u32_bytes(&counts));
        use safetensors::Dtype::{F32, U32};
        let data = safetensors::serialize(
            [
                ("weight", view),
                ("scale", flat_view(F32, &scales)?),
                ("unigrams", flat_view(U32, &unigrams)?),
                ("pair_keys", flat_view(U32, &keys)?),
                ("pair_counts", flat_view(U32, &counts)?),
                ("absent", flat_view(F32, &absent)?),
                ("gap", flat_view(F32, &gap)?),
            ],
            None,
        )
        .map_err(|e| Error::Solve(format!("weights: {e}")))?;
        let path = dir.join(WEIGHTS_FILE);
        std::fs::write(&path, data).map_err(|e| Error::io(&path, e))?;
        let meta = Meta {
            format: FORMAT,
            dim: self.dim,
            threshold: self.threshold,
            extra_threshold: self.extra_threshold,
            vocab: self.vocab.clone(),
            manifest: self.manifest.clone(),
        };
        let path = dir.join(META_FILE);
        let json = serde_json::to_string_pretty(&meta).expect("plain struct serialises");
        std::fs::write(&path, json + "\n").map_err(|e| Error::io(&path, e))
    }

    /// Reads what [`Probe::save`] wrote; a missing or damaged artifact is an error
    /// naming the directory and the command that builds it.
    pub fn load(dir: &Path) -> Result<Probe> {
        let bad = |reason: String| Error::Artifact {
            dir: dir.to_path_buf(),
            reason,
        };
        let meta = std::fs::read_to_string(dir.join(META_FILE))
            .map_err(|e| bad(format!("{META_FILE}: {e}")))?;
        let bytes = std::fs::read(dir.join(WEIGHTS_FILE))
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
        Self::from_artifact(dir, &meta, &bytes)
    }

    /// The probe committed in `inverter/artifacts`, compiled into the binary so the
    /// audit works wherever the binary is run from.
    pub fn bundled() -> Result<Probe> {
        Self::from_artifact(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts (bundled)")),
            include_str!("../artifacts/probe.json"),
            include_bytes!("../artifacts/probe.safetensors"),
        )
    }

    /// The probe audits and evaluations use: the one in `ENGRAM_INVERTER_DIR` when
    /// that is set (a retrained probe), else the [bundled](Probe::bundled) one.
    pub fn default_probe() -> Result<Probe> {
        match std::env::var_os("ENGRAM_INVERTER_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => Self::load(Path::new(&dir)),
            None => Self::bundled(),
        }
    }

    /// A probe from its manifest (JSON) and weights (safetensors); `dir` names it
    /// in errors.
    fn from_artifact(dir: &Path, meta: &str, bytes: &[u8]) -> Result<Probe> {
        let bad = |reason: String| Error::Artifact {
            dir: dir.to_path_buf(),
            reason,
        };
        let meta: Meta =
            serde_json::from_str(meta).map_err(|e| bad(format!("{META_FILE}: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "format {} (this build reads {FORMAT})",
                meta.format
            )));
        }
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
        let t = st
            .tensor("weight")
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
        let shape = [meta.vocab.len(), meta.dim + 1];
        if t.dtype() != safetensors::Dtype::I8 || t.shape() != shape {
            return Err(bad(format!(
                "weight is {:?} {:?}, expected I8 {shape:?}",
                t.dtype(),
                t.shape()
            )));
        }
        // A flat tensor of 4-byte values of `dtype` (of `len` values, when given).
        let flat = |name: &str, dtype, len: Option<usize>| -> Result<Vec<[u8; 4]>> {
            let t = st
                .tensor(name)
                .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
            if t.dtype() != dtype || t.shape().len() != 1 || len.is_some_and(|n| t.shape() != [n]) {
                return Err(bad(format!("{name} has the wrong type or shape")));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| [b[0], b[1], b[2], b[3]])
                .collect())
        };
        let calibration = |name: &str| -> Result<Vec<f32>> {
            let raw = flat(name, safetensors::Dtype::F32, Some(meta.vocab.len()))?;
            Ok(raw.into_iter().map(f32::from_le_bytes).collect())
        };
        let counts = |name: &str| -> Result<Vec<u32>> {
            let raw = flat(name, safetensors::Dtype::U32, None)?;
            Ok(raw.into_iter().map(u32::from_le_bytes).collect())
        };
        let scales = calibration("scale")?;
        let weights = t
            .data()
            .chunks_exact(meta.dim + 1)
            .zip(&scales)
            .flat_map(|(row, &s)| row.iter().map(move |&c| c as i8 as f32 * s))
            .collect();
        let (absent, gap) = (calibration("absent")?, calibration("gap")?);
        let fluency = BigramPrior::from_arrays(
            counts("unigrams")?,
            &counts("pair_keys")?,
            &counts("pair_counts")?,
            meta.vocab.len(),
        )
        .map_err(|e| bad(format!("bigram prior: {e}")))?;
        let index = meta
            .vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();
        Ok(Probe {
            vocab: meta.vocab,
            index,
            weights,
            dim: meta.dim,
            absent,
            gap,
            fluency,
            threshold: meta.threshold,
            extra_threshold: meta.extra_threshold,
            manifest: meta.manifest,
        })
    }
}

/// Embeds `texts` in batches of `batch`; `progress(done, total)` after each batch.
pub fn embed_texts(
    texts: &[String],
    encoder: &dyn TextEncoder,
    batch: usize,
    progress: &dyn Fn(usize, usize),
) -> Result<Vec<Vec<f32>>> {
    let mut emb: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch.max(1)) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        emb.extend(encoder.embed(&refs)?);
        progress(emb.len(), texts.len());
    }
    Ok(emb)
}

/// Rows of `dim` weights plus a bias, applied to `v`.
fn linear_scores(weights: &[f32], dim: usize, v: &[f32]) -> Vec<f32> {
    weights
        .chunks_exact(dim + 1)
        .map(|w| engram_kernels::dot(&w[..dim], v) + w[dim])
        .collect()
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

/// Symmetric int8 codes per row of `width` values, and each row's scale.
fn quantize_rows(weights: &[f32], width: usize) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(weights.len() / width);
    for row in weights.chunks_exact(width) {
        let max = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        codes.extend(
            row.iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (codes, scales)
}

/// A flat tensor of 4-byte values (the calibration, scales and bigram counts).
fn flat_view(
    dtype: safetensors::Dtype,
    bytes: &[u8],
) -> Result<safetensors::tensor::TensorView<'_>> {
    safetensors::tensor::TensorView::new(dtype, vec![bytes.len() / 4], bytes)
        .map_err(|e| Error::Solve(format!("artifact tensor: {e}")))
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
    fn vocab_ranks_by_count_then_alphabet() {
        let texts = [words("b a c b"), words("c b d")];
        assert_eq!(build_vocab(texts.iter(), 3), ["b", "c", "a"]);
    }

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
