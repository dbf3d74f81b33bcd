//! Training the learned stage two ([`crate::stage_two`]) contrastively, and the
//! token-state caches that training and evaluation read.
//!
//! Why cache token states: stage one (MiniLM) is frozen, and it is 99% of the cost.
//! One pass over a corpus keeps every window's token states in memory (about 100 KB a
//! window), so training runs thousands of steps, and an evaluation compares every
//! variant, without running BERT again. Poolers see the same `(batch, len, dim)`
//! tensors the live encoder hands them, so cached and live vectors are the same.
//!
//! The objective is CDE's: InfoNCE between a question and its passage (the passage's
//! score is its best window's), with the other passages of the batch as negatives, and
//! every batch drawn from one k-means cluster of the corpus, so the negatives are the
//! hard, same-topic ones a niche collection is full of.

use std::ops::Range;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use engram_kernels::SplitMix;

use crate::context::{ContextOptions, CorpusContext, Variant};
use crate::encoder::Chunking;
use crate::error::{Error, Result};
use crate::minilm::{padded, MiniLm, Pooler};
use crate::stage_two::{ContextTensors, StageTwo, StageTwoConfig, StageTwoPooler, PARTS};

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
    dim: usize,
    windows: Vec<WindowStates>,
    /// The windows of text `i`.
    spans: Vec<Range<usize>>,
}

/// First word of a states cache file ("EST1").
const STATES_MAGIC: u32 = u32::from_le_bytes(*b"EST1");
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

    /// Writes the cache to `path` (raw little-endian; a re-run of an evaluation or a
    /// training reads it back instead of running stage one again).
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        use std::io::Write;
        let io = |e| Error::io("writing", path, e);
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        let mut put = |x: u32| out.write_all(&x.to_le_bytes());
        put(STATES_MAGIC).map_err(io)?;
        put(self.dim as u32).map_err(io)?;
        put(self.spans.len() as u32).map_err(io)?;
        put(self.windows.len() as u32).map_err(io)?;
        for span in &self.spans {
            put(span.start as u32).map_err(io)?;
            put(span.end as u32).map_err(io)?;
        }
        for w in &self.windows {
            put(w.ids.len() as u32).map_err(io)?;
            for &id in &w.ids {
                put(id).map_err(io)?;
            }
        }
        for w in &self.windows {
            let bytes: Vec<u8> = w.states.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.write_all(&bytes).map_err(io)?;
        }
        out.flush().map_err(io)
    }

    /// Reads a cache written by [`StatesCorpus::write`]; a damaged file is an error.
    pub fn read(path: &std::path::Path) -> Result<StatesCorpus> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        let bad = || Error::InvalidContext(format!("{} is not a states cache", path.display()));
        let mut at = 0usize;
        let mut word = || -> Result<u32> {
            let b = bytes.get(at..at + 4).ok_or_else(bad)?;
            at += 4;
            Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        if word()? != STATES_MAGIC {
            return Err(bad());
        }
        let (dim, texts, windows) = (word()? as usize, word()? as usize, word()? as usize);
        let mut spans = Vec::with_capacity(texts);
        for _ in 0..texts {
            spans.push(word()? as usize..word()? as usize);
        }
        let mut ids = Vec::with_capacity(windows);
        for _ in 0..windows {
            let n = word()? as usize;
            ids.push((0..n).map(|_| word()).collect::<Result<Vec<u32>>>()?);
        }
        let mut corpus = StatesCorpus {
            dim,
            windows: Vec::with_capacity(windows),
            spans,
        };
        for ids in ids {
            let n = ids.len() * dim * 4;
            let b = bytes.get(at..at + n).ok_or_else(bad)?;
            at += n;
            let states = b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            corpus.windows.push(WindowStates { ids, states });
        }
        if at != bytes.len() || corpus.spans.iter().any(|s| s.end > windows) {
            return Err(bad());
        }
        Ok(corpus)
    }

    /// The padded `(n, len, dim)` states of windows `which`, and their ids.
    fn batch(&self, which: &[usize]) -> Result<(Tensor, Vec<&[u32]>)> {
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

/// Knobs of [`train`]; the defaults made the shipped weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    /// The pieces that learn (names in [`crate::stage_two::PARTS`]); the rest keep
    /// their identity initialisation.
    pub parts: Vec<String>,
    pub steps: usize,
    /// Passages (and one question each) per batch, all from one cluster where it has enough.
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Rank of the learned correction.
    pub rank: usize,
    /// InfoNCE temperature.
    pub temperature: f64,
    /// Refit the corpus context to the current pooling every this many steps.
    pub refit_every: usize,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            parts: PARTS.iter().map(|p| p.0.to_string()).collect(),
            steps: 300,
            batch: 32,
            learning_rate: 3e-4,
            weight_decay: 0.01,
            rank: 32,
            temperature: 0.05,
            refit_every: 200,
            seed: 11,
        }
    }
}

