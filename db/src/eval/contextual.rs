//! Contextual embeddings on a whole dataset: every variant in one table
//! (`engram eval contextual`), and training the learned stage two
//! (`engram train contextual`).
//!
//! Why not through the store like `engram eval retrieval`: the store embeds each
//! variant's collection separately, about 40 minutes per variant over Quoref's 2,942
//! passages on two cores. Here MiniLM runs once; its token states are kept and every
//! variant pools them with the same poolers the live encoders use, then exact search
//! (a passage scores its best 64-token window, as a collection stores it) ranks all
//! passages for every question.

use serde::Serialize;

use engram_embedder::stage_two_train::{
    self, rank_passages, variant_vectors, StatesCorpus, TrainData, TrainOptions,
};
use engram_embedder::{Chunking, MiniLm, StageTwo, Variant};

use super::dataset::Passage;
use super::metrics::{MeanMetrics, RetrievalMetrics};
use super::Progress;
use crate::error::Result;

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
    pub fn load_or_build(
        base: &MiniLm,
        passages: &[Passage],
        dir: Option<&std::path::Path>,
        key: &str,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let Some(dir) = dir else {
            return StateCache::build(base, passages, progress);
        };
        let (docs_path, queries_path) = (
            dir.join(format!("{key}-passages.bin")),
            dir.join(format!("{key}-questions.bin")),
        );
        if docs_path.exists() && queries_path.exists() {
            let docs = StatesCorpus::read(&docs_path)?;
            let queries = StatesCorpus::read(&queries_path)?;
            let built = StateCache::build_from(passages, docs, queries);
            if built.docs.texts() == passages.len() && built.queries.texts() == built.answers.len()
            {
                return Ok(built);
            }
        }
        let cache = StateCache::build(base, passages, progress)?;
        std::fs::create_dir_all(dir)?;
        cache.docs.write(&docs_path)?;
        cache.queries.write(&queries_path)?;
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
pub fn split(cache: &StateCache, every: usize) -> (Vec<usize>, Vec<usize>) {
    let held = |d: usize| every > 0 && d % every == every - 1;
    let train_docs = (0..cache.docs.texts()).filter(|&d| !held(d)).collect();
    let val_queries = (0..cache.answers.len())
        .filter(|&q| held(cache.answers[q]))
        .collect();
    (train_docs, val_queries)
}

/// Trains stage two on the cache's training split; `progress` counts steps.
pub fn train(
    base: &MiniLm,
    cache: &StateCache,
    train_docs: &[usize],
    options: &TrainOptions,
    progress: &dyn Progress,
) -> Result<stage_two_train::Trained> {
    let texts = cache.text_refs();
    let data = TrainData {
        base,
        texts: &texts,
        docs: &cache.docs,
        queries: &cache.queries,
        answers: &cache.answers,
        train_docs,
    };
    progress.begin("training stage two", options.steps);
    let trained = stage_two_train::train(&data, options, &mut |_, _| progress.advance(1))?;
    progress.end();
    Ok(trained)
}
