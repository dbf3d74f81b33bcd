//! The shared registry: merging (pure), and publish -> fetch -> install -> settle
//! against a real `nats-server`, with a file whose bytes do not match its sha256
//! refused. The sink is a stand-in that records what it is asked.

use std::sync::Mutex;

use super::*;
use crate::work_queue::tests::until;

fn file(name: &str, sha: &str) -> AdapterFile {
    AdapterFile {
        name: name.into(),
        sha256: sha.into(),
        size: 1,
    }
}

fn change(incarnation: u64, versions: &[u32], active: Option<u32>, deleted: Option<u32>) -> Change {
    Change {
        collection: "docs".into(),
        incarnation,
        versions: versions.iter().map(|v| (*v, PathBuf::new())).collect(),
        active,
        deleted,
    }
}

#[test]
fn entries_merge_versions_and_keep_deletions() {
    let local = |vs: &[(u32, &str)]| -> BTreeMap<u32, Vec<AdapterFile>> {
        vs.iter()
            .map(|(v, sha)| (*v, vec![file("a", sha)]))
            .collect()
    };
    let (first, upload) = merged(None, &change(7, &[1], Some(1), None), &local(&[(1, "x")]));
    assert_eq!(upload, vec![1]);
    assert_eq!(first.active, Some(1));
    // A node that holds only v1 publishes an activation after another added v2:
    // v2 stays, nothing is uploaded again.
    let mut with_two = first.clone();
    with_two.versions.push(SharedVersion {
        version: 2,
        files: vec![file("a", "y")],
    });
    let (next, upload) = merged(
        Some(&with_two),
        &change(7, &[1], Some(1), None),
        &local(&[(1, "x")]),
    );
    assert!(upload.is_empty());
    assert_eq!(next.versions.len(), 2);
    // A deletion removes the version for good, even from a node that still has it.
    let (after, _) = merged(
        Some(&next),
        &change(7, &[1], Some(1), Some(2)),
        &local(&[(1, "x")]),
    );
    assert_eq!(
        after.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(after.deleted, vec![2]);
    let (again, _) = merged(
        Some(&after),
        &change(7, &[1, 2], Some(1), None),
        &local(&[(1, "x"), (2, "y")]),
    );
    assert_eq!(
        again.versions.len(),
        1,
        "a deleted version does not come back"
    );
    // Changed bytes under the same number are uploaded again.
    let (_, upload) = merged(
        Some(&after),
        &change(7, &[1], Some(1), None),
        &local(&[(1, "z")]),
    );
    assert_eq!(upload, vec![1]);
    // A new incarnation of the collection starts over.
    let (fresh, upload) = merged(
        Some(&again),
        &change(8, &[1], None, None),
        &local(&[(1, "q")]),
    );
    assert_eq!(
        (fresh.incarnation, fresh.deleted.len(), upload),
        (8, 0, vec![1])
    );
}

/// An installed version: its number and its files' names and bytes.
type Installed = (u32, Vec<(String, Vec<u8>)>);

/// Records installs (with the files' contents) and settles.
#[derive(Default)]
struct Sink {
    incarnation: Mutex<Option<u64>>,
    installed: Mutex<Vec<Installed>>,
    settled: Mutex<Vec<(Option<u32>, Vec<u32>)>>,
    forgotten: Mutex<Vec<String>>,
}

impl AdapterSink for Sink {
    fn held(&self, _: &str, incarnation: u64) -> Option<Vec<u32>> {
        (*self.incarnation.lock().unwrap() == Some(incarnation)).then(|| {
            self.installed
                .lock()
                .unwrap()
                .iter()
                .map(|(v, _)| *v)
                .collect()
        })
    }

    fn install(
        &self,
        _: &str,
        _: u64,
        version: u32,
        dir: &Path,
    ) -> std::result::Result<(), String> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        self.installed.lock().unwrap().push((version, files));
        Ok(())
    }

    fn settle(
        &self,
        _: &str,
        active: Option<u32>,
        deleted: &[u32],
    ) -> std::result::Result<(), String> {
        self.settled
            .lock()
            .unwrap()
            .push((active, deleted.to_vec()));
        Ok(())
    }

    fn forget(&self, collection: &str) -> std::result::Result<bool, String> {
        self.forgotten.lock().unwrap().push(collection.to_string());
        Ok(true)
    }
}