/// What training reads: the corpus (texts for token counts, and their cached states),
/// questions (cached, one window each) and each question's passage.
pub struct TrainData<'a> {
    pub base: &'a MiniLm,
    pub texts: &'a [&'a str],
    pub docs: &'a StatesCorpus,
    pub queries: &'a StatesCorpus,
    /// The passage (text index in `docs`) each question is about.
    pub answers: &'a [usize],
    /// Passages that may be drawn into batches (the rest are held out for validation).
    pub train_docs: &'a [usize],
}

/// A trained network and its loss per step.
pub struct Trained {
    pub net: StageTwo,
    pub losses: Vec<f32>,
}

/// The corpus context of `data`'s texts with vectors pooled by `net` (stage two's
/// pooling, before the projection), as a collection would build it.
pub fn fit_context(
    base: &MiniLm,
    texts: &[&str],
    docs: &StatesCorpus,
    net: &StageTwo,
) -> Result<CorpusContext> {
    let mut context =
        CorpusContext::count_tokens(base, texts, Variant::Learned, ContextOptions::default())?;
    let pooled = {
        let weights = context.token_weights(base);
        docs.pool(&StageTwoPooler {
            net,
            idf: &weights,
            context: None,
            query: false,
        })?
    };
    context.fit(&pooled.concat())?;
    Ok(context)
}

/// Trains a fresh stage two on `data`; `on_step(step, loss)` after every step.
pub fn train(
    data: &TrainData<'_>,
    options: &TrainOptions,
    on_step: &mut dyn FnMut(usize, f32),
) -> Result<Trained> {
    let dim = data.docs.dim;
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    let net = StageTwo::load(
        vb,
        StageTwoConfig {
            dim,
            rank: options.rank,
        },
    )?;
    seed_down_projection(&map, dim, options.rank, options.seed)?;
    let mut questions_of: Vec<Vec<usize>> = vec![Vec::new(); data.docs.texts()];
    for (q, &d) in data.answers.iter().enumerate() {
        questions_of[d].push(q);
    }
    let candidates: Vec<usize> = data
        .train_docs
        .iter()
        .copied()
        .filter(|&d| !questions_of[d].is_empty())
        .collect();
    if candidates.len() < 2 {
        return Err(Error::InvalidContext(
            "training needs at least 2 passages with questions".into(),
        ));
    }
    let mut optimizer = AdamW::new(
        trainable(&map, &options.parts)?,
        ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: options.weight_decay,
            ..Default::default()
        },
    )?;
    let mut rng = SplitMix::new(options.seed);
    let mut losses = Vec::with_capacity(options.steps);
    let (mut context, mut clusters) = (None, Vec::new());
    for step in 0..options.steps {
        if step % options.refit_every.max(1) == 0 {
            let fitted = fit_context(data.base, data.texts, data.docs, &net)?;
            clusters = cluster_docs(data, &fitted, &net, &candidates, options)?;
            context = Some(fitted);
        }
        let fitted = context.as_ref().expect("fitted at step 0");
        let idf = fitted.token_weights(data.base);
        let tensors = ContextTensors::new(fitted)?;
        let docs = draw_batch(&clusters, &candidates, options.batch, &mut rng);
        let queries: Vec<usize> = docs
            .iter()
            .map(|&d| questions_of[d][rng.below(questions_of[d].len())])
            .collect();
        let loss = batch_loss(data, &net, &idf, &tensors, &docs, &queries, options)?;
        optimizer.backward_step(&loss)?;
        let value = loss.to_scalar::<f32>()?;
        losses.push(value);
        on_step(step, value);
    }
    Ok(Trained { net, losses })
}

