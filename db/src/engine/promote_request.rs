//! What a promotion may be asked for: the request body, the bounds of its options
//! and their checks. Kept apart from the promotion's running (`promote.rs`) because
//! the server's schema and the CLI share it.

use engram_generator::AdapterKind;
use engram_trainer::synth::{Strategy, SynthConfig};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// Upper bounds of a promotion's options. Why bounds: a promotion holds both cores
/// and one promotion runs at a time, so an unbounded `steps` or `rank` (or
/// thousands of held-out questions, each answered twice by the language model)
/// would occupy the server for days. The OpenAPI schema of [`PromoteRequest`]
/// states the same numbers (a test checks they agree).
pub const MAX_STEPS: usize = 2_000;
pub const MAX_RANK: usize = 64;
pub const MAX_ALPHA: f64 = 1_024.0;
pub const MAX_LEARNING_RATE: f64 = 0.1;
pub const MAX_CLUSTERS: usize = 256;
pub const MAX_DOCUMENTS: usize = 1_000;
pub const MAX_HELD_OUT: usize = 200;
pub const MAX_TRAIN_PAIRS: usize = 2_000;
pub const MAX_PREFIX_TOKENS: usize = engram_generator::prefix::MAX_PREFIX_TOKENS;
/// Prefix positions of a prefix adapter unless asked (about one Quoref passage).
pub const DEFAULT_PREFIX_TOKENS: usize = 256;

/// A question with accepted answers (held-out evaluation).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct QuestionInput {
    pub question: String,
    pub answers: Vec<String>,
}

/// A question-answer pair to train on.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
pub struct PairInput {
    pub question: String,
    pub answer: String,
}

/// What to promote and how; every field has a default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PromoteRequest {
    /// The cluster to promote, by rank in `GET /collections/{name}/clusters` (0 is the
    /// hottest, the default).
    pub cluster: Option<usize>,
    /// Promote the whole collection instead of one cluster.
    pub all: bool,
    /// Clusters to split the collection into (default about sqrt(documents / 2)).
    #[schema(minimum = 1, maximum = 256)]
    pub clusters: Option<usize>,
    /// Documents taken from the cluster at most (the most-hit first; default 40).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_documents: Option<usize>,
    /// Synthetic-data strategies: `cloze`, `person_qa`, `self_qa`, `rephrase` (default
    /// cloze, person_qa, self_qa).
    pub strategies: Option<Vec<String>>,
    /// LoRA rank (default 16, at most 64).
    #[schema(minimum = 1, maximum = 64)]
    pub rank: Option<usize>,
    /// LoRA alpha (default twice the rank; above 0, at most 1024).
    #[schema(exclusive_minimum = 0.0, maximum = 1024.0)]
    pub alpha: Option<f64>,
    /// Optimiser steps (default 60, at most 2000).
    #[schema(minimum = 1, maximum = 2000)]
    pub steps: Option<usize>,
    /// Peak learning rate (default 1e-3; above 0, at most 0.1).
    #[schema(exclusive_minimum = 0.0, maximum = 0.1)]
    pub learning_rate: Option<f64>,
    /// Seed of data and training (default 0).
    #[serde(default, deserialize_with = "crate::api_types::int64_seed")]
    pub seed: Option<u64>,
    /// Activate even when the gate refuses the adapter.
    pub force: bool,
    /// Questions to gate on, never trained on (default: every fifth synthetic pair;
    /// at most 200).
    #[schema(max_items = 200)]
    pub held_out: Vec<QuestionInput>,
    /// Extra pairs to train on (a FAQ, known questions; at most 2000).
    #[schema(max_items = 2000)]
    pub train_pairs: Vec<PairInput>,
    /// Also learn from the collection's logged questions whose best-ranked document
    /// is promoted (at most 200): each is answered by the base model with rag, a
    /// seeded fifth become the gate's questions (judged against those rag answers)
    /// and the rest training pairs. 400 when no logged question qualifies.
    pub logged_questions: bool,
    /// How the adapter learns: `distill` (context distillation: the model with the
    /// rag passages teaches the model without them, on logged questions and on
    /// self-study questions of the strategies given) or `pairs` (train on
    /// question-answer strings). Default: `distill` when logged questions about the
    /// promoted documents exist (two or more: one is held out for the gate), else
    /// `pairs`.
    pub method: Option<String>,
    /// Distillation's loss: `kl` (to the teacher's top-k distribution),
    /// `next-token` (cross-entropy on the teacher's sampled answer) or `kl+next-token`
    /// (their sum, the default).
    pub loss: Option<String>,
    /// Teacher logits kept per answer position (default 20, 1-256).
    #[schema(minimum = 1, maximum = 256)]
    pub top_k: Option<usize>,
    /// How distillation's loss weighs the teacher answer's tokens: `uniform` (the
    /// default) or `context-gain` (each token by how much the rag passages raised its
    /// probability over the closed-book model's; needs a `kl` loss).
    #[schema(pattern = "^(uniform|context-gain)$")]
    pub token_weights: Option<String>,
    /// The adapter kind: `lora` (low-rank deltas on every projection, the default) or
    /// `prefix` (a trained KV prefix per layer, initialised from the KV cache of the
    /// first `prefix_tokens` tokens of the promoted documents; Cartridges). Both are
    /// trained by the same method and gate and served from the same registry.
    #[schema(pattern = "^(lora|prefix)$")]
    pub adapter: Option<String>,
    /// Positions of a prefix adapter (default 256, 1-2048); only with `adapter: prefix`.
    #[schema(minimum = 1, maximum = 2048)]
    pub prefix_tokens: Option<usize>,
    /// Continued training: retrain the active adapter, starting from its weights, on
    /// the learned documents written since it learned them (the stale ones), by the
    /// method a promotion would choose for them, replaying its other documents. The
    /// new version records the old one's documents with the retrained ones' new write
    /// sequences and the version it continued from. Deleted documents cannot be
    /// trained out of an adapter: they stay stale (promote without `continue` to drop
    /// them). 400 with no active adapter, when nothing was written since, with
    /// `all`, `cluster` or `max_documents`, or with another adapter kind or shape.
    #[serde(rename = "continue")]
    pub continue_training: bool,
}

