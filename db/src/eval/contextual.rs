//! Contextual embeddings on a whole dataset: every variant in one table, and the
//! encoders' embedding times (`engram eval contextual`); training the learned stage
//! two on a dataset and validating it (`engram train contextual`).
//!
//! Why not through the store like `engram eval retrieval`: the store embeds each
//! variant's collection separately, about 40 minutes per variant over Quoref's 2,942
//! passages on two cores. Here MiniLM runs once; its token states are kept and every
//! variant pools them with the same poolers the live encoders use, then exact search
//! (a passage scores its best 64-token window, as a collection stores it) ranks all
//! passages for every question.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use engram_embedder::stage_two_eval::{rank_passages, variant_vectors};
use engram_embedder::stage_two_train::{self, TrainData, TrainOptions, Trained};
use engram_embedder::states_corpus::StatesCorpus;
use engram_embedder::{
    Chunking, ContextOptions, ContextualEncoder, CorpusContext, MiniLm, StageTwo, TextEncoder,
    Variant,
};

use super::dataset::{load, Dataset, Passage};
use super::metrics::{MeanMetrics, RetrievalMetrics};
use super::Progress;
use crate::error::Result;

/// A dataset file's first passages and their questions, run through stage one once
/// (or read back from the states cache), with what identifies the data in reports.
pub struct DatasetStates {
    pub dataset: Dataset,
    /// The file read.
    pub path: PathBuf,
    /// The file's SHA-256.
    pub sha256: String,
    /// Passages used.
    pub passages: usize,
    pub cache: StateCache,
}

/// Every variant's figures on one dataset, and which data they were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetFigures {
    pub dataset: &'static str,
    pub data_sha256: String,
    pub passages: usize,
    pub questions: usize,
    pub rows: Vec<VariantRow>,
}

impl DatasetStates {
    /// Reads `dataset` from `data` (default: where the extraction script puts it),
    /// keeps its first `limit` passages, and takes their token states from
    /// `states_dir` when they are kept there (keyed by the dataset, the file's hash
    /// and the passages used), else from stage one (then keeps them there).
    pub fn load(
        base: &MiniLm,
        dataset: Dataset,
        data: Option<&Path>,
        limit: Option<usize>,
        states_dir: Option<&Path>,
        progress: &dyn Progress,
    ) -> Result<DatasetStates> {
        let path = dataset.locate(data)?;
        let mut passages = load(&path)?;
        if let Some(n) = limit {
            passages.truncate(n);
        }
        let sha256 = engram_models::sha256_file(&path).map_err(engram_embedder::Error::from)?;
        let key = format!("{}-{}-{}", dataset.name(), &sha256[..12], passages.len());
        let cache = StateCache::load_or_build(base, &passages, states_dir, &key, progress)?;
        Ok(DatasetStates {
            dataset,
            path,
            sha256,
            passages: passages.len(),
            cache,
        })
    }

    /// Every variant over all of the dataset's questions, the learned one with `net`.
    pub fn figures(&self, base: &MiniLm, net: &StageTwo) -> Result<DatasetFigures> {
        Ok(DatasetFigures {
            dataset: self.dataset.name(),
            data_sha256: self.sha256.clone(),
            passages: self.passages,
            questions: self.cache.answers.len(),
            rows: evaluate(base, &self.cache, net, None)?,
        })
    }
}

/// A dataset's passages and questions run through stage one once.
pub struct StateCache {
    pub texts: Vec<String>,
    pub docs: StatesCorpus,
    pub queries: StatesCorpus,
    /// The passage each question is about.
    pub answers: Vec<usize>,
}

impl StateCache {
    /// Embeds every passage (default 64-token windows) and every question.
    pub fn build(base: &MiniLm, passages: &[Passage], progress: &dyn Progress) -> Result<Self> {
        let texts: Vec<&str> = passages.iter().map(|p| p.text.as_str()).collect();
        let questions: Vec<&str> = passages
            .iter()
            .flat_map(|p| p.questions.iter().map(|q| q.as_str()))
            .collect();
        let docs = embed(
            base,
            &texts,
            Some(Chunking::default()),
            "passages",
            progress,
        )?;
        let queries = embed(base, &questions, None, "questions", progress)?;
        Ok(StateCache::build_from(passages, docs, queries))
    }