/// The variables of the named parts; an unknown name is an error listing the known ones.
fn trainable(map: &VarMap, parts: &[String]) -> Result<Vec<candle_core::Var>> {
    let data = map.data().lock().expect("varmap lock");
    let mut vars = Vec::new();
    for part in parts {
        let (_, names) = PARTS.iter().find(|p| p.0 == part).ok_or_else(|| {
            Error::InvalidContext(format!(
                "unknown stage-two part '{part}': use some of {}",
                PARTS.map(|p| p.0).join(", ")
            ))
        })?;
        for name in *names {
            vars.push(
                data.get(*name)
                    .expect("stage two made its variables")
                    .clone(),
            );
        }
    }
    Ok(vars)
}

/// Replaces the random `down` projection with a seeded one (candle's CPU device cannot
/// be seeded), so the same options give the same weights: uniform with variance 1/dim.
fn seed_down_projection(map: &VarMap, dim: usize, rank: usize, seed: u64) -> Result<()> {
    let mut rng = SplitMix::new(seed ^ 0x5eed);
    let bound = (3.0 / dim as f32).sqrt();
    let values: Vec<f32> = (0..dim * rank)
        .map(|_| (rng.unit() * 2.0 - 1.0) * bound)
        .collect();
    let data = map.data().lock().expect("varmap lock");
    let var = data
        .get("down")
        .ok_or_else(|| Error::InvalidContext("stage two has no `down` weights".into()))?;
    var.set(&Tensor::from_vec(values, (dim, rank), &Device::Cpu)?)?;
    Ok(())
}

/// Groups the training passages by k-means over their mean window vectors (in the
/// context's space), about `batch` passages a cluster.
fn cluster_docs(
    data: &TrainData<'_>,
    context: &CorpusContext,
    net: &StageTwo,
    candidates: &[usize],
    options: &TrainOptions,
) -> Result<Vec<Vec<usize>>> {
    let idf = context.token_weights(data.base);
    let tensors = ContextTensors::new(context)?;
    let vectors = data.docs.pool(&StageTwoPooler {
        net,
        idf: &idf,
        context: Some(&tensors),
        query: false,
    })?;
    let dim = data.docs.dim;
    let mut means = Vec::with_capacity(candidates.len() * dim);
    for &d in candidates {
        let span = data.docs.span(d);
        let mut m = vec![0f32; dim];
        for v in &vectors[span] {
            m.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
        engram_kernels::normalize(&mut m);
        means.extend(m);
    }
    let k = (candidates.len() / options.batch.max(1)).max(1);
    let centroids = engram_kernels::kmeans(&means, dim, k, options.seed);
    let mut clusters = vec![Vec::new(); centroids.len() / dim];
    for (i, m) in means.chunks(dim).enumerate() {
        let best = centroids
            .chunks(dim)
            .map(|c| engram_kernels::dot(c, m))
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0, |(j, _)| j);
        clusters[best].push(candidates[i]);
    }
    clusters.retain(|c| !c.is_empty());
    Ok(clusters)
}

/// `batch` distinct passages: a random cluster's, topped up at random if it is small.
fn draw_batch(
    clusters: &[Vec<usize>],
    candidates: &[usize],
    batch: usize,
    rng: &mut SplitMix,
) -> Vec<usize> {
    let mut cluster = clusters[rng.below(clusters.len())].clone();
    shuffle(&mut cluster, rng);
    cluster.truncate(batch);
    let target = batch.min(candidates.len());
    while cluster.len() < target {
        let d = candidates[rng.below(candidates.len())];
        if !cluster.contains(&d) {
            cluster.push(d);
        }
    }
    cluster
}

fn shuffle<T>(xs: &mut [T], rng: &mut SplitMix) {
    for i in (1..xs.len()).rev() {
        xs.swap(i, rng.below(i + 1));
    }
}

