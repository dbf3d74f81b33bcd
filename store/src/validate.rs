//! Checks on user-supplied values shared by every write and query path, so
//! each rule lives in one place and bad input is refused before anything is
//! written.

use serde_json::Value;

use crate::error::{Error, LimitKind, Result};
use crate::index::Metric;
use crate::limits::{check, Limits};

/// Text must be non-empty, within the size limit and free of control
/// characters other than tab and newlines (they are almost always a client bug,
/// such as binary data sent as text).
pub fn text(what: &str, text: &str, limits: &Limits) -> Result<()> {
    check(LimitKind::TextBytes, text.len(), limits.max_text_bytes)?;
    if text.trim().is_empty() {
        return Err(Error::invalid(
            what,
            "text is empty; send at least one visible character",
        ));
    }
    if let Some((at, c)) = text
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::invalid(
            what,
            format!(
                "text contains the control character U+{:04X} at byte {at}; remove it",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Document ids: non-empty, bounded, printable.
pub fn doc_id(id: &str, limits: &Limits) -> Result<()> {
    check(LimitKind::IdBytes, id.len(), limits.max_id_bytes)?;
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(Error::invalid(
            "id",
            "document ids must be non-empty and contain no control characters",
        ));
    }
    Ok(())
}

/// Vectors must match the collection's dimension and be finite; cosine needs a
/// non-zero vector (it has no direction otherwise).
pub fn vector(what: &str, collection: &str, v: &[f32], dim: usize, metric: Metric) -> Result<()> {
    if v.len() != dim {
        return Err(Error::WrongDimension {
            collection: collection.to_string(),
            expected: dim,
            got: v.len(),
        });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid(what, "vector contains NaN or infinity"));
    }
    if metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
        return Err(Error::invalid(
            what,
            "the zero vector has no direction, so it cannot be compared by cosine",
        ));
    }
    Ok(())
}

/// Metadata is a JSON object (or absent) within the size limit.
pub fn metadata(what: &str, m: &Value, limits: &Limits) -> Result<()> {
    if !(m.is_object() || m.is_null()) {
        return Err(Error::invalid(what, "metadata must be a JSON object"));
    }
    let size = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
    check(LimitKind::MetadataBytes, size, limits.max_metadata_bytes)
}

/// k must be at least 1 and within the limit.
pub fn top_k(k: usize, limits: &Limits) -> Result<()> {
    if k == 0 {
        return Err(Error::invalid("k", "k must be at least 1"));
    }
    check(LimitKind::TopK, k, limits.max_k)
}

/// Windows of 8 to `max` tokens, the overlap at most half the widest window's text
/// tokens; returns the settings with the overlap capped at half of this window's,
/// as documented: a relation between two fields no schema can state, so not a refusal.
pub fn chunking(mut c: engram_embedder::Chunking, max: usize) -> Result<engram_embedder::Chunking> {
    let overlap_max = (max - 2) / 2;
    if !(8..=max).contains(&c.tokens) || c.overlap > overlap_max {
        return Err(Error::invalid(
            "chunking",
            format!("tokens must be in 8..={max} and overlap in 0..={overlap_max}"),
        ));
    }
    c.overlap = c.overlap.min((c.tokens - 2) / 2);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        let l = Limits::default();
        assert!(text("t", "héllo 世界 🎉\n\tok", &l).is_ok());
        assert!(text("t", "  \n ", &l).is_err());
        let err = text("t", "a\u{0}b", &l).unwrap_err().to_string();
        assert!(err.contains("U+0000 at byte 1"), "{err}");
        assert!(text("t", &"x".repeat(l.max_text_bytes + 1), &l).is_err());
    }

    #[test]
    fn vector_rules() {
        assert!(vector("v", "c", &[1.0, 0.0], 2, Metric::Cosine).is_ok());
        assert!(matches!(
            vector("v", "c", &[1.0], 2, Metric::Cosine),
            Err(Error::WrongDimension {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(vector("v", "c", &[f32::NAN, 0.0], 2, Metric::Dot).is_err());
        assert!(vector("v", "c", &[0.0, 0.0], 2, Metric::Cosine).is_err());
        assert!(vector("v", "c", &[0.0, 0.0], 2, Metric::Euclidean).is_ok());
    }

    #[test]
    fn k_and_metadata() {
        let l = Limits::default();
        assert!(top_k(0, &l).is_err());
        assert!(top_k(100_000, &l).is_err());
        assert!(top_k(10, &l).is_ok());
        assert!(metadata("m", &serde_json::json!([1]), &l).is_err());
        assert!(metadata("m", &serde_json::json!({"a": 1}), &l).is_ok());
    }
}
