//! Stage two of the contextual embedder: MiniLM conditioned on a [`CorpusContext`].
//!
//! Why a separate encoder rather than a post-processing step in the database: documents
//! and queries must go through exactly the same corpus-aware pipeline (idf-weighted
//! pooling needs the token states, which only the encoder sees), and the database must
//! not care which variant a collection uses: it holds a `dyn TextEncoder` either way.

use std::sync::Arc;

use crate::context::CorpusContext;
use crate::encoder::{Chunk, Chunking, TextEncoder};
use crate::error::Result;
use crate::minilm::MiniLm;

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

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let weights = self.context.token_weights(&self.base);
        let idf = self.context.variant.idf_pooling();
        let vectors = self
            .base
            .embed_weighted(texts, idf.then_some(&weights as _))?;
        Ok(vectors
            .into_iter()
            .map(|v| self.context.transform(v))
            .collect())
    }

    fn embed_chunked(&self, texts: &[&str], chunking: Chunking) -> Result<Vec<Vec<Chunk>>> {
        let weights = self.context.token_weights(&self.base);
        let idf = self.context.variant.idf_pooling();
        let mut docs =
            self.base
                .embed_chunked_weighted(texts, chunking, idf.then_some(&weights as _))?;
        for chunk in docs.iter_mut().flatten() {
            chunk.vector = self.context.transform(std::mem::take(&mut chunk.vector));
        }
        Ok(docs)
    }
}