/// InfoNCE of `queries[i]` against passage `docs[i]`, the other passages negatives; a
/// passage scores its best window.
fn batch_loss(
    data: &TrainData<'_>,
    net: &StageTwo,
    idf: &(dyn Fn(u32) -> f32 + Sync),
    context: &ContextTensors,
    docs: &[usize],
    queries: &[usize],
    options: &TrainOptions,
) -> Result<Tensor> {
    let embed = |corpus: &StatesCorpus, windows: &[usize], query: bool| -> Result<Tensor> {
        let (states, seqs) = corpus.batch(windows)?;
        let weights = padded(&seqs, states.dim(1)?, idf)?;
        net.project(&net.pool(&states, &weights, query)?, context)
    };
    let mut windows = Vec::new();
    let mut owner = Vec::new();
    for (j, &d) in docs.iter().enumerate() {
        for w in data.docs.span(d) {
            windows.push(w);
            owner.push(j);
        }
    }
    let query_windows: Vec<usize> = queries
        .iter()
        .map(|&q| data.queries.span(q).start)
        .collect();
    let d = embed(data.docs, &windows, false)?;
    let q = embed(data.queries, &query_windows, true)?;
    let n = docs.len();
    // (passage, window) mask: 0 for the passage's own windows, very negative elsewhere.
    let mut mask = vec![-1e4f32; n * windows.len()];
    for (w, &j) in owner.iter().enumerate() {
        mask[j * windows.len() + w] = 0.0;
    }
    let mask = Tensor::from_vec(mask, (1, n, windows.len()), &Device::Cpu)?;
    let scores = q
        .matmul(&d.t()?)?
        .unsqueeze(1)?
        .broadcast_add(&mask)?
        .max(D::Minus1)?
        .affine(1.0 / options.temperature, 0.0)?;
    let targets = Tensor::arange(0u32, n as u32, &Device::Cpu)?;
    Ok(candle_nn::loss::cross_entropy(&scores, &targets)?)
}

/// Exact search by every query over every passage (a passage scores its best window):
/// the top `k` passage indices of each query, best first.
pub fn rank_passages(
    window_vectors: &[Vec<f32>],
    docs: &StatesCorpus,
    query_vectors: &[Vec<f32>],
    k: usize,
) -> Result<Vec<Vec<usize>>> {
    let dim = docs.dim;
    let windows = Tensor::from_vec(
        window_vectors.concat(),
        (window_vectors.len(), dim),
        &Device::Cpu,
    )?
    .t()?;
    let mut out = Vec::with_capacity(query_vectors.len());
    for block in query_vectors.chunks(256) {
        let q = Tensor::from_vec(block.concat(), (block.len(), dim), &Device::Cpu)?;
        let scores = q.matmul(&windows)?.to_vec2::<f32>()?;
        for row in scores {
            let mut best: Vec<(f32, usize)> = (0..docs.texts())
                .map(|t| {
                    let s = row[docs.span(t)].iter().copied().fold(f32::MIN, f32::max);
                    (s, t)
                })
                .collect();
            let k = k.min(best.len());
            if k == 0 {
                out.push(Vec::new());
                continue;
            }
            best.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            best.truncate(k);
            best.sort_by(|a, b| b.0.total_cmp(&a.0));
            out.push(best.into_iter().map(|(_, t)| t).collect());
        }
    }
    Ok(out)
}

/// One vector per window (or per query).
type Vectors = Vec<Vec<f32>>;

