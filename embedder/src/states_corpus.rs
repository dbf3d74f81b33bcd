//! Stage one's token states of a whole corpus, kept in memory (and, on request, in a
//! cache file) so stage two can be trained and evaluated without running BERT again.
//!
//! Why: stage one (MiniLM) is frozen, and it is 99% of the cost. One pass over a
//! corpus keeps every window's token states (about 100 KB a window), so training runs
//! thousands of steps, and an evaluation compares every variant, from them. Poolers
//! see the same `(batch, len, dim)` tensors the live encoder hands them, so cached and
//! live vectors are the same (a test below checks it).

use std::ops::Range;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::encoder::Chunking;
use crate::error::Result;
use crate::minilm::{MiniLm, Pooler};
use crate::vector_cache::{self, CacheReader};

/// One window's token ids (`[CLS]`/`[SEP]` included) and their states, row-major.
#[derive(Debug, Clone, Default)]
pub struct WindowStates {
    pub ids: Vec<u32>,
    pub states: Vec<f32>,
}

/// A pooler that keeps each window's real token states (for the cache).
struct KeepStates;

impl Pooler<WindowStates> for KeepStates {
    fn pool(&self, states: &Tensor, seqs: &[&[u32]]) -> Result<Vec<WindowStates>> {
        let all = states.to_vec3::<f32>()?;
        Ok(all
            .into_iter()
            .zip(seqs)
            .map(|(rows, ids)| WindowStates {
                ids: ids.to_vec(),
                states: rows.into_iter().take(ids.len()).flatten().collect(),
            })
            .collect())
    }
}

/// Every window of a corpus's texts with its token states, in text order.
pub struct StatesCorpus {
    pub(crate) dim: usize,
    pub(crate) windows: Vec<WindowStates>,
    /// The windows of text `i`.
    pub(crate) spans: Vec<Range<usize>>,
}

/// Texts embedded per call while building a cache (the unit of `progress`).
const CACHE_STEP: usize = 32;
/// Windows pooled per batch when reading a cache.
const POOL_BATCH: usize = 256;

