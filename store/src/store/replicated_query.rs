//! Cluster mode's queries, split by shard (scatter/gather). The node a query
//! reaches validates it and embeds its text once ([`Store::shard_queries`]); one
//! replica of each shard ranks that shard's documents ([`Store::query_shard`]); the
//! first node merges the shards' rankings into the collection's and answers
//! ([`Store::gather`]) with the same combining, fusion and hit assembly as a query on
//! one machine (`query::Store::respond`), so a sharded answer is the one-machine
//! answer.
//!
//! The shards send only ids, scores and chunk ids; the first node then reads the k
//! winners' documents where they are kept, a fetch phase as Elasticsearch's
//! query-then-fetch ([`Gathered::fetches`], `shard_fetch`): its own shards from its
//! own records, the others from one of their replicas, so that a node need not
//! hold the records of shards placed elsewhere.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::query::{best, side_depth, Ranked, Search, Sides};
use super::Store;
use crate::api::{Hit, Include, QueryRequest};
use crate::collection::{shard_mask, shard_of};
use crate::error::{Error, LimitKind, Result};
use crate::filter::Filter;
use crate::index::Metric;
use crate::keyword::TermStats;
use crate::limits::check;

/// One shard's part of a query, as the first node sends it to a replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardQuery {
    pub collection: String,
    pub shard: u32,
    /// The vector side's query (text already embedded), if the mode has one.
    pub vector: Option<Vec<f32>>,
    /// The keyword side's query text, if the mode has one.
    pub text: Option<String>,
    /// Documents per side.
    pub depth: usize,
    pub ef: usize,
    pub filter: Option<serde_json::Value>,
    /// Read-your-writes: the replica answers once it has applied this write.
    pub min_seq: Option<u64>,
    /// The corpus context version the vector side was embedded under, when the
    /// asking node embedded the query's text: a replica holding another version (a
    /// new context being installed node by node) would rank the shard's vectors
    /// against a query from another space, so it refuses instead (503, retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<u64>,
    /// The replica also reads the documents of its best `prefetch` of each side
    /// (0: none), as many as `prefetch_bytes` (as JSON) holds, with the query's
    /// `include`: a shard's winners are among them, so the fetch phase's second
    /// round trip is needed only for what did not fit.
    #[serde(default)]
    pub prefetch: usize,
    #[serde(default)]
    pub prefetch_bytes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<Include>>,
    /// The collection's BM25 statistics for the text, summed over every shard by
    /// the asking node ([`Store::term_stats`]); None: the replica's own counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_stats: Option<TermStats>,
}

/// The most bytes (as JSON) of documents a replica reads ahead with its ranking by
/// default: a quarter of NATS's default `max_payload`, so that the ranking's answer
/// fits one message beside them (the cluster lowers it under a smaller one).
pub const PREFETCH_BYTES: usize = 256 * 1024;

/// A ranked document on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardHit {
    pub id: String,
    pub score: f32,
    pub chunk: Option<u64>,
}

/// One shard's rankings, best first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ShardRanking {
    pub vector: Vec<ShardHit>,
    pub keyword: Vec<ShardHit>,
    /// The shard's vector walk may have missed documents (see `QueryResponse::exhaustive`).
    pub cut: bool,
    /// The last write the ranking node had applied: reading the winners' documents
    /// from another replica waits for it, so a document ranked is a document found.
    #[serde(default)]
    pub applied: u64,
    /// The documents read ahead (`ShardQuery::prefetch`), best first; a document
    /// deleted meanwhile is left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hits: Vec<ReadAhead>,
}

/// A document read ahead, as a hit at the chunk it was ranked with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadAhead {
    pub chunk: Option<u64>,
    pub hit: Hit,
}

/// A scattered query's best k, merged from every shard's rankings, before their
/// documents are read.
pub struct Gathered {
    /// Best first, each with its shard.
    pub(super) winners: Vec<(u32, Ranked)>,
    pub(super) cut: bool,
    pub(super) applied: u64,
    /// The shards' documents read ahead, by id.
    pub(super) prefetched: HashMap<String, ReadAhead>,
}

