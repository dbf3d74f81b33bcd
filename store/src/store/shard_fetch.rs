//! The fetch phase of a scattered query: once the asking node has merged every
//! shard's ranking into the collection's best k ([`Store::gather`]), each winner's
//! document (its text, metadata, best chunk) is read by a node that keeps the
//! records of the winner's shard, and the hits are put back in the ranking's order
//! ([`Store::answer_gathered`]). Only the k winners travel, as in Elasticsearch's
//! query-then-fetch, not every shard's candidates.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::query::{query_terms, Ranked, Sides};
use super::replicated_query::{Gathered, ReadAhead, ShardHit, ShardQuery};
use super::Store;
use crate::api::{Hit, Include, QueryRequest, QueryResponse};
use crate::collection::{shard_of, Collection};
use crate::error::{Error, Result};
use crate::limits::check;

/// The winners of one shard whose documents the asking node wants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HitFetch {
    pub collection: String,
    pub shard: u32,
    /// Best first.
    pub hits: Vec<ShardHit>,
    /// The query's text: a keyword hit's chunk is the one holding its words.
    pub text: Option<String>,
    pub include: Option<Vec<Include>>,
    /// The last write the rankings had applied (`ShardRanking::applied`).
    pub min_seq: u64,
}

/// A shard's hits, in the order asked; `None` for a document deleted since it was
/// ranked. Fewer than asked when the rest would not fit in one answer: ask again
/// for the rest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FetchedHits {
    pub hits: Vec<Option<Hit>>,
}

impl Gathered {
    /// One fetch per shard holding winners not read ahead, each listing that shard's
    /// winners best first.
    pub fn fetches(&self, name: &str, req: &QueryRequest) -> Vec<HitFetch> {
        let mut by_shard: Vec<HitFetch> = Vec::new();
        let unread = self
            .winners
            .iter()
            .filter(|(_, r)| self.read_ahead(r).is_none());
        for (shard, r) in unread {
            let hit = ShardHit {
                id: r.id.to_string(),
                score: r.score,
                chunk: r.chunk,
            };
            match by_shard.iter_mut().find(|f| f.shard == *shard) {
                Some(f) => f.hits.push(hit),
                None => by_shard.push(HitFetch {
                    collection: name.to_string(),
                    shard: *shard,
                    hits: vec![hit],
                    text: req.text.clone(),
                    include: req.include.clone(),
                    min_seq: self.applied,
                }),
            }
        }
        by_shard
    }
}

impl Store {
    /// Reads the documents of `f`'s hits into hits, in order, stopping before the
    /// answer would pass `max_bytes` (as JSON; at least one hit is always read, and
    /// one alone over `max_bytes` is refused).
    pub fn fetch_hits(&self, f: &HitFetch, max_bytes: usize) -> Result<FetchedHits> {
        if f.min_seq > 0 {
            self.wait_applied(f.min_seq)?;
        }
        let coll = self.collection(&f.collection)?;
        check(
            crate::error::LimitKind::TopK,
            f.hits.len(),
            self.limits.max_k,
        )?;
        let shards = coll.config.shards;
        if let Some(h) = f.hits.iter().find(|h| shard_of(&h.id, shards) != f.shard) {
            return Err(Error::invalid(
                "hit fetch",
                format!("document '{}' is not in shard {}", h.id, f.shard),
            ));
        }
        let req = QueryRequest {
            text: f.text.clone(),
            include: f.include.clone(),
            ..Default::default()
        };
        let hits = self.read_hits(&coll, &req, &f.hits, max_bytes)?;
        if let (true, Some(h)) = (hits.is_empty(), f.hits.first()) {
            return Err(Error::invalid(
                "include",
                format!("the hit of document '{}' takes more bytes than one message between nodes holds ({max_bytes}): leave \"text\" out of include, or raise the NATS servers' max_payload", h.id),
            ));
        }
        Ok(FetchedHits { hits })
    }

