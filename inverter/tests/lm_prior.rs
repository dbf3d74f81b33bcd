//! The language-model prior on the real SmolLM2, and its plumbing through the search.

use std::sync::{Arc, OnceLock};

use engram_embedder::TextEncoder;
use engram_inverter::lm_prior::{LanguagePrior, SmolLmPrior};
use engram_inverter::{CosineSearch, Inverter, Probe, Result, SearchOptions};

fn smollm() -> Arc<SmolLmPrior> {
    static LM: OnceLock<Arc<SmolLmPrior>> = OnceLock::new();
    LM.get_or_init(|| {
        Arc::new(SmolLmPrior::load_default().expect("SmolLM2 loads from the model cache"))
    })
    .clone()
}

#[test]
fn prose_reads_better_than_its_own_words_shuffled() {
    let prose = "the old bridge over the river was rebuilt after the war";
    let salad = "river the war bridge after over rebuilt old the was the";
    let lp = smollm().mean_log_prob(&[prose, salad]).unwrap();
    assert!(lp.iter().all(|x| x.is_finite() && *x < 0.0), "{lp:?}");
    assert!(lp[0] > lp[1] + 1.0, "prose {} vs salad {}", lp[0], lp[1]);
    // Scores are per text, independent of what else is in the batch.
    let alone = smollm().mean_log_prob(&[salad]).unwrap();
    assert!((alone[0] - lp[1]).abs() < 1e-4);
    assert!(smollm().mean_log_prob(&[""]).is_err());
}

/// A prior with the same opinion of every text.
struct Indifferent;

impl LanguagePrior for Indifferent {
    fn mean_log_prob(&self, texts: &[&str]) -> Result<Vec<f32>> {
        Ok(vec![-3.0; texts.len()])
    }
}

#[test]
fn an_indifferent_prior_changes_nothing_and_a_real_one_is_consulted() {
    let enc = engram_embedder::shared_minilm().unwrap();
    let text = "The committee approved the new budget for the city library in March.";
    let target = enc.embed(&[text]).unwrap().remove(0);
    let probe = Arc::new(Probe::bundled().unwrap());
    let opts = SearchOptions {
        steps: 3,
        candidates: 32,
        ..SearchOptions::default()
    };
    let plain = CosineSearch::new(probe.clone(), opts).unwrap();
    let weighted = SearchOptions {
        lm_weight: 0.5,
        ..opts
    };
    let indifferent = CosineSearch::new(probe.clone(), weighted)
        .unwrap()
        .with_language_prior(Arc::new(Indifferent));
    let a = plain.invert(&target, enc.as_ref()).unwrap();
    let b = indifferent.invert(&target, enc.as_ref()).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(a.cosine, b.cosine);

    // A heavy real prior must move the search toward what it finds more natural.
    let heavy = SearchOptions {
        lm_weight: 1.0,
        ..opts
    };
    let fluent = CosineSearch::new(probe, heavy)
        .unwrap()
        .with_language_prior(smollm())
        .invert(&target, enc.as_ref())
        .unwrap();
    let lp = smollm().mean_log_prob(&[&a.text, &fluent.text]).unwrap();
    assert!(
        lp[1] >= lp[0],
        "{} ({}) vs {} ({})",
        a.text,
        lp[0],
        fluent.text,
        lp[1]
    );
}

#[test]
fn a_weight_without_room_to_rerank_is_refused() {
    let bad = SearchOptions {
        lm_candidates: 0,
        ..SearchOptions::default()
    };
    assert!(bad.validate().is_err());
    let too_heavy = SearchOptions {
        lm_weight: 2.0,
        ..SearchOptions::default()
    };
    assert!(too_heavy.validate().is_err());
    // A weight with no model to apply it is a caller's mistake, not a silent no-op.
    let enc = engram_embedder::shared_minilm().unwrap();
    let orphan = SearchOptions {
        lm_weight: 0.1,
        ..SearchOptions::default()
    };
    let search = CosineSearch::new(Arc::new(Probe::bundled().unwrap()), orphan).unwrap();
    let target = enc.embed(&["a short text"]).unwrap().remove(0);
    assert!(search.invert(&target, enc.as_ref()).is_err());
}