/// Window vectors of `docs` and query vectors of `queries` under `variant` (`net` for
/// the learned one), with the context built from all of `texts`, as a collection
/// holding exactly these passages would make them. `None` variant: plain MiniLM.
pub fn variant_vectors(
    base: &MiniLm,
    texts: &[&str],
    docs: &StatesCorpus,
    queries: &StatesCorpus,
    variant: Option<Variant>,
    net: &StageTwo,
) -> Result<(Vectors, Vectors)> {
    use crate::minilm::WeightedMean;
    let Some(variant) = variant else {
        let plain = WeightedMean(None);
        return Ok((docs.pool(&plain)?, queries.pool(&plain)?));
    };
    if variant == Variant::Learned {
        let context = fit_context(base, texts, docs, net)?;
        let idf = context.token_weights(base);
        let tensors = ContextTensors::new(&context)?;
        let pooler = |query| StageTwoPooler {
            net,
            idf: &idf,
            context: Some(&tensors),
            query,
        };
        return Ok((docs.pool(&pooler(false))?, queries.pool(&pooler(true))?));
    }
    let mut context = CorpusContext::count_tokens(base, texts, variant, ContextOptions::default())?;
    let (d, q) = {
        let weights = context.token_weights(base);
        let pooler = WeightedMean(variant.idf_pooling().then_some(&weights as _));
        (docs.pool(&pooler)?, queries.pool(&pooler)?)
    };
    context.fit(&d.concat())?;
    let transform = |vs: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        vs.into_iter().map(|v| context.transform(v)).collect()
    };
    Ok((transform(d), transform(q)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minilm::tests::tiny;
    use crate::minilm::WeightedMean;
    use crate::TextEncoder;

    /// Passages over a five-word vocabulary and a question per passage that names its
    /// rarest words.
    fn toy() -> (Vec<&'static str>, Vec<&'static str>, Vec<usize>) {
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
        let base = tiny();
        let (texts, _, _) = toy();
        let corpus =
            StatesCorpus::embed(&base, &texts, Some(Chunking::default()), &mut |_| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("states.bin");
        corpus.write(&path).unwrap();
        let back = StatesCorpus::read(&path).unwrap();
        assert_eq!(back.spans, corpus.spans);
        assert_eq!(
            back.pool(&WeightedMean(None)).unwrap(),
            corpus.pool(&WeightedMean(None)).unwrap()
        );
        std::fs::write(&path, b"EST1junk").unwrap();
        assert!(StatesCorpus::read(&path).is_err());
    }

    #[test]
    fn training_lowers_the_loss_and_moves_every_weight() {
        let base = tiny();
        let (texts, questions, answers) = toy();
        let docs =
            StatesCorpus::embed(&base, &texts, Some(Chunking::default()), &mut |_| {}).unwrap();
        let queries = StatesCorpus::embed(&base, &questions, None, &mut |_| {}).unwrap();
        let train_docs: Vec<usize> = (0..texts.len()).collect();
        let data = TrainData {
            base: &base,
            texts: &texts,
            docs: &docs,
            queries: &queries,
            answers: &answers,
            train_docs: &train_docs,
        };
        let options = TrainOptions {
            parts: TrainOptions::default().parts,
            steps: 60,
            batch: 8,
            learning_rate: 0.05,
            weight_decay: 0.0,
            rank: 2,
            temperature: 0.1,
            refit_every: 20,
            seed: 3,
        };
        let trained = train(&data, &options, &mut |_, _| {}).unwrap();
        let first: f32 = trained.losses[..5].iter().sum();
        let last: f32 = trained.losses[55..].iter().sum();
        assert!(last < first * 0.9, "loss {first} -> {last}");
        // Every piece left its identity initialisation (each gets a gradient).
        let [idf_power, mix, sharpness, gate, query_gate, up] = trained.net.summary().unwrap();
        assert!((idf_power - 1.0).abs() > 1e-4, "idf exponent {idf_power}");
        assert!(mix.abs() > 1e-4, "centroid mix {mix}");
        assert!((sharpness - 10.0).abs() > 1e-3, "sharpness {sharpness}");
        assert!(
            gate > 1e-4 && query_gate > 1e-4 && up > 1e-4,
            "gate {gate}, query gate {query_gate}, up {up}"
        );
        // Same options, same weights.
        let again = train(&data, &options, &mut |_, _| {}).unwrap();
        assert_eq!(again.losses, trained.losses);
    }

    #[test]
    fn ranking_scores_a_passage_by_its_best_window() {
        let base = tiny();
        let texts = ["alpha beta", "gamma delta eps gamma"];
        let chunking = Chunking {
            tokens: 4,
            overlap: 0,
        };
        let docs = StatesCorpus::embed(&base, &texts, Some(chunking), &mut |_| {}).unwrap();
        assert_eq!(docs.span(1).len(), 2);
        // Window vectors chosen by hand: text 1's second window matches the query.
        let windows = [
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.6, 0.8],
            vec![0.0, 0.0],
        ];
        let docs = StatesCorpus { dim: 2, ..docs };
        let ranked =
            rank_passages(&windows[..docs.windows()], &docs, &[vec![0.6, 0.8]], 2).unwrap();
        assert_eq!(ranked, vec![vec![1, 0]]);
    }
}