impl Gathered {
    /// Winner `r`'s hit if it was read ahead at the chunk it won with (hybrid
    /// fusion may place it elsewhere), with its score in the collection's ranking.
    pub(super) fn read_ahead(&self, r: &Ranked) -> Option<Hit> {
        let ahead = self.prefetched.get(&*r.id)?;
        (ahead.chunk == r.chunk).then(|| Hit {
            score: r.score,
            ..ahead.hit.clone()
        })
    }
}

fn to_wire(list: Vec<Ranked>) -> Vec<ShardHit> {
    list.into_iter()
        .map(|r| ShardHit {
            id: r.id.to_string(),
            score: r.score,
            chunk: r.chunk,
        })
        .collect()
}

/// The best `depth` of several shards' lists (documents are in one shard each),
/// `lower_first` for euclidean distances; ties by id, so every node merges alike.
fn merge(lists: Vec<Vec<ShardHit>>, depth: usize, lower_first: bool) -> Vec<Ranked> {
    let mut all: Vec<ShardHit> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        let by_score = if lower_first {
            a.score.total_cmp(&b.score)
        } else {
            b.score.total_cmp(&a.score)
        };
        by_score.then_with(|| a.id.cmp(&b.id))
    });
    all.into_iter()
        .take(depth)
        .map(|h| Ranked {
            id: h.id.into(),
            score: h.score,
            chunk: h.chunk,
        })
        .collect()
}

/// Whether two shard queries are one query's (all but the shard alike).
fn same_query(a: &ShardQuery, b: &ShardQuery) -> bool {
    a == &ShardQuery {
        shard: a.shard,
        ..b.clone()
    }
}

impl Store {
    /// One query per shard of the collection, validated and embedded here (and
    /// waiting for `min_seq` here: this node assembles the hits).
    pub fn shard_queries(&self, name: &str, req: &QueryRequest) -> Result<Vec<ShardQuery>> {
        let (coll, q) = self.prepare_query(name, req)?;
        let (vector, text) = q.sides();
        let context = (vector.is_some() && req.vector.is_none()).then(|| coll.context_version());
        Ok((0..coll.config.shards)
            .map(|shard| ShardQuery {
                collection: name.to_string(),
                shard,
                vector: vector.map(<[f32]>::to_vec),
                text: text.map(str::to_string),
                depth: q.search.depth,
                ef: q.search.ef,
                filter: req.filter.clone(),
                min_seq: req.min_seq,
                context,
                prefetch: req.k.unwrap_or(10),
                prefetch_bytes: PREFETCH_BYTES,
                include: req.include.clone(),
                term_stats: None,
            })
            .collect())
    }

    /// Ranks one shard's documents (a replica's part of a query).
    pub fn query_shard(&self, q: &ShardQuery) -> Result<ShardRanking> {
        self.query_shards(std::slice::from_ref(q))
    }

