//! Stage two trained on a mix of corpora (`engram train contextual-mix`): each corpus
//! of the mix keeps its own context, as each would be a collection of its own, and the
//! corpora left out of the mix are measured with `engram eval contextual-sizes
//! --weights`.
//!
//! Why: the shipped stage two learned DROP alone and learned DROP's question style; on
//! the niche corpora it loses to MiniLM by 5 to 20 points. A niche corpus's queries
//! have many relevant documents (every document of the query's entity and topic): each
//! query is paired with up to [`PAIRS_PER_QUERY`] of them, and documents of one entity
//! and topic are never each other's negatives (the trainer's `groups`).

use std::collections::HashMap;

use engram_embedder::stage_two_train::{self, TrainData, TrainOptions, Trained};
use engram_embedder::states_corpus::StatesCorpus;
use engram_embedder::MiniLm;

use super::contextual_sizes::Corpus;
use crate::error::Result;

/// Relevant documents each query is paired with (spread evenly over its relevant set).
pub const PAIRS_PER_QUERY: usize = 8;

/// One corpus of the mix, embedded by stage one once.
pub struct MixMember {
    pub name: String,
    pub texts: Vec<String>,
    pub docs: StatesCorpus,
    /// One entry per (query, relevant document) pair.
    pub queries: StatesCorpus,
    pub answers: Vec<usize>,
    pub groups: Vec<usize>,
}

/// The (query text, document) pairs of `corpus`, at most `per_query` per query.
pub fn pairs(corpus: &Corpus, per_query: usize) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    for (q, rel) in corpus.queries.iter().zip(&corpus.relevant) {
        let n = rel.len().min(per_query);
        for i in 0..n {
            out.push((q.as_str(), rel[i * rel.len() / n]));
        }
    }
    out
}

/// A label per document: documents relevant to exactly the same queries share one.
pub fn groups(corpus: &Corpus) -> Vec<usize> {
    let mut of_doc: Vec<Vec<usize>> = vec![Vec::new(); corpus.texts.len()];
    for (q, rel) in corpus.relevant.iter().enumerate() {
        for &d in rel {
            of_doc[d].push(q);
        }
    }
    let mut ids: HashMap<Vec<usize>, usize> = HashMap::new();
    of_doc
        .into_iter()
        .enumerate()
        .map(|(d, qs)| {
            if qs.is_empty() {
                // Relevant to nothing: never drawn, but never anyone's twin either.
                return usize::MAX - d;
            }
            let next = ids.len();
            *ids.entry(qs).or_insert(next)
        })
        .collect()
}

impl MixMember {
    /// Embeds `corpus` (documents chunked as a collection stores them) and its pairs.
    pub fn embed(base: &MiniLm, corpus: &Corpus) -> Result<MixMember> {
        let texts: Vec<&str> = corpus.texts.iter().map(|t| t.as_str()).collect();
        let pairs = pairs(corpus, PAIRS_PER_QUERY);
        let query_texts: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        let chunking = engram_embedder::Chunking::default();
        Ok(MixMember {
            name: corpus.name.clone(),
            texts: corpus.texts.clone(),
            docs: StatesCorpus::embed(base, &texts, Some(chunking), &mut |_| {})?,
            queries: StatesCorpus::embed(base, &query_texts, None, &mut |_| {})?,
            answers: pairs.iter().map(|p| p.1).collect(),
            groups: groups(corpus),
        })
    }
}

/// Trains a fresh stage two on every document and pair of `members`.
pub fn train(
    base: &MiniLm,
    members: &[MixMember],
    options: &TrainOptions,
    on_step: &mut dyn FnMut(usize, f32),
) -> Result<Trained> {
    let texts: Vec<Vec<&str>> = members
        .iter()
        .map(|m| m.texts.iter().map(|t| t.as_str()).collect())
        .collect();
    let all: Vec<Vec<usize>> = members
        .iter()
        .map(|m| (0..m.texts.len()).collect())
        .collect();
    let data: Vec<TrainData<'_>> = members
        .iter()
        .zip(&texts)
        .zip(&all)
        .map(|((m, t), a)| TrainData {
            base,
            texts: t,
            docs: &m.docs,
            queries: &m.queries,
            answers: &m.answers,
            train_docs: a,
            groups: Some(&m.groups),
        })
        .collect();
    Ok(stage_two_train::train_mix(&data, options, on_step)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Corpus {
        Corpus {
            name: "toy".into(),
            texts: (0..6).map(|i| format!("doc {i}")).collect(),
            queries: vec!["a".into(), "b".into(), "c".into()],
            relevant: vec![vec![0, 1, 2], vec![3], vec![0, 1, 2]],
        }
    }

    #[test]
    fn pairs_spread_over_the_relevant_documents() {
        let c = corpus();
        assert_eq!(
            pairs(&c, 2),
            vec![("a", 0), ("a", 1), ("b", 3), ("c", 0), ("c", 1)]
        );
        assert_eq!(pairs(&c, 8).len(), 7);
    }

    #[test]
    fn documents_relevant_to_the_same_queries_share_a_group() {
        let g = groups(&corpus());
        assert_eq!(g[0], g[1]);
        assert_eq!(g[1], g[2]);
        assert_ne!(g[0], g[3]);
        // Documents relevant to nothing are each their own.
        assert_ne!(g[4], g[5]);
        assert_ne!(g[4], g[0]);
    }
}