/// The adapter kind `req` asks for (`default` when it names none), or a 400.
pub(super) fn adapter_kind(req: &PromoteRequest, default: AdapterKind) -> Result<AdapterKind> {
    let kind = match req.adapter.as_deref() {
        None => default,
        Some(name) => AdapterKind::parse(name).ok_or_else(|| {
            Error::invalid(
                "adapter",
                format!("unknown adapter kind '{name}'; use lora or prefix"),
            )
        })?,
    };
    if req.prefix_tokens.is_some() && kind != AdapterKind::Prefix {
        return Err(Error::invalid(
            "prefix_tokens",
            "prefix_tokens applies to prefix adapters only: add \"adapter\": \"prefix\"",
        ));
    }
    Ok(kind)
}

pub(super) fn parse_strategies(names: Option<&[String]>) -> Result<Vec<Strategy>> {
    let Some(names) = names else {
        return Ok(SynthConfig::default().strategies);
    };
    if names.is_empty() {
        return Err(Error::invalid(
            "strategies",
            "name at least one of cloze, person_qa, self_qa, rephrase",
        ));
    }
    names
        .iter()
        .map(|n| {
            Strategy::parse(n).ok_or_else(|| {
                Error::invalid(
                    "strategies",
                    format!("unknown strategy '{n}'; use cloze, person_qa, self_qa or rephrase"),
                )
            })
        })
        .collect()
}

/// `value` of option `what` within `min..=max`, else a 400 naming the bound.
fn within<T: PartialOrd + std::fmt::Display>(what: &str, value: T, min: T, max: T) -> Result<()> {
    if value >= min && value <= max {
        return Ok(());
    }
    Err(Error::invalid(
        what,
        format!("{what} must be between {min} and {max}, got {value}"),
    ))
}

