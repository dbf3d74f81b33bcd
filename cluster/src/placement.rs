//! Replica placement: which live nodes hold (and answer queries for) each shard.
//!
//! Rendezvous (highest-random-weight) hashing: every node scores every shard with a
//! hash of (collection, shard, node id), and a shard's replicas are the `R` live
//! nodes with the highest scores. Why: every node computes the same placement from
//! the same membership with no coordination, and when a node leaves only the shards
//! it held move (each to the next node in its own ranking), while a joining node
//! takes about 1/N of the replicas, from every other node alike.
//!
//! Manual overrides (`PUT /cluster/placement/...`) live in the key-value bucket
//! [`OVERRIDES`], written by compare-and-set on the entry's revision, so that two
//! admins never overwrite each other unseen. An override names the nodes of one
//! shard; those of them alive hold it (none alive: rendezvous again).

use std::collections::{BTreeMap, HashMap};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::status::NodeStatus;
use crate::{nats, Error, Node, Result};

/// The bucket of manual overrides, keyed `NAME.SHARD`.
pub const OVERRIDES: &str = "engram-placement";

/// A shard's score on a node: FNV-1a of the three, then a 64-bit finaliser
/// (splitmix64's), so that nearby node ids do not get nearby scores.
pub fn weight(collection: &str, shard: u32, node: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = collection
        .bytes()
        .chain([0])
        .chain(shard.to_le_bytes())
        .chain(node.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The `r` nodes of `nodes` with the highest weight for the shard, best first
/// (all of them when fewer are given).
pub fn rendezvous(collection: &str, shard: u32, nodes: &[u32], r: u32) -> Vec<u32> {
    let mut ranked: Vec<(u64, u32)> = nodes
        .iter()
        .map(|&n| (weight(collection, shard, n), n))
        .collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.dedup_by_key(|(_, n)| *n);
    ranked
        .into_iter()
        .take(r as usize)
        .map(|(_, n)| n)
        .collect()
}

/// A manual override of one shard's replicas, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Override {
    /// The nodes that hold the shard (those alive); empty: back to rendezvous.
    pub nodes: Vec<u32>,
}

/// Overrides by (collection, shard), with each entry's revision.
pub type Overrides = HashMap<(String, u32), (Override, u64)>;

/// A collection as placement sees it: (name, shards, replication factor).
pub type Placed = (String, u32, u32);

/// The replicas of one shard: the override's live nodes, else rendezvous.
pub fn replicas(
    collection: &str,
    shard: u32,
    replication: u32,
    live: &[u32],
    overrides: &Overrides,
) -> Vec<u32> {
    if let Some((o, _)) = overrides.get(&(collection.to_string(), shard)) {
        let alive: Vec<u32> = o
            .nodes
            .iter()
            .copied()
            .filter(|n| live.contains(n))
            .collect();
        if !alive.is_empty() {
            return alive;
        }
    }
    rendezvous(collection, shard, live, replication)
}

/// Every shard's replicas, by (collection, shard).
pub fn place(
    collections: &[Placed],
    live: &[u32],
    overrides: &Overrides,
) -> BTreeMap<(String, u32), Vec<u32>> {
    let mut out = BTreeMap::new();
    for (name, shards, replication) in collections {
        for shard in 0..*shards {
            let r = replicas(name, shard, *replication, live, overrides);
            out.insert((name.clone(), shard), r);
        }
    }
    out
}

/// The placement now: this node's collections over the live `nodes`, with the
/// stored overrides (kept, for their revisions).
pub(crate) async fn current(node: &Node, nodes: &[NodeStatus]) -> Result<Current> {
    let live: Vec<u32> = nodes.iter().map(|n| n.node_id).collect();
    let collections: Vec<Placed> = node
        .store
        .store()
        .list_collections()
        .into_iter()
        .map(|c| (c.config.name, c.config.shards, c.config.replication))
        .collect();
    let overrides = read_overrides(node).await?;
    Ok(Current {
        replicas: place(&collections, &live, &overrides),
        overrides,
    })
}

/// Every shard's replicas, and the overrides they came from.
pub struct Current {
    pub replicas: BTreeMap<(String, u32), Vec<u32>>,
    pub overrides: Overrides,
}

pub(crate) async fn bucket(node: &Node) -> Result<kv::Store> {
    node.js
        .create_key_value(kv::Config {
            bucket: OVERRIDES.to_string(),
            history: 1,
            num_replicas: node.config.replicas(),
            ..Default::default()
        })
        .await
        .map_err(nats)
}

fn key(collection: &str, shard: u32) -> String {
    format!("{collection}.{shard}")
}

/// Every stored override.
pub(crate) async fn read_overrides(node: &Node) -> Result<Overrides> {
    let kv = bucket(node).await?;
    let mut out = HashMap::new();
    let mut keys = kv.keys().await.map_err(nats)?;
    while let Some(k) = keys.next().await {
        let k = k.map_err(nats)?;
        let Some((name, shard)) = k.rsplit_once('.') else {
            continue;
        };
        let Ok(shard) = shard.parse::<u32>() else {
            continue;
        };
        if let Some(entry) = kv.entry(&k).await.map_err(nats)? {
            if let Ok(o) = serde_json::from_slice::<Override>(&entry.value) {
                out.insert((name.to_string(), shard), (o, entry.revision));
            }
        }
    }
    Ok(out)
}

/// Stores an override of `collection`'s `shard`, provided the entry's revision is
/// still `revision` (0: no entry yet). Returns the new revision; a stale revision
/// is [`Error::Conflict`].
pub(crate) async fn write_override(
    node: &Node,
    collection: &str,
    shard: u32,
    placement: &Override,
    revision: u64,
) -> Result<u64> {
    let kv = bucket(node).await?;
    let bytes = serde_json::to_vec(placement).expect("serialises");
    let k = key(collection, shard);
    let written = if revision == 0 {
        kv.create(&k, bytes.into()).await.map_err(|e| e.to_string())
    } else {
        kv.update(&k, bytes.into(), revision)
            .await
            .map_err(|e| e.to_string())
    };
    written.map_err(|e| {
        Error::Conflict(format!(
            "the placement of shard {shard} of '{collection}' changed since revision {revision} ({e}); read GET /cluster and send its revision"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(nodes: &[u32]) -> BTreeMap<(String, u32), Vec<u32>> {
        let colls = vec![("a".to_string(), 64, 2), ("b".to_string(), 64, 2)];
        place(&colls, nodes, &Overrides::new())
    }

    #[test]
    fn rendezvous_is_stable_and_ordered() {
        let nodes = [1, 2, 3, 4, 5];
        let r = rendezvous("docs", 3, &nodes, 3);
        assert_eq!(r.len(), 3);
        assert_eq!(r, rendezvous("docs", 3, &[5, 4, 3, 2, 1], 3), "order-free");
        assert_eq!(
            rendezvous("docs", 3, &nodes, 9).len(),
            5,
            "clamped to nodes"
        );
        assert!(rendezvous("docs", 3, &[], 3).is_empty());
        assert_ne!(weight("docs", 3, 1), weight("docs", 3, 2));
    }

    #[test]
    fn removing_a_node_moves_only_its_replicas() {
        let before = placed(&[1, 2, 3, 4]);
        let after = placed(&[1, 2, 4]);
        let mut moved = 0;
        for (shard, was) in &before {
            let now = &after[shard];
            if was.contains(&3) {
                // The survivors keep their place; node 3's goes to one other node.
                let kept: Vec<u32> = was.iter().copied().filter(|&n| n != 3).collect();
                assert!(kept.iter().all(|n| now.contains(n)), "{shard:?}");
                moved += 1;
            } else {
                assert_eq!(was, now, "{shard:?} moved though node 3 did not hold it");
            }
        }
        assert!(moved > 0);
        // And node 3 coming back takes exactly its old replicas again.
        assert_eq!(placed(&[1, 2, 3, 4]), before);
    }

    #[test]
    fn replicas_spread_evenly() {
        let colls = vec![("docs".to_string(), 256, 3)];
        let p = place(&colls, &[1, 2, 3, 4, 5, 6], &Overrides::new());
        let mut per_node: BTreeMap<u32, usize> = BTreeMap::new();
        for r in p.values() {
            assert_eq!(r.len(), 3);
            for n in r {
                *per_node.entry(*n).or_default() += 1;
            }
        }
        // 768 replicas over 6 nodes: 128 each on average.
        for (n, c) in &per_node {
            assert!((100..=156).contains(c), "node {n} holds {c} of 768");
        }
    }

    #[test]
    fn overrides_win_while_one_of_their_nodes_lives() {
        let mut o = Overrides::new();
        o.insert(("docs".into(), 0), (Override { nodes: vec![7, 2] }, 1));
        assert_eq!(replicas("docs", 0, 3, &[1, 2, 3], &o), vec![2]);
        assert_eq!(
            replicas("docs", 0, 3, &[1, 3], &o),
            rendezvous("docs", 0, &[1, 3], 3)
        );
        assert_eq!(
            replicas("docs", 1, 2, &[1, 2, 3], &o),
            rendezvous("docs", 1, &[1, 2, 3], 2)
        );
    }
}