    /// The documents of a shard's best `q.prefetch` of each side, read with its
    /// ranking (`ShardQuery::prefetch`), as many as `q.prefetch_bytes` holds.
    pub(super) fn read_ahead(
        &self,
        coll: &Collection,
        q: &ShardQuery,
        sides: &Sides,
    ) -> Result<Vec<ReadAhead>> {
        if q.prefetch == 0 {
            return Ok(Vec::new());
        }
        let mut seen = HashSet::new();
        let candidates: Vec<ShardHit> = sides
            .vector
            .iter()
            .take(q.prefetch)
            .chain(sides.keyword.iter().take(q.prefetch))
            .filter(|r| seen.insert(r.id.clone()))
            .map(|r| ShardHit {
                id: r.id.to_string(),
                score: r.score,
                chunk: r.chunk,
            })
            .collect();
        let req = QueryRequest {
            text: q.text.clone(),
            include: q.include.clone(),
            ..Default::default()
        };
        let hits = self.read_hits(coll, &req, &candidates, q.prefetch_bytes)?;
        Ok(candidates
            .into_iter()
            .zip(hits)
            .filter_map(|(c, hit)| {
                Some(ReadAhead {
                    chunk: c.chunk,
                    hit: hit?,
                })
            })
            .collect())
    }

    /// `hits` read in order into hits (`None`: deleted meanwhile) until the next
    /// would take the answer past `max_bytes` (as JSON; not measured when
    /// `usize::MAX`, a read for this node itself).
    fn read_hits(
        &self,
        coll: &Collection,
        req: &QueryRequest,
        hits: &[ShardHit],
        max_bytes: usize,
    ) -> Result<Vec<Option<Hit>>> {
        let terms = query_terms(req);
        let (mut out, mut bytes) = (Vec::new(), 0);
        for h in hits {
            let ranked = Ranked {
                id: h.id.as_str().into(),
                score: h.score,
                chunk: h.chunk,
            };
            let hit = self.hit(coll, req, ranked, &terms)?;
            if max_bytes < usize::MAX {
                bytes += serde_json::to_vec(&hit).map_or(0, |b| b.len()) + 1;
                if bytes > max_bytes {
                    break;
                }
            }
            out.push(hit);
        }
        Ok(out)
    }

    /// The response to a scattered query from its winners and each shard's fetched
    /// hits (`fetched`: per shard, in the order [`Gathered::fetches`] listed them).
    pub fn answer_gathered(
        &self,
        name: &str,
        req: &QueryRequest,
        gathered: Gathered,
        fetched: Vec<(u32, Vec<Option<Hit>>)>,
        started: Instant,
    ) -> Result<QueryResponse> {
        let coll = self.collection(name)?;
        let mut by_shard: HashMap<u32, std::vec::IntoIter<Option<Hit>>> = fetched
            .into_iter()
            .map(|(shard, hits)| (shard, hits.into_iter()))
            .collect();
        let mut hits = Vec::with_capacity(gathered.winners.len());
        for (shard, r) in &gathered.winners {
            if let Some(hit) = gathered.read_ahead(r) {
                hits.push(hit);
                continue;
            }
            let hit = by_shard.get_mut(shard).and_then(Iterator::next).flatten();
            match hit {
                Some(hit) if hit.id == *r.id => hits.push(hit),
                Some(hit) => {
                    return Err(Error::Unavailable(format!(
                        "shard {shard} answered document '{}' for '{}'; retry",
                        hit.id, r.id
                    )))
                }
                // Deleted since it was ranked, as on one machine.
                None => {}
            }
        }
        Ok(self.answered(&coll, req, hits, gathered.cut, started))
    }
}

/// A scattered query answered in-process: `parts` gathered by `store`, each shard's
/// winners read by `fetch` page by page (what `engram-cluster` does over NATS).
#[cfg(test)]
pub(crate) fn gather_with(
    store: &Store,
    name: &str,
    req: &QueryRequest,
    parts: Vec<super::ShardRanking>,
    fetch: impl Fn(&HitFetch) -> Result<FetchedHits>,
) -> Result<QueryResponse> {
    let started = Instant::now();
    let gathered = store.gather(name, req, parts)?;
    let mut fetched = Vec::new();
    for mut f in gathered.fetches(name, req) {
        let mut hits = Vec::new();
        while !f.hits.is_empty() {
            let page = fetch(&f)?.hits;
            assert!(!page.is_empty(), "every page reads a hit");
            f.hits.drain(..page.len());
            hits.extend(page);
        }
        fetched.push((f.shard, hits));
    }
    store.answer_gathered(name, req, gathered, fetched, started)
}