impl StatesCorpus {
    /// Runs stage one over `texts`, cut as `chunking` says (`None`: one window per
    /// text, the way queries are embedded); `progress` gets the texts done so far.
    pub fn embed(
        base: &MiniLm,
        texts: &[&str],
        chunking: Option<Chunking>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<StatesCorpus> {
        let mut corpus = StatesCorpus {
            dim: crate::TextEncoder::dim(base),
            windows: Vec::new(),
            spans: Vec::with_capacity(texts.len()),
        };
        for (step, batch) in texts.chunks(CACHE_STEP).enumerate() {
            let windows: Vec<(usize, WindowStates)> = match chunking {
                Some(c) => base
                    .embed_chunked_pooled(batch, c, &KeepStates)?
                    .into_iter()
                    .map(|(w, s)| (w.text, s))
                    .collect(),
                None => base
                    .embed_pooled(batch, &KeepStates)?
                    .into_iter()
                    .enumerate()
                    .collect(),
            };
            let mut text = 0;
            let mut start = corpus.windows.len();
            for (t, w) in windows {
                while text < t {
                    corpus.spans.push(start..corpus.windows.len());
                    start = corpus.windows.len();
                    text += 1;
                }
                corpus.windows.push(w);
            }
            while text < batch.len() {
                corpus.spans.push(start..corpus.windows.len());
                start = corpus.windows.len();
                text += 1;
            }
            progress((step * CACHE_STEP + batch.len()).min(texts.len()));
        }
        Ok(corpus)
    }

    /// Number of texts.
    pub fn texts(&self) -> usize {
        self.spans.len()
    }

    /// Number of windows (chunks).
    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// The windows of text `i`.
    pub fn span(&self, i: usize) -> Range<usize> {
        self.spans[i].clone()
    }

    /// Writes the corpus to `path` under `key` (the shared cache format,
    /// [`crate::vector_cache`]): a re-run of an evaluation or a training reads it back
    /// instead of running stage one again. The index holds the number of texts and
    /// windows, each text's span of windows, and each window's token ids; the rows
    /// are the windows' token states, in window order.
    pub fn write(&self, path: &Path, key: &str) -> Result<()> {
        let mut index = vec![self.spans.len() as u32, self.windows.len() as u32];
        for span in &self.spans {
            index.extend([span.start as u32, span.end as u32]);
        }
        for w in &self.windows {
            index.push(w.ids.len() as u32);
            index.extend(&w.ids);
        }
        let blocks: Vec<&[f32]> = self.windows.iter().map(|w| w.states.as_slice()).collect();
        vector_cache::write(path, key, self.dim, &index, &blocks)
    }

    /// Reads what [`StatesCorpus::write`] wrote under `key`; `None` when the file
    /// does not hold that (missing, another key, cut short, or an older Engram's
    /// states cache): the caller runs stage one again and overwrites it.
    pub fn read(path: &Path, key: &str) -> Result<Option<StatesCorpus>> {
        let Some(mut file) = CacheReader::open(path, key)? else {
            return Ok(None);
        };
        let Some(Layout { spans, ids }) = parse_index(file.index(), file.rows()) else {
            return Ok(None);
        };
        let mut windows = Vec::with_capacity(ids.len());
        for ids in ids {
            let states = file.read_rows(ids.len())?;
            windows.push(WindowStates { ids, states });
        }
        Ok(Some(StatesCorpus {
            dim: file.dim(),
            windows,
            spans,
        }))
    }

    /// The padded `(n, len, dim)` states of windows `which`, and their ids.
    pub(crate) fn batch(&self, which: &[usize]) -> Result<(Tensor, Vec<&[u32]>)> {
        let len = which
            .iter()
            .map(|&w| self.windows[w].ids.len())
            .max()
            .unwrap_or(1);
        let mut flat = Vec::with_capacity(which.len() * len * self.dim);
        let mut seqs = Vec::with_capacity(which.len());
        for &w in which {
            let win = &self.windows[w];
            flat.extend_from_slice(&win.states);
            flat.extend(std::iter::repeat_n(0f32, (len - win.ids.len()) * self.dim));
            seqs.push(win.ids.as_slice());
        }
        let states = Tensor::from_vec(flat, (which.len(), len, self.dim), &Device::Cpu)?;
        Ok((states, seqs))
    }

    /// Every window pooled by `pooler`, in window order: what the live encoder would
    /// give for the same windows.
    pub fn pool(&self, pooler: &dyn Pooler<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        let all: Vec<usize> = (0..self.windows.len()).collect();
        let mut out = Vec::with_capacity(all.len());
        for chunk in all.chunks(POOL_BATCH) {
            let (states, seqs) = self.batch(chunk)?;
            out.extend(pooler.pool(&states, &seqs)?);
        }
        Ok(out)
    }
}

/// What [`StatesCorpus::write`] puts in a cache's index.
struct Layout {
    /// Each text's windows.
    spans: Vec<Range<usize>>,
    /// Each window's token ids (as many token states follow in the rows).
    ids: Vec<Vec<u32>>,
}

/// The layout in `index`, when it is consistent in itself and with the file's `rows`
/// token states.
fn parse_index(index: &[u32], rows: usize) -> Option<Layout> {
    let mut words = index.iter().copied();
    let mut next = || words.next().map(|w| w as usize);
    let (texts, windows) = (next()?, next()?);
    let spans = (0..texts)
        .map(|_| Some(next()?..next()?))
        .collect::<Option<Vec<_>>>()?;
    let ids = (0..windows)
        .map(|_| {
            let n = next()?;
            (0..n).map(|_| next().map(|id| id as u32)).collect()
        })
        .collect::<Option<Vec<Vec<u32>>>>()?;
    let consistent = next().is_none()
        && spans.iter().all(|s| s.start <= s.end && s.end <= windows)
        && ids.iter().map(Vec::len).sum::<usize>() == rows;
    consistent.then_some(Layout { spans, ids })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::minilm::tests::tiny;
    use crate::minilm::WeightedMean;
    use crate::TextEncoder;

    /// Passages over a five-word vocabulary and a question per passage that names its
    /// rarest words.
    pub(crate) fn toy() -> (Vec<&'static str>, Vec<&'static str>, Vec<usize>) {
        let texts = vec![
            "alpha beta gamma alpha beta",
            "alpha beta delta alpha beta",
            "alpha beta eps alpha beta",
            "gamma delta alpha gamma delta",
            "gamma eps beta gamma eps",
            "delta eps alpha delta eps",
            "beta gamma gamma gamma beta",
            "eps eps delta eps alpha",
        ];
        let questions = vec![
            "gamma alpha",
            "delta beta",
            "eps alpha",
            "gamma delta",
            "eps gamma",
            "delta eps",
            "gamma gamma",
            "eps eps",
        ];
        (texts, questions, (0..8).collect())
    }

    /// The toy passages (default windows) and questions through stage one.
    pub(crate) fn toy_states(base: &MiniLm) -> (StatesCorpus, StatesCorpus) {
        let (texts, questions, _) = toy();
        let docs =
            StatesCorpus::embed(base, &texts, Some(Chunking::default()), &mut |_| {}).unwrap();
        let queries = StatesCorpus::embed(base, &questions, None, &mut |_| {}).unwrap();
        (docs, queries)
    }

    #[test]
    fn cached_states_pool_like_the_live_encoder() {
        let base = tiny();
        let (texts, _, _) = toy();
        let chunking = Chunking {
            tokens: 5,
            overlap: 1,
        };
        let corpus = StatesCorpus::embed(&base, &texts, Some(chunking), &mut |_| {}).unwrap();
        let live: Vec<Vec<f32>> = base
            .embed_chunked(&texts, chunking)
            .unwrap()
            .into_iter()
            .flatten()
            .map(|c| c.vector)
            .collect();
        let cached = corpus.pool(&WeightedMean(None)).unwrap();
        assert_eq!(corpus.texts(), texts.len());
        assert_eq!(cached.len(), live.len());
        assert!(corpus.windows() > texts.len(), "texts are cut into windows");
        for (a, b) in cached.iter().zip(&live) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn a_states_cache_round_trips_through_a_file() {
        let (corpus, _) = toy_states(&tiny());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("states.bin");
        corpus.write(&path, "toy-passages").unwrap();
        let back = StatesCorpus::read(&path, "toy-passages").unwrap().unwrap();
        assert_eq!(back.spans, corpus.spans);
        assert_eq!(
            back.pool(&WeightedMean(None)).unwrap(),
            corpus.pool(&WeightedMean(None)).unwrap()
        );
        // Another key, or a file that is not a whole cache, is rebuilt, not an error.
        assert!(StatesCorpus::read(&path, "toy-questions")
            .unwrap()
            .is_none());
        std::fs::write(&path, b"EST1junk").unwrap();
        assert!(StatesCorpus::read(&path, "toy-passages").unwrap().is_none());
    }
}
