//! Training the learned stage two ([`crate::stage_two`]) contrastively, on token
//! states stage one computed once ([`crate::states_corpus`]).
//!
//! The objective is CDE's: InfoNCE between a question and its passage (the passage's
//! score is its best window's), with the other passages of the batch as negatives, and
//! every batch drawn from one k-means cluster of the corpus, so the negatives are the
//! hard, same-topic ones a niche collection is full of. Writing what training made is
//! `stage_two_artifact.rs`; measuring it, `stage_two_eval.rs`.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use engram_kernels::SplitMix;

use crate::context::{ContextOptions, CorpusContext, Variant};
use crate::error::{Error, Result};
use crate::minilm::{padded, MiniLm};
use crate::stage_two::{ContextTensors, StageTwo, StageTwoConfig, StageTwoPooler, PARTS};
use crate::states_corpus::StatesCorpus;

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
#[derive(Clone, Copy)]
pub struct TrainData<'a> {
    pub base: &'a MiniLm,
    pub texts: &'a [&'a str],
    pub docs: &'a StatesCorpus,
    pub queries: &'a StatesCorpus,
    /// The passage (text index in `docs`) each question is about.
    pub answers: &'a [usize],
    /// Passages that may be drawn into batches (the rest are held out for validation).
    pub train_docs: &'a [usize],
    /// A label per passage; passages sharing one are never negatives of each other
    /// (a niche corpus's documents of one entity and topic all answer its queries).
    /// `None`: every passage is its own.
    pub groups: Option<&'a [usize]>,
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
    train_mix(std::slice::from_ref(data), options, on_step)
}

/// One corpus of a training mix while it trains: which passages have questions, and
/// its context and clusters as last refit.
struct Member {
    questions_of: Vec<Vec<usize>>,
    candidates: Vec<usize>,
    context: Option<CorpusContext>,
    clusters: Vec<Vec<usize>>,
}

