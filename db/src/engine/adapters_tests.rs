//! Adapters and collection incarnations: what a deleted collection leaves behind is
//! never inherited by a new one of its name, through a crash, a re-creation or a
//! promotion that finishes late; and adapter operations on a collection that never
//! had one answer cleanly.

use std::path::Path;

use engram_store::api::CreateCollection;
use engram_store::collection::CollectionConfig;

use super::*;
use crate::engine::engine_without_models as engine;

fn create(e: &Engine, name: &str) -> u64 {
    let req = CreateCollection {
        dimension: Some(2),
        ..Default::default()
    };
    e.create_collection(name, req).unwrap().config.incarnation
}

/// A version directory as a promotion's registration leaves it.
fn fake_version(dir: &Path, name: &str) -> PathBuf {
    let v1 = dir.join("adapters").join(name).join("v0001");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("adapter_config.json"), "{}").unwrap();
    v1
}

#[test]
fn deactivating_a_collection_without_adapters_is_a_clean_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    create(&e, "docs");
    assert!(e.deactivate_adapter("docs").unwrap().is_empty());
    assert!(e.adapter_versions("docs").unwrap().is_empty());
    assert!(matches!(
        e.rollback_adapter("docs"),
        Err(Error::Adapter(
            engram_generator::RegistryError::NotFound { .. }
        ))
    ));
    assert!(matches!(
        e.activate_adapter("docs", 1),
        Err(Error::Adapter(
            engram_generator::RegistryError::NotFound { .. }
        ))
    ));
    assert!(matches!(
        e.deactivate_adapter("nope"),
        Err(Error::Store(engram_store::Error::CollectionNotFound(_)))
    ));
    assert!(
        !dir.path().join("adapters/docs").exists(),
        "nothing written"
    );
}

#[test]
fn adapters_left_by_a_crash_after_a_delete_are_removed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = engine(dir.path());
        let first = create(&e, "docs");
        fake_version(dir.path(), "docs");
        e.adapter_store().unwrap().bind("docs", first).unwrap();
        assert!(e.adapter_store().unwrap().promoted("docs", first));
        // The delete commits in RocksDB, then the process dies before the adapters go.
        e.store().delete_collection("docs").unwrap();
    }
    let e = engine(dir.path());
    assert!(!dir.path().join("adapters/docs").exists());
    let second = create(&e, "docs");
    assert!(!e.adapter_store().unwrap().promoted("docs", second));
    assert!(e.adapter_versions("docs").unwrap().is_empty());
}

#[test]
fn a_new_collection_does_not_inherit_adapters_of_an_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let first = create(&e, "docs");
    fake_version(dir.path(), "docs");
    e.adapter_store().unwrap().bind("docs", first).unwrap();
    // Creating it again with the same settings keeps them: the same incarnation.
    assert_eq!(create(&e, "docs"), first);
    assert!(dir.path().join("adapters/docs/v0001").exists());
    // Deleted in the store only (as a crash would leave it), then created again.
    e.store().delete_collection("docs").unwrap();
    let second = create(&e, "docs");
    assert_ne!(first, second);
    assert!(!dir.path().join("adapters/docs").exists());
}

#[test]
fn a_promotion_that_finishes_after_delete_and_recreate_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let first = create(&e, "docs");
    // The collection is deleted and created again while the promotion trains...
    e.delete_collection("docs").unwrap();
    let second = create(&e, "docs");
    // ...then it registers (and activates) its adapter under the name.
    fake_version(dir.path(), "docs");
    let store = e.adapter_store().unwrap();
    assert!(
        store.active("docs").is_none(),
        "an adapter no finished promotion claimed is not served"
    );
    assert!(matches!(
        e.claim_adapters("docs", first),
        Err(Error::Store(engram_store::Error::CollectionNotFound(_)))
    ));
    assert!(!dir.path().join("adapters/docs").exists(), "removed");
    assert!(!store.promoted("docs", second));
    // A promotion of the live incarnation ties what it registered to it.
    fake_version(dir.path(), "docs");
    e.claim_adapters("docs", second).unwrap();
    assert!(store.promoted("docs", second));
    assert!(dir.path().join("adapters/docs/v0001").exists());
    // A failed one that registered nothing leaves nothing.
    let third = create(&e, "other");
    e.claim_adapters("other", third).unwrap();
    assert!(!dir.path().join("adapters/other").exists());
}

#[test]
fn adapters_of_collections_from_before_incarnations_are_adopted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = engine(dir.path());
        create(&e, "old");
        create(&e, "new");
        // Rewrite "old" as a record from before incarnations.
        let storage = e.store().storage();
        let mut config: CollectionConfig = e.store().collection_info("old").unwrap().config;
        config.incarnation = 0;
        let mut batch = storage.batch();
        storage.put_collection(&mut batch, "old", &config);
        storage.commit(batch, true).unwrap();
    }
    fake_version(dir.path(), "old");
    // "new" has an incarnation: a version without the file is a registration no
    // finished promotion claimed.
    fake_version(dir.path(), "new");
    let e = engine(dir.path());
    let old = e.store().incarnation("old").unwrap();
    assert!(e.adapter_store().unwrap().promoted("old", old));
    assert!(dir.path().join("adapters/old/v0001").exists());
    assert!(!dir.path().join("adapters/new").exists());
}