/// Checks every numeric option against its bound (the `MAX_*` constants).
pub(super) fn check_bounds(req: &PromoteRequest) -> Result<()> {
    if let Some(steps) = req.steps {
        within("steps", steps, 1, MAX_STEPS)?;
    }
    if let Some(rank) = req.rank {
        within("rank", rank, 1, MAX_RANK)?;
    }
    if let Some(clusters) = req.clusters {
        within("clusters", clusters, 1, MAX_CLUSTERS)?;
    }
    if let Some(k) = req.top_k {
        within("top_k", k, 1, 256)?;
    }
    if let Some(p) = req.prefix_tokens {
        within("prefix_tokens", p, 1, MAX_PREFIX_TOKENS)?;
    }
    if let Some(max_docs) = req.max_documents {
        within("max_documents", max_docs, 1, MAX_DOCUMENTS)?;
    }
    let positive = |what: &str, value: Option<f64>, max: f64| match value {
        Some(v) if !(v > 0.0 && v <= max) => Err(Error::invalid(
            what,
            format!("{what} must be above 0 and at most {max}, got {v}"),
        )),
        _ => Ok(()),
    };
    positive("alpha", req.alpha, MAX_ALPHA)?;
    positive("learning_rate", req.learning_rate, MAX_LEARNING_RATE)?;
    for (what, got, max) in [
        ("held_out", req.held_out.len(), MAX_HELD_OUT),
        ("train_pairs", req.train_pairs.len(), MAX_TRAIN_PAIRS),
    ] {
        if got > max {
            return Err(Error::invalid(
                what,
                format!("{what} holds {got} items; at most {max} are allowed"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: serde_json::Value) -> PromoteRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn options_past_their_bound_are_refused_naming_it() {
        for (body, names) in [
            (json!({"steps": MAX_STEPS + 1}), "between 1 and 2000"),
            (json!({"steps": 0}), "steps"),
            (json!({"rank": MAX_RANK + 1}), "between 1 and 64"),
            (json!({"clusters": 100_000}), "clusters"),
            (json!({"max_documents": 0}), "max_documents"),
            (json!({"alpha": -1.0}), "alpha"),
            (json!({"learning_rate": 5.0}), "at most 0.1"),
            (json!({"prefix_tokens": 0}), "between 1 and 2048"),
        ] {
            let err = check_bounds(&request(body.clone()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(names), "{body}: {err}");
        }
        let held_out: Vec<_> = (0..=MAX_HELD_OUT)
            .map(|i| json!({"question": format!("q{i}"), "answers": ["a"]}))
            .collect();
        let err = check_bounds(&request(json!({ "held_out": held_out })))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 200"), "{err}");
        let ok = json!({"steps": MAX_STEPS, "rank": MAX_RANK, "alpha": 2.0, "learning_rate": 1e-3});
        check_bounds(&request(ok)).unwrap();
    }

    #[test]
    fn the_openapi_schema_states_the_same_bounds() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(PromoteRequest::schema()).unwrap();
        let props = &schema["properties"];
        let max = |field: &str| props[field]["maximum"].as_f64().unwrap_or(f64::NAN);
        assert_eq!(max("steps"), MAX_STEPS as f64, "{props}");
        assert_eq!(max("rank"), MAX_RANK as f64);
        assert_eq!(max("clusters"), MAX_CLUSTERS as f64);
        assert_eq!(max("max_documents"), MAX_DOCUMENTS as f64);
        assert_eq!(max("alpha"), MAX_ALPHA);
        assert_eq!(max("prefix_tokens"), MAX_PREFIX_TOKENS as f64);
        assert_eq!(max("learning_rate"), MAX_LEARNING_RATE);
        assert_eq!(props["held_out"]["maxItems"], MAX_HELD_OUT);
        assert_eq!(props["train_pairs"]["maxItems"], MAX_TRAIN_PAIRS);
        assert_eq!(props["continue"]["type"], "boolean", "{props}");
    }

    #[test]
    fn the_adapter_kind_defaults_and_bad_names_or_lone_prefix_sizes_are_refused() {
        let kind = |v| adapter_kind(&request(v), AdapterKind::Lora);
        assert_eq!(kind(json!({})).unwrap(), AdapterKind::Lora);
        assert_eq!(
            adapter_kind(&request(json!({})), AdapterKind::Prefix).unwrap(),
            AdapterKind::Prefix
        );
        assert_eq!(
            kind(json!({"adapter": "prefix", "prefix_tokens": 64})).unwrap(),
            AdapterKind::Prefix
        );
        let err = kind(json!({"adapter": "ia3"})).unwrap_err().to_string();
        assert!(err.contains("use lora or prefix"), "{err}");
        let err = kind(json!({"prefix_tokens": 64})).unwrap_err().to_string();
        assert!(err.contains("prefix adapters only"), "{err}");
    }
}
