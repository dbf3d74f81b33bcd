//! `engram train inverter`'s workflow: cut the training texts (windows of up to
//! [`TEXT_TOKENS`] MiniLM tokens from every DROP passage and every Quoref passage
//! outside the held-out rule), draw a seeded sample, embed it (or read the
//! embeddings back from a cache), and fit the probe with its manifest's sources.
//! Also the evaluation texts `engram eval inversion` inverts, cut to the same length.
//!
//! Why a library workflow: the CLI only reads the dataset files, shows progress and
//! prints; what is trained on, and how, is decided here, next to the held-out rule
//! (`corpus.rs`) it must agree with.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engram_embedder::vector_cache::{self, CacheReader};
use engram_embedder::{MiniLm, TextEncoder};

use crate::corpus::{self, HELD_OUT_RULE};
use crate::error::{Error, Result};
use crate::probe::{Probe, Source, TrainOptions};

/// Length of training and evaluation texts in MiniLM tokens (vec2text's setting).
pub const TEXT_TOKENS: usize = 32;

/// A training window ends at a sentence's end; a shorter last one is kept from this
/// many words.
const MIN_WINDOW_WORDS: usize = 4;

/// One passage of a dataset file: its id (the held-out rule reads it) and its text.
#[derive(Debug, Clone, Copy)]
pub struct PassageText<'a> {
    pub id: &'a str,
    pub text: &'a str,
}

/// A dataset file (fingerprinted for the manifest) and its passages.
#[derive(Debug, Clone)]
pub struct DatasetFile<'a> {
    pub path: &'a Path,
    pub passages: Vec<PassageText<'a>>,
}

/// What the probe may read: every DROP passage, and the Quoref passages the
/// held-out rule leaves to training.
#[derive(Debug, Clone)]
pub struct ProbeCorpus<'a> {
    pub drop: DatasetFile<'a>,
    pub quoref: DatasetFile<'a>,
}

/// How to train.
#[derive(Debug, Clone)]
pub struct ProbeTraining {
    /// The fit's options; their seed also draws the sample of texts.
    pub fit: TrainOptions,
    /// Training texts used at most (a seeded sample of all windows).
    pub max_texts: usize,
    /// Where the sampled texts' embeddings are kept between runs, keyed by the
    /// texts' SHA-256: retraining with other fit options skips the slow part.
    pub embeddings_cache: Option<PathBuf>,
}

/// What [`train`] tells its caller as it goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainingEvent {
    /// The sample is drawn: `texts` of `windows` windows, cut from this many
    /// passages of each file.
    TextsChosen {
        texts: usize,
        windows: usize,
        drop_passages: usize,
        quoref_passages: usize,
    },
    /// `done` of `total` texts embedded (from 0; not told when the cache had them).
    Embedding { done: usize, total: usize },
}

/// A trained probe, and how long embedding and fitting it took.
pub struct TrainedProbe {
    pub probe: Probe,
    pub elapsed: Duration,
}

/// Trains a probe on `corpus` with `encoder`'s embeddings.
pub fn train(
    corpus: &ProbeCorpus<'_>,
    encoder: &MiniLm,
    options: &ProbeTraining,
    on_event: &mut dyn FnMut(TrainingEvent),
) -> Result<TrainedProbe> {
    let quoref: Vec<&str> = corpus
        .quoref
        .passages
        .iter()
        .filter(|p| !corpus::is_held_out(p.id))
        .map(|p| p.text)
        .collect();
    let drop: Vec<&str> = corpus.drop.passages.iter().map(|p| p.text).collect();
    let count = token_count(encoder);
    let mut texts: Vec<String> = drop
        .iter()
        .chain(&quoref)
        .flat_map(|text| corpus::windows(text, TEXT_TOKENS, MIN_WINDOW_WORDS, &count))
        .collect();
    let windows = texts.len();
    // A seeded sample keeps training time bounded and reproducible.
    let mut rng = engram_kernels::SplitMix::new(options.fit.seed);
    for i in (1..texts.len()).rev() {
        texts.swap(i, rng.below(i + 1));
    }
    texts.truncate(options.max_texts);
    on_event(TrainingEvent::TextsChosen {
        texts: texts.len(),
        windows,
        drop_passages: drop.len(),
        quoref_passages: quoref.len(),
    });
    let sources = vec![
        source("drop", corpus.drop.path, drop.len(), "all passages")?,
        source("quoref", corpus.quoref.path, quoref.len(), HELD_OUT_RULE)?,
    ];
    let started = Instant::now();
    let emb = embeddings(
        &texts,
        encoder,
        options.fit.batch,
        options.embeddings_cache.as_deref(),
        on_event,
    )?;
    let probe = Probe::train(&texts, &emb, "minilm", &options.fit, sources)?;
    Ok(TrainedProbe {
        probe,
        elapsed: started.elapsed(),
    })
}

