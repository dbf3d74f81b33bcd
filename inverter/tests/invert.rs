//! The inverter end to end on the real MiniLM and the committed probe artifact.

use std::sync::Arc;

use engram_embedder::TextEncoder;
use engram_inverter::metrics::{cosine, token_f1};
use engram_inverter::{CosineSearch, Inversion, Inverter, Probe, SearchOptions};

fn committed_probe() -> Arc<Probe> {
    Arc::new(Probe::bundled().expect("the committed artifact loads"))
}

/// Inverts the MiniLM embedding of `text` with the committed probe and checks what
/// every search owes its caller: the trajectory's cosine never falls (cosine alone
/// must rank the beam, `fluency: 0.0`) and the reported cosine is the reconstruction's
/// real one. Returns the inversion for the test's own checks.
fn invert_keeping_best(text: &str, opts: SearchOptions) -> Inversion {
    assert_eq!(
        opts.fluency, 0.0,
        "a best-kept cosine needs cosine-only ranking"
    );
    let enc = engram_embedder::shared_minilm().unwrap();
    let target = enc.embed(&[text]).unwrap().remove(0);
    let inv = CosineSearch::new(committed_probe(), opts)
        .unwrap()
        .invert(&target, enc.as_ref())
        .unwrap();
    let t = &inv.trajectory;
    assert!(t.windows(2).all(|w| w[1].cosine >= w[0].cosine), "{t:?}");
    let again = enc.embed(&[&inv.text]).unwrap().remove(0);
    assert!((cosine(&again, &target) - inv.cosine).abs() < 1e-3);
    inv
}

#[test]
fn search_keeps_its_best_and_beats_its_hypothesis() {
    let text = "The river flows through the old city park in the summer.";
    let opts = SearchOptions {
        steps: 4,
        candidates: 64,
        fluency: 0.0,
        ..SearchOptions::default()
    };
    let inv = invert_keeping_best(text, opts);
    let t = &inv.trajectory;
    assert!(t.len() >= 2 && t[0].step == 0);
    assert_eq!(inv.text, t.last().unwrap().text);
    assert!(
        inv.cosine > t[0].cosine,
        "correction improved nothing: {t:?}"
    );
    assert!(token_f1(text, &inv.text) > 0.2, "{}", inv.text);
    assert!(inv.encoder_calls > 8);
}

#[test]
fn a_stalled_search_jumps_but_keeps_its_best() {
    // Patience 1: every round without a gain jumps to a perturbed copy, whose
    // cosine is usually lower; the reported best must not follow it down.
    let opts = SearchOptions {
        steps: 12,
        candidates: 32,
        patience: 1,
        fluency: 0.0,
        ..SearchOptions::default()
    };
    let inv = invert_keeping_best(
        "She founded a small bakery in Lyon and sold bread to the whole street.",
        opts,
    );
    let best = inv
        .trajectory
        .iter()
        .map(|h| h.cosine)
        .fold(f32::MIN, f32::max);
    assert_eq!(inv.cosine, best);
}

#[test]
fn bad_targets_are_errors_not_panics() {
    let enc = engram_embedder::shared_minilm().unwrap();
    let search = CosineSearch::new(committed_probe(), SearchOptions::default()).unwrap();
    assert!(search.invert(&[0.0; 384], enc.as_ref()).is_err());
    assert!(search.invert(&[1.0; 10], enc.as_ref()).is_err());
    assert!(search.invert(&[f32::NAN; 384], enc.as_ref()).is_err());
    let bad = SearchOptions {
        beam: 0,
        ..SearchOptions::default()
    };
    assert!(CosineSearch::new(committed_probe(), bad).is_err());
}

#[test]
fn artifact_round_trips() {
    let probe = committed_probe();
    let dir = tempfile::tempdir().unwrap();
    probe.save(dir.path()).unwrap();
    let back = Probe::load(dir.path()).unwrap();
    assert_eq!(back.vocab(), probe.vocab());
    assert_eq!(back.manifest, probe.manifest);
    let v: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin() / 14.0).collect();
    assert_eq!(
        back.scores(&v),
        probe.scores(&v),
        "int8 weights reload exactly"
    );
    assert_eq!(back.bag(&back.scores(&v)), probe.bag(&probe.scores(&v)));
    assert!(Probe::load(&dir.path().join("missing")).is_err());
}
