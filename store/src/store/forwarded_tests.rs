//! Writes to shards a node does not serve, forwarded to the node that does, on two
//! stores sharing the in-memory log of `replicated_tests`.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;
use std::sync::Weak;

use super::super::replicated_tests::{two_nodes_with_c, Nodes};
use super::super::*;
use super::{decode, encode_delete, encode_upsert, Forwarded};
use crate::collection::shard_of;
use crate::replica::ForwardWrites;

/// Hands a write to the store whose graph holds its shard, counting the calls.
#[derive(Default)]
struct Route {
    stores: Vec<Weak<Store>>,
    calls: AtomicUsize,
}

impl ForwardWrites for Route {
    fn forward(&self, collection: &str, shard: u32, write: Vec<u8>) -> Result<u64> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let serving = self
            .stores
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| {
                s.indexed_shards(collection)
                    .is_ok_and(|scope| scope.holds_shard(shard))
            })
            .ok_or_else(|| Error::Unavailable(format!("no node serves shard {shard}")))?;
        serving.write_forwarded(collection, shard, &write)
    }
}

fn doc(i: u32) -> DocumentInput {
    let f = i as f32;
    DocumentInput {
        id: Some(format!("d{i}")),
        text: Some(format!("forwarded words{}", i % 5)),
        vector: Some(vec![f.sin(), f.cos(), f / 40.0, 1.0]),
        metadata: Some(serde_json::json!({"i": i})),
    }
}

/// Two nodes on collection "c" in 4 shards: `a` serves shards 0 and 1, `b` 2 and 3,
/// and each forwards through one shared route.
fn split_nodes() -> (Nodes, Arc<Store>, Arc<Store>, Arc<Route>) {
    let (n, _) = two_nodes_with_c(Some(4));
    let [a, b] = n.stores.clone();
    a.index_shards("c", &BTreeSet::from([0, 1])).unwrap();
    b.index_shards("c", &BTreeSet::from([2, 3])).unwrap();
    let route = Arc::new(Route {
        stores: vec![Arc::downgrade(&a), Arc::downgrade(&b)],
        ..Default::default()
    });
    a.attach_forwarder(route.clone());
    b.attach_forwarder(route.clone());
    (n, a, b, route)
}

#[test]
fn writes_to_shards_served_elsewhere_are_published_by_their_node() {
    let (n, a, b, route) = split_nodes();
    let docs: Vec<DocumentInput> = (0..40).map(doc).collect();
    let elsewhere: BTreeSet<u32> = docs
        .iter()
        .map(|d| shard_of(d.id.as_deref().unwrap(), 4))
        .filter(|s| *s >= 2)
        .collect();
    let seq = a.upsert("c", docs).unwrap().seq;
    // One forward per shard that `b` serves; `a` has applied them all when it answers.
    assert_eq!(route.calls.load(Ordering::SeqCst), elsewhere.len());
    assert!(a.applied_seq() >= seq);
    b.wait_applied(seq).unwrap();
    for s in [&a, &b] {
        assert_eq!(s.collection_info("c").unwrap().documents, 40);
        let d = s.get_document("c", "d7", true).unwrap();
        assert_eq!(d.metadata, serde_json::json!({"i": 7}));
    }

    // A delete of a document in one of b's shards goes to b, and a sees it at once.
    let id = (0..40)
        .map(|i| format!("d{i}"))
        .find(|id| shard_of(id, 4) >= 2)
        .unwrap();
    let before = route.calls.load(Ordering::SeqCst);
    a.delete_document("c", &id).unwrap();
    assert_eq!(route.calls.load(Ordering::SeqCst), before + 1);
    assert!(a.get_document("c", &id, false).is_err());
    // A missing document is still a 404 through the forward.
    let err = a.delete_document("c", &id).unwrap_err();
    assert!(matches!(err, Error::DocumentNotFound { .. }), "{err:?}");
    // A write to a's own shards is not forwarded.
    let own = (100..200)
        .find(|i| shard_of(&format!("d{i}"), 4) < 2)
        .unwrap();
    let before = route.calls.load(Ordering::SeqCst);
    a.upsert("c", vec![doc(own)]).unwrap();
    assert_eq!(route.calls.load(Ordering::SeqCst), before);
    n.finish();
}

#[test]
fn a_forwarded_write_is_checked_before_it_is_written() {
    let (n, _, b, _) = split_nodes();
    let coll = b.collection("c").unwrap();
    let id = (0..40)
        .map(|i| format!("d{i}"))
        .find(|id| shard_of(id, 4) == 2)
        .unwrap();
    // Written for an earlier incarnation of the collection: 404.
    let stale = encode_delete(coll.incarnation() + 1, &id);
    assert!(matches!(
        b.write_forwarded("c", 2, &stale),
        Err(Error::CollectionNotFound(_))
    ));
    // A document that is not in the shard named, and bytes that are not a write: 400.
    let elsewhere = encode_delete(coll.incarnation(), &id);
    assert!(matches!(
        b.write_forwarded("c", 3, &elsewhere),
        Err(Error::InvalidInput { .. })
    ));
    for garbage in [&b""[..], &b"\x01\x00\x01"[..], &b"\x09\x00"[..]] {
        assert!(matches!(
            b.write_forwarded("c", 2, garbage),
            Err(Error::InvalidInput { .. })
        ));
    }
    n.finish();
}

#[test]
fn the_wire_form_carries_documents_whole() {
    let (n, a, _, _) = split_nodes();
    let coll = a.collection("c").unwrap();
    let (docs, _) = a.prepare(&coll, (0..3).map(doc).collect()).unwrap();
    let bytes = encode_upsert(7, &docs);
    let Forwarded::Upsert {
        incarnation,
        docs: back,
    } = decode(&bytes).unwrap()
    else {
        panic!("an upsert");
    };
    assert_eq!(incarnation, 7);
    for (x, y) in docs.iter().zip(&back) {
        assert_eq!((&x.id, &x.text, &x.metadata), (&y.id, &y.text, &y.metadata));
        assert_eq!(x.chunks, y.chunks);
        assert_eq!(x.terms.is_some(), y.terms.is_some());
    }
    // Cut anywhere, it is refused rather than half read.
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(decode(&bytes[..cut]).is_err());
    }
    n.finish();
}
