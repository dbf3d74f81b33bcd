//! Measuring stage two on cached token states ([`crate::states_corpus`]): the
//! vectors every variant gives a corpus and its questions, and exact search over
//! them. `engram eval contextual` and `engram train contextual`'s validation use it.
//!
//! Why not through a collection: a collection embeds each variant separately, with
//! stage one every time. Here the cached states are pooled by the same poolers the
//! live encoders use (a test in `tests/contextual.rs` checks the learned variant
//! against its live encoder), and a passage scores its best window, as a collection
//! stores it.

use candle_core::{Device, Tensor};

use crate::context::{ContextOptions, CorpusContext, Variant};
use crate::error::Result;
use crate::minilm::{MiniLm, WeightedMean};
use crate::stage_two::{ContextTensors, StageTwo, StageTwoPooler};
use crate::stage_two_train::fit_context;
use crate::states_corpus::StatesCorpus;

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
    use crate::encoder::Chunking;
    use crate::minilm::tests::tiny;

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
