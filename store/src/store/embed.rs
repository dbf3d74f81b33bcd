//! Embeddings on request (`/embed`, `/v1/embeddings`): the named encoder, or a
//! collection's own (contextual) one.

use super::{Store, DEFAULT_EMBEDDER};
use crate::api::*;
use crate::error::{Error, LimitKind, Result};
use crate::limits::check;
use crate::validate;
use engram_embedder::EncoderKind;

impl Store {
    /// Embeds texts with the named encoder (default MiniLM), one vector per text.
    pub fn embed(&self, req: &EmbedRequest) -> Result<EmbedResponse> {
        if req.texts.is_empty() {
            return Err(Error::invalid("texts", "send at least one text"));
        }
        check(LimitKind::BatchSize, req.texts.len(), self.limits.max_batch)?;
        for (i, t) in req.texts.iter().enumerate() {
            validate::text(&format!("texts[{i}]"), t, &self.limits)?;
        }
        let model = req.model.as_deref().unwrap_or(DEFAULT_EMBEDDER);
        if let EncoderKind::Contextual(_) = EncoderKind::parse(model)? {
            // A contextual encoder has no meaning without a collection's corpus.
            return Err(Error::invalid(
                "model",
                format!(
                    "'{model}' embeds with a collection's corpus context; use POST /v1/embeddings with the collection's name as \"model\""
                ),
            ));
        }
        let encoder = self.encoder(model)?;
        let texts: Vec<&str> = req.texts.iter().map(String::as_str).collect();
        Ok(EmbedResponse {
            model: model.to_string(),
            dimension: encoder.dim(),
            vectors: encoder.embed(&texts)?,
        })
    }

    /// Embeds texts as a collection embeds its queries: with its contextual encoder
    /// (and current context) when it has one, so outside vectors match its own.
    pub fn embed_with_collection(&self, name: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let coll = self.collection(name)?;
        if texts.is_empty() {
            return Err(Error::invalid("input", "send at least one text"));
        }
        check(LimitKind::BatchSize, texts.len(), self.limits.max_batch)?;
        for (i, t) in texts.iter().enumerate() {
            validate::text(&format!("input[{i}]"), t, &self.limits)?;
        }
        let (encoder, _) = self.text_encoder(&coll)?;
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(encoder.embed(&texts)?)
    }
}