    /// Ranks the documents of several shards of one query together, with one walk
    /// of the collection's graph filtered to those shards (unfiltered when they are
    /// all the collection's): the asking node's own shards, which it ranks
    /// in-process rather than over NATS. The best `depth` of the shards together is
    /// what merging their separate rankings would keep, so [`Store::gather`]
    /// takes this as one part among the remote shards' rankings.
    pub fn query_shards(&self, queries: &[ShardQuery]) -> Result<ShardRanking> {
        let Some(q) = queries.first() else {
            return Ok(ShardRanking::default());
        };
        if queries.iter().any(|o| !same_query(o, q)) {
            return Err(Error::invalid(
                "shard query",
                "shards ranked together must share one query",
            ));
        }
        if let Some(seq) = q.min_seq {
            self.wait_applied(seq)?;
        }
        let coll = self.collection(&q.collection)?;
        let shards = coll.config.shards;
        let only = shard_mask(&q.collection, shards, queries.iter().map(|o| o.shard))?;
        if let Some(asked) = q.context.filter(|&v| v != coll.context_version()) {
            return Err(Error::Unavailable(format!(
                "collection '{}' is embedded under corpus context {} on this node, the query under {asked}: a new context is being installed; retry",
                q.collection,
                coll.context_version()
            )));
        }
        let scope = coll.scope();
        if let Some(o) = queries.iter().find(|o| !scope.holds_shard(o.shard)) {
            // Placement moved it off this node a moment ago: ask another replica.
            return Err(Error::Unavailable(format!(
                "shard {} of collection '{}' is not in this node's graph (placed elsewhere now); retry",
                o.shard, q.collection
            )));
        }
        check(LimitKind::Ef, q.ef, self.limits.max_ef)?;
        check(
            LimitKind::TopK,
            q.depth,
            crate::store::hybrid_depth(self.limits.max_k),
        )?;
        let search = Search {
            depth: q.depth,
            ef: q.ef,
            filter: q.filter.as_ref().map(Filter::parse).transpose()?,
            term_stats: q.term_stats.clone(),
        };
        // Filtered unless every shard is asked for, even when the graph holds no
        // other shard: the keyword index holds every shard's documents.
        let every = only.iter().all(|&s| s);
        let sides = self.rank(
            &coll,
            q.vector.as_deref(),
            q.text.as_deref(),
            &search,
            (!every).then_some(only.as_slice()),
        );
        let hits = self.read_ahead(&coll, q, &sides)?;
        Ok(ShardRanking {
            vector: to_wire(sides.vector),
            keyword: to_wire(sides.keyword),
            cut: sides.cut,
            applied: self.applied_seq(),
            hits,
        })
    }

    /// BM25's counts for `text` over `shards` of collection `name` (a scattered
    /// keyword query's first round, see `crate::keyword::TermStats`), once this node
    /// has applied `min_seq`.
    pub fn term_stats(
        &self,
        name: &str,
        text: &str,
        shards: &[u32],
        min_seq: Option<u64>,
    ) -> Result<TermStats> {
        if let Some(seq) = min_seq {
            self.wait_applied(seq)?;
        }
        let coll = self.collection(name)?;
        let only = shard_mask(name, coll.config.shards, shards.iter().copied())?;
        Ok(coll.keywords().term_stats(text, Some(&only)))
    }

    /// Merges every shard's rankings of `req` into the collection's best k, as one
    /// machine ranks and fuses them.
    pub fn gather(
        &self,
        name: &str,
        req: &QueryRequest,
        mut parts: Vec<ShardRanking>,
    ) -> Result<Gathered> {
        let coll = self.collection(name)?;
        let depth = side_depth(req);
        let cut = parts.iter().any(|p| p.cut);
        let applied = parts.iter().map(|p| p.applied).max().unwrap_or(0);
        let prefetched = parts
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.hits))
            .map(|h| (h.hit.id.clone(), h))
            .collect();
        let (vector, keyword): (Vec<_>, Vec<_>) =
            parts.into_iter().map(|p| (p.vector, p.keyword)).unzip();
        let sides = Sides {
            vector: merge(vector, depth, coll.config.distance == Metric::Euclidean),
            keyword: merge(keyword, depth, false),
            cut,
        };
        let shards = coll.config.shards;
        let winners = best(&coll, req, sides)
            .into_iter()
            .map(|r| (shard_of(&r.id, shards), r))
            .collect();
        Ok(Gathered {
            winners,
            cut,
            applied,
            prefetched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, score: f32) -> ShardHit {
        ShardHit {
            id: id.into(),
            score,
            chunk: None,
        }
    }

    #[test]
    fn shards_merge_by_score_in_the_metric_s_direction() {
        let lists = || vec![vec![hit("a", 0.9), hit("c", 0.2)], vec![hit("b", 0.5)]];
        let ids = |r: Vec<Ranked>| r.into_iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(merge(lists(), 2, false)), ["a", "b"]);
        assert_eq!(ids(merge(lists(), 5, true)), ["c", "b", "a"]);
        // Ties: by id.
        assert_eq!(
            ids(merge(
                vec![vec![hit("z", 1.0)], vec![hit("y", 1.0)]],
                2,
                false
            )),
            ["y", "z"]
        );
    }
}