    /// [`StateCache::build`], reading (or writing) the token states from `dir`
    /// under `key` (which should name the dataset file's content and the passages used).
    /// Files that do not hold those states (an older Engram's among them) are rebuilt.
    pub fn load_or_build(
        base: &MiniLm,
        passages: &[Passage],
        dir: Option<&Path>,
        key: &str,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let Some(dir) = dir else {
            return StateCache::build(base, passages, progress);
        };
        let (docs_key, queries_key) = (format!("{key}-passages"), format!("{key}-questions"));
        let (docs_path, queries_path) = (
            dir.join(format!("{docs_key}.bin")),
            dir.join(format!("{queries_key}.bin")),
        );
        // The questions' file first: it is the small one.
        if let Some(queries) = StatesCorpus::read(&queries_path, &queries_key)? {
            if let Some(docs) = StatesCorpus::read(&docs_path, &docs_key)? {
                let built = StateCache::build_from(passages, docs, queries);
                if built.docs.texts() == passages.len()
                    && built.queries.texts() == built.answers.len()
                {
                    return Ok(built);
                }
            }
        }
        let cache = StateCache::build(base, passages, progress)?;
        std::fs::create_dir_all(dir)?;
        cache.docs.write(&docs_path, &docs_key)?;
        cache.queries.write(&queries_path, &queries_key)?;
        Ok(cache)
    }

    fn build_from(passages: &[Passage], docs: StatesCorpus, queries: StatesCorpus) -> Self {
        let texts = passages.iter().map(|p| p.text.clone()).collect();
        let answers = passages
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.questions.iter().map(move |_| i))
            .collect();
        StateCache {
            texts,
            docs,
            queries,
            answers,
        }
    }

    fn text_refs(&self) -> Vec<&str> {
        self.texts.iter().map(|s| s.as_str()).collect()
    }
}

fn embed(
    base: &MiniLm,
    texts: &[&str],
    chunking: Option<Chunking>,
    what: &str,
    progress: &dyn Progress,
) -> Result<StatesCorpus> {
    progress.begin(&format!("stage one: {what}"), texts.len());
    let mut shown = 0;
    let corpus = StatesCorpus::embed(base, texts, chunking, &mut |done| {
        progress.advance(done - shown);
        shown = done;
    })?;
    progress.end();
    Ok(corpus)
}

/// One encoder's row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct VariantRow {
    pub encoder: String,
    pub metrics: RetrievalMetrics,
}

/// Every encoder (plain MiniLM, each training-free variant, the learned one with
/// `net`) over the cache; only the questions in `queries` when given (a validation
/// split), against all passages.
pub fn evaluate(
    base: &MiniLm,
    cache: &StateCache,
    net: &StageTwo,
    queries: Option<&[usize]>,
) -> Result<Vec<VariantRow>> {
    let texts = cache.text_refs();
    let variants = std::iter::once(None).chain(Variant::ALL.into_iter().map(Some));
    let mut rows = Vec::new();
    for variant in variants {
        let (docs, mut qs) =
            variant_vectors(base, &texts, &cache.docs, &cache.queries, variant, net)?;
        let mut answers = cache.answers.clone();
        if let Some(keep) = queries {
            qs = keep.iter().map(|&q| std::mem::take(&mut qs[q])).collect();
            answers = keep.iter().map(|&q| cache.answers[q]).collect();
        }
        let ranked = rank_passages(&docs, &cache.docs, &qs, 10)?;
        let mut mean = MeanMetrics::default();
        for (r, a) in ranked.iter().zip(&answers) {
            mean.add(r, &[*a]);
        }
        rows.push(VariantRow {
            encoder: variant.map_or("minilm".to_string(), |v| format!("contextual-{}", v.name())),
            metrics: mean.mean(),
        });
    }
    Ok(rows)
}