#[test]
fn a_published_version_is_fetched_checked_and_activated_by_a_follower() {
    let (_nats, rt, js) = crate::work_queue::tests::setup();
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v0001");
    std::fs::create_dir_all(&v1).unwrap();
    // More than one object-store chunk (128 KiB).
    let weights: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(v1.join("adapter_model.safetensors"), &weights).unwrap();
    std::fs::write(v1.join("manifest.json"), b"{}").unwrap();

    let sink = Arc::new(Sink::default());
    let follower = rt.spawn(follow(js.clone(), 1, sink.clone()));
    let c = Change {
        collection: "docs".into(),
        incarnation: 5,
        versions: vec![(1, v1.clone())],
        active: Some(1),
        deleted: None,
    };
    let bytes = read_change(&c).unwrap();
    let shared = rt.block_on(publish(&js, 1, &c, &bytes)).unwrap();
    assert_eq!(shared.versions[0].files.len(), 2);
    // The follower does not hold the collection yet: nothing is installed...
    std::thread::sleep(RETRY_EVERY + Duration::from_millis(500));
    assert!(sink.installed.lock().unwrap().is_empty());
    // ...until it does (its write log caught up): then the version is fetched.
    *sink.incarnation.lock().unwrap() = Some(5);
    until("installed", 20, || !sink.settled.lock().unwrap().is_empty());
    let installed = sink.installed.lock().unwrap().clone();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].0, 1);
    assert_eq!(
        installed[0].1[0],
        ("adapter_model.safetensors".to_string(), weights.clone())
    );
    assert_eq!(sink.settled.lock().unwrap()[0], (Some(1), vec![]));

    // An entry whose sha256 does not match the stored bytes is never installed.
    let mut forged = shared.clone();
    forged.versions.push(SharedVersion {
        version: 2,
        files: vec![AdapterFile {
            name: "adapter_model.safetensors".into(),
            sha256: "00".repeat(32),
            size: weights.len() as u64,
        }],
    });
    rt.block_on(async {
        let store = objects(&js, 1).await.unwrap();
        let name = object_name("docs", 5, 2, "adapter_model.safetensors");
        store
            .put(name.as_str(), &mut weights.as_slice())
            .await
            .unwrap();
        let kv = registry(&js, 1).await.unwrap();
        kv.put("docs", serde_json::to_vec(&forged).unwrap().into())
            .await
            .unwrap();
    });
    std::thread::sleep(RETRY_EVERY * 2);
    assert_eq!(
        sink.installed.lock().unwrap().len(),
        1,
        "the forged version was installed"
    );

    // The collection is deleted. As an earlier incarnation: nothing of the live
    // one is touched.
    let names = || {
        rt.block_on(async {
            let store = objects(&js, 1).await.unwrap();
            let mut list = store.list().await.unwrap();
            let mut out = Vec::new();
            while let Some(info) = list.next().await {
                let info = info.unwrap();
                if !info.deleted {
                    out.push(info.name);
                }
            }
            out.sort();
            out
        })
    };
    assert_eq!(names().len(), 3);
    assert_eq!(rt.block_on(forget(&js, 1, "docs", 4)).unwrap(), 0);
    let entry =
        || rt.block_on(async { registry(&js, 1).await.unwrap().get("docs").await.unwrap() });
    assert!(entry().is_some());
    assert!(sink.forgotten.lock().unwrap().is_empty());
    // As the live one: its entry and objects go, and the follower forgets it.
    assert_eq!(rt.block_on(forget(&js, 1, "docs", 5)).unwrap(), 3);
    assert!(entry().is_none());
    assert!(names().is_empty(), "{:?}", names());
    until("the follower forgets", 10, || {
        *sink.forgotten.lock().unwrap() == vec!["docs".to_string()]
    });
    follower.abort();
}