/// The first full [`TEXT_TOKENS`]-token window of each of `texts` that has one, at
/// most `limit`: what `engram eval inversion` inverts (given the held-out passages).
pub fn evaluation_texts<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    limit: usize,
    encoder: &MiniLm,
) -> Vec<String> {
    let count = token_count(encoder);
    texts
        .into_iter()
        .filter_map(|text| corpus::first_full_window(text, TEXT_TOKENS, &count))
        .take(limit)
        .collect()
}

/// Embeds `texts` in batches of `batch`; `progress(done, total)` after each batch.
pub fn embed_texts(
    texts: &[String],
    encoder: &dyn TextEncoder,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>> {
    let mut emb: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch.max(1)) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        emb.extend(encoder.embed(&refs)?);
        progress(emb.len(), texts.len());
    }
    Ok(emb)
}

/// MiniLM tokens of one word (at least one: the window rules count words too).
fn token_count(encoder: &MiniLm) -> impl Fn(&str) -> usize + '_ {
    |w: &str| encoder.token_ids(w).map_or(1, |t| t.len())
}

/// A manifest's record of one dataset file.
fn source(name: &str, path: &Path, used: usize, rule: &str) -> Result<Source> {
    let (sha256, lines) = corpus::fingerprint(path)?;
    Ok(Source {
        name: name.into(),
        file: path
            .file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into()),
        sha256,
        lines,
        passages_used: used,
        rule: rule.into(),
    })
}

/// The embeddings of `texts`: read from `cache` when it holds them (under the
/// texts' SHA-256), else embedded, and then kept there. Caches written before the
/// shared format ([`vector_cache`]) are not read: they are embedded again.
fn embeddings(
    texts: &[String],
    encoder: &MiniLm,
    batch: usize,
    cache: Option<&Path>,
    on_event: &mut dyn FnMut(TrainingEvent),
) -> Result<Vec<Vec<f32>>> {
    let key = corpus::texts_digest(texts);
    if let Some(path) = cache {
        if let Some(cached) = read_cached(path, &key, texts.len()).map_err(cache_error)? {
            return Ok(cached);
        }
    }
    let total = texts.len();
    on_event(TrainingEvent::Embedding { done: 0, total });
    let emb = embed_texts(texts, encoder, batch, &mut |done, total| {
        on_event(TrainingEvent::Embedding { done, total })
    })?;
    if let Some(path) = cache {
        let dim = emb.first().map_or(0, Vec::len);
        let rows: Vec<&[f32]> = emb.iter().map(Vec::as_slice).collect();
        vector_cache::write(path, &key, dim, &[], &rows).map_err(cache_error)?;
    }
    Ok(emb)
}

/// One vector per text, when `path` holds `n` of them under `key`.
fn read_cached(path: &Path, key: &str, n: usize) -> engram_embedder::Result<Option<Vec<Vec<f32>>>> {
    let Some(mut file) = CacheReader::open(path, key)? else {
        return Ok(None);
    };
    if file.rows() != n || !file.index().is_empty() {
        return Ok(None);
    }
    (0..n)
        .map(|_| file.read_rows(1))
        .collect::<engram_embedder::Result<_>>()
        .map(Some)
}

/// The cache's file errors are the inverter's own I/O errors, not the encoder's.
fn cache_error(e: engram_embedder::Error) -> Error {
    match e {
        engram_embedder::Error::Io { path, source, .. } => Error::Io { path, source },
        other => Error::Encoder(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_embeddings_read_back_for_the_same_texts_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("emb.bin");
        let texts: Vec<String> = ["one", "two"].map(String::from).to_vec();
        let key = corpus::texts_digest(&texts);
        let emb = [vec![1.0f32, 2.0], vec![3.0, 4.0]];
        let rows: Vec<&[f32]> = emb.iter().map(Vec::as_slice).collect();
        vector_cache::write(&path, &key, 2, &[], &rows).unwrap();
        assert_eq!(read_cached(&path, &key, 2).unwrap().unwrap(), emb);
        assert!(read_cached(&path, &key, 3).unwrap().is_none());
        let other = corpus::texts_digest(&texts[..1]);
        assert!(read_cached(&path, &other, 2).unwrap().is_none());
    }
}