/// The rows as a Markdown table, the best nDCG@10 in bold.
pub fn table(rows: &[VariantRow]) -> String {
    let best = rows
        .iter()
        .map(|r| r.metrics.ndcg_at_10)
        .fold(f64::MIN, f64::max);
    let mut s = String::from(
        "| encoder | nDCG@10 | recall@1 | recall@10 | MRR@10 |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let m = &r.metrics;
        let name = if m.ndcg_at_10 == best {
            format!("**{}**", r.encoder)
        } else {
            r.encoder.clone()
        };
        s.push_str(&format!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            m.ndcg_at_10, m.recall_at_1, m.recall_at_10, m.mrr_at_10
        ));
    }
    s
}

/// Every `every`-th passage is held out of training (validation); its questions
/// are the validation questions.
fn split(cache: &StateCache, every: usize) -> (Vec<usize>, Vec<usize>) {
    let held = |d: usize| every > 0 && d % every == every - 1;
    let train_docs = (0..cache.docs.texts()).filter(|&d| !held(d)).collect();
    let val_queries = (0..cache.answers.len())
        .filter(|&q| held(cache.answers[q]))
        .collect();
    (train_docs, val_queries)
}

/// What [`train_and_validate`] made and measured.
pub struct ValidatedTraining {
    pub trained: Trained,
    /// Training time.
    pub seconds: f64,
    /// Validation questions: those of every `validate_every`-th passage.
    pub questions: usize,
    /// Every variant (the learned one with the new network) on those questions.
    pub rows: Vec<VariantRow>,
}

/// Trains stage two on the cache's passages but every `validate_every`-th, then
/// evaluates every variant on the held-out passages' questions (against all
/// passages); `progress` counts training steps.
pub fn train_and_validate(
    base: &MiniLm,
    cache: &StateCache,
    validate_every: usize,
    options: &TrainOptions,
    progress: &dyn Progress,
) -> Result<ValidatedTraining> {
    let (train_docs, val_queries) = split(cache, validate_every);
    let texts = cache.text_refs();
    let data = TrainData {
        base,
        texts: &texts,
        docs: &cache.docs,
        queries: &cache.queries,
        answers: &cache.answers,
        train_docs: &train_docs,
        groups: None,
    };
    let started = Instant::now();
    progress.begin("training stage two", options.steps);
    let trained = stage_two_train::train(&data, options, &mut |_, _| progress.advance(1))?;
    progress.end();
    let seconds = started.elapsed().as_secs_f64();
    let rows = evaluate(base, cache, &trained.net, Some(&val_queries))?;
    Ok(ValidatedTraining {
        trained,
        seconds,
        questions: val_queries.len(),
        rows,
    })
}

/// Seconds per text to embed `texts` (chunked, as a collection stores them) with
/// MiniLM and with each contextual encoder (its context built from `texts`), by
/// encoder name: the median of `rounds` alternating rounds.
pub fn encoder_timings(texts: &[&str], rounds: usize) -> Result<Vec<(String, f64)>> {
    let base = engram_embedder::shared_minilm()?;
    let mut encoders: Vec<Arc<dyn TextEncoder>> = vec![base.clone()];
    for variant in [Variant::IdfWhiten, Variant::Learned] {
        let context = CorpusContext::build(
            &base,
            texts,
            Chunking::default(),
            variant,
            ContextOptions::default(),
        )?;
        encoders.push(Arc::new(ContextualEncoder::new(
            base.clone(),
            Arc::new(context),
        )));
    }
    let mut times = vec![Vec::new(); encoders.len()];
    for _ in 0..rounds {
        for (e, t) in encoders.iter().zip(&mut times) {
            let started = Instant::now();
            e.embed_chunked(texts, Chunking::default())?;
            t.push(started.elapsed().as_secs_f64() / texts.len() as f64);
        }
    }
    Ok(encoders
        .iter()
        .zip(times)
        .map(|(e, mut t)| {
            t.sort_by(f64::total_cmp);
            (e.name().to_string(), t[t.len() / 2])
        })
        .collect())
}