/// Trains a fresh stage two on a mix of corpora, each with its own context (as each
/// would be a collection of its own): step `s` draws its batch from corpus
/// `s % data.len()`. Why a mix: stage two learned from one corpus learns that corpus's
/// question style; whole corpora are then left out of the mix to measure it.
pub fn train_mix(
    data: &[TrainData<'_>],
    options: &TrainOptions,
    on_step: &mut dyn FnMut(usize, f32),
) -> Result<Trained> {
    let Some(first) = data.first() else {
        return Err(Error::InvalidContext(
            "training needs at least 1 corpus".into(),
        ));
    };
    let dim = first.docs.dim;
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
    let mut members = Vec::with_capacity(data.len());
    for d in data {
        let mut questions_of: Vec<Vec<usize>> = vec![Vec::new(); d.docs.texts()];
        for (q, &p) in d.answers.iter().enumerate() {
            questions_of[p].push(q);
        }
        let candidates: Vec<usize> = d
            .train_docs
            .iter()
            .copied()
            .filter(|&p| !questions_of[p].is_empty())
            .collect();
        if candidates.len() < 2 {
            return Err(Error::InvalidContext(
                "training needs at least 2 passages with questions in every corpus".into(),
            ));
        }
        members.push(Member {
            questions_of,
            candidates,
            context: None,
            clusters: Vec::new(),
        });
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
    for step in 0..options.steps {
        let (d, m) = (&data[step % data.len()], &mut members[step % data.len()]);
        if (step / data.len()).is_multiple_of(options.refit_every.max(1)) {
            let fitted = fit_context(d.base, d.texts, d.docs, &net)?;
            m.clusters = cluster_docs(d, &fitted, &net, &m.candidates, options)?;
            m.context = Some(fitted);
        }
        let fitted = m.context.as_ref().expect("fitted at its first step");
        let idf = fitted.token_weights(d.base);
        let tensors = ContextTensors::new(fitted)?;
        let docs = draw_batch(
            &m.clusters,
            &m.candidates,
            d.groups,
            options.batch,
            &mut rng,
        );
        let queries: Vec<usize> = docs
            .iter()
            .map(|&p| m.questions_of[p][rng.below(m.questions_of[p].len())])
            .collect();
        let loss = batch_loss(d, &net, &idf, &tensors, &docs, &queries, options)?;
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

/// `batch` distinct passages of distinct `groups`: a random cluster's, topped up at
/// random if it is small (fewer where the candidates hold fewer groups).
fn draw_batch(
    clusters: &[Vec<usize>],
    candidates: &[usize],
    groups: Option<&[usize]>,
    batch: usize,
    rng: &mut SplitMix,
) -> Vec<usize> {
    let group = |d: usize| groups.map_or(d, |g| g[d]);
    let mut cluster = clusters[rng.below(clusters.len())].clone();
    shuffle(&mut cluster, rng);
    let mut seen = std::collections::HashSet::new();
    cluster.retain(|&d| seen.insert(group(d)));
    cluster.truncate(batch);
    let available = candidates
        .iter()
        .map(|&d| group(d))
        .collect::<std::collections::HashSet<_>>()
        .len();
    let target = batch.min(available);
    while cluster.len() < target {
        let d = candidates[rng.below(candidates.len())];
        if seen.insert(group(d)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minilm::tests::tiny;
    use crate::states_corpus::tests::{toy, toy_states};

    /// Runs `f` on the toy corpus's training data (every passage trains, no groups).
    fn with_toy_data<R>(f: impl FnOnce(TrainData<'_>) -> R) -> R {
        let base = tiny();
        let (texts, _, answers) = toy();
        let (docs, queries) = toy_states(&base);
        let train_docs: Vec<usize> = (0..texts.len()).collect();
        f(TrainData {
            base: &base,
            texts: &texts,
            docs: &docs,
            queries: &queries,
            answers: &answers,
            train_docs: &train_docs,
            groups: None,
        })
    }

    #[test]
    fn training_lowers_the_loss_and_moves_every_weight() {
        with_toy_data(|data| {
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
        });
    }

    #[test]
    fn a_batch_holds_one_passage_per_group() {
        let mut rng = SplitMix::new(5);
        let candidates: Vec<usize> = (0..12).collect();
        let clusters = vec![candidates[..6].to_vec(), candidates[6..].to_vec()];
        // Passages 0-3, 4-7 and 8-11 answer the same queries: three groups.
        let groups: Vec<usize> = (0..12).map(|d| d / 4).collect();
        for _ in 0..20 {
            let batch = draw_batch(&clusters, &candidates, Some(&groups), 8, &mut rng);
            let mut g: Vec<usize> = batch.iter().map(|&d| groups[d]).collect();
            g.sort();
            assert_eq!(g, vec![0, 1, 2], "{batch:?}");
        }
        // Without groups, every passage is its own.
        let batch = draw_batch(&clusters, &candidates, None, 8, &mut rng);
        let mut sorted = batch.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 8, "{batch:?}");
    }

    #[test]
    fn a_mix_trains_on_each_corpus_with_its_own_context() {
        with_toy_data(|one| {
            let groups: Vec<usize> = (0..one.texts.len()).map(|d| d / 2).collect();
            let grouped = TrainData {
                groups: Some(&groups),
                ..one
            };
            let options = TrainOptions {
                steps: 10,
                batch: 4,
                rank: 2,
                refit_every: 2,
                ..TrainOptions::default()
            };
            let mix = train_mix(&[one, grouped], &options, &mut |_, _| {}).unwrap();
            assert_eq!(mix.losses.len(), 10);
            assert!(mix.losses.iter().all(|l| l.is_finite()));
            let again = train_mix(&[one, grouped], &options, &mut |_, _| {}).unwrap();
            assert_eq!(again.losses, mix.losses);
            assert!(train_mix(&[], &options, &mut |_, _| {}).is_err());
        });
    }
}
