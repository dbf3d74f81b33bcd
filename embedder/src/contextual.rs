//! Stage two of the contextual embedder: MiniLM conditioned on a [`CorpusContext`].
//!
//! Why a separate encoder rather than a post-processing step in the database: documents
//! and queries must go through exactly the same corpus-aware pipeline (idf-weighted
//! pooling needs the token states, which only the encoder sees), and the database must
//! not care which variant a collection uses: it holds a `dyn TextEncoder` either way.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::context::{CorpusContext, Variant};
use crate::encoder::{Chunk, Chunking, TextEncoder};
use crate::error::Result;
use crate::minilm::{into_chunks, MiniLm, Pooler, WeightedMean};
use crate::stage_two::{ContextTensors, StageTwo, StageTwoPooler};

/// Prefix of every contextual encoder's name (`contextual-<variant>`).
pub const NAME_PREFIX: &str = "contextual-";

/// MiniLM (stage one) plus a corpus context (what stage two conditions on).
pub struct ContextualEncoder {
    base: Arc<MiniLm>,
    context: Arc<CorpusContext>,
    name: String,
}

impl ContextualEncoder {
    /// Pairs the shared base model with a collection's context; cheap (no model load).
    pub fn new(base: Arc<MiniLm>, context: Arc<CorpusContext>) -> Self {
        let name = format!("{NAME_PREFIX}{}", context.variant.name());
        Self {
            base,
            context,
            name,
        }
    }

    /// The context this encoder conditions on (its `version` tags the vectors it makes).
    pub fn context(&self) -> &Arc<CorpusContext> {
        &self.context
    }
}

impl TextEncoder for ContextualEncoder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.base.dim()
    }

    fn max_tokens(&self) -> usize {
        self.base.max_tokens()
    }

    /// Query-side vectors: the learned variant pools queries with its query gate
    /// (documents, through `embed_chunked`, without it).
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let pooled = pool(&self.base, &self.context, texts)?;
        transform_all(&self.context, pooled)
    }

    fn embed_chunked(&self, texts: &[&str], chunking: Chunking) -> Result<Vec<Vec<Chunk>>> {
        let mut docs = pool_chunked(&self.base, &self.context, texts, chunking)?;
        let pooled: Vec<Vec<f32>> = docs
            .iter_mut()
            .flatten()
            .map(|c| std::mem::take(&mut c.vector))
            .collect();
        let mut vectors = transform_all(&self.context, pooled)?.into_iter();
        for chunk in docs.iter_mut().flatten() {
            chunk.vector = vectors.next().expect("one vector per chunk");
        }
        Ok(docs)
    }
}

/// Stage one plus the variant's pooling, one vector per text (its first window), before
/// the context's transform: all `context` needs here is its token counts.
pub fn pool(base: &MiniLm, context: &CorpusContext, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    with_pooler(base, context, true, |pooler| {
        base.embed_pooled(texts, pooler)
    })
}

/// [`pool`] for every window of every text (how documents are stored).
pub fn pool_chunked(
    base: &MiniLm,
    context: &CorpusContext,
    texts: &[&str],
    chunking: Chunking,
) -> Result<Vec<Vec<Chunk>>> {
    let windows = with_pooler(base, context, false, |pooler| {
        base.embed_chunked_pooled(texts, chunking, pooler)
    })?;
    Ok(into_chunks(texts.len(), windows))
}

/// Runs `f` with the variant's pooler: a (plain or idf-weighted) mean, or stage two's
/// learned pooling (its query side for `query`).
fn with_pooler<T>(
    base: &MiniLm,
    context: &CorpusContext,
    query: bool,
    f: impl FnOnce(&dyn Pooler<Vec<f32>>) -> Result<T>,
) -> Result<T> {
    let weights = context.token_weights(base);
    if context.variant == Variant::Learned {
        let net = StageTwo::bundled()?;
        f(&StageTwoPooler {
            net: &net,
            idf: &weights,
            context: None,
            query,
        })
    } else {
        f(&WeightedMean(
            context.variant.idf_pooling().then_some(&weights as _),
        ))
    }
}

/// The context's transform of pooled vectors: centre and whiten (training-free
/// variants), or the learned projection (one batched pass through stage two).
pub fn transform_all(context: &CorpusContext, pooled: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
    if context.variant != Variant::Learned {
        return Ok(pooled.into_iter().map(|v| context.transform(v)).collect());
    }
    if pooled.is_empty() {
        return Ok(pooled);
    }
    let net = StageTwo::bundled()?;
    let tensors = ContextTensors::new(context)?;
    let (n, dim) = (pooled.len(), context.dim());
    let flat: Vec<f32> = pooled.into_iter().flatten().collect();
    let x = Tensor::from_vec(flat, (n, dim), &Device::Cpu)?;
    Ok(net.project(&x, &tensors)?.to_vec2::<f32>()?)
}
