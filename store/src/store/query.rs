//! Queries: vector, keyword (BM25) and hybrid search over one collection, and
//! turning a ranking of documents into hits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::Store;
use crate::api::{ChunkSpan, Hit, Include, QueryMode, QueryRequest, QueryResponse};
use crate::collection::{shard_of, Collection, DocumentRecord};
use crate::error::{Error, LimitKind, Result};
use crate::filter::Filter;
use crate::fusion::Fusion;
use crate::index::Metric;
use crate::keyword::{tokenize, TermStats};
use crate::limits::check;
use crate::storage::VectorRecord;
use crate::validate;

/// A ranked document: its id, its score, and its best chunk when the vector
/// index found it.
pub(super) struct Ranked {
    pub(super) id: Arc<str>,
    pub(super) score: f32,
    pub(super) chunk: Option<u64>,
}

/// What a request asks of the indexes, once validated.
enum Plan<'a> {
    Vector(Vec<f32>),
    Keyword(&'a str),
    /// Both sides; the request's fusion (validated) combines them.
    Hybrid {
        vector: Vec<f32>,
        text: &'a str,
    },
}

impl Plan<'_> {
    /// The query vector and the query text of the sides the plan searches.
    fn sides(&self) -> (Option<&[f32]>, Option<&str>) {
        match self {
            Plan::Vector(v) => (Some(v), None),
            Plan::Keyword(t) => (None, Some(t)),
            Plan::Hybrid { vector, text } => (Some(vector), Some(text)),
        }
    }
}

/// How deep each side ranks and how widely the graph is walked, with the filter.
pub(super) struct Search {
    pub(super) depth: usize,
    pub(super) ef: usize,
    pub(super) filter: Option<Filter>,
    /// BM25's collection statistics when they come from elsewhere (a scattered
    /// query's shards, summed); None: the keyword index's own.
    pub(super) term_stats: Option<TermStats>,
}

/// A validated query: its plan and its search settings.
pub(super) struct Prepared<'a> {
    plan: Plan<'a>,
    pub(super) search: Search,
}

impl Prepared<'_> {
    /// The query vector and text of the sides to rank.
    pub(super) fn sides(&self) -> (Option<&[f32]>, Option<&str>) {
        self.plan.sides()
    }
}

/// The two rankings of a query before they are combined (one side is empty unless
/// hybrid); `cut` as in [`vector_ranking`].
#[derive(Default)]
pub(super) struct Sides {
    pub(super) vector: Vec<Ranked>,
    pub(super) keyword: Vec<Ranked>,
    pub(super) cut: bool,
}

/// How many documents each side of a hybrid query hands to fusion: a document
/// ranked just below k by both sides may well belong in the fused top k.
pub fn hybrid_depth(k: usize) -> usize {
    (k * 3).max(30)
}

/// How deep each side of `req` ranks: k, or the hybrid depth.
pub(super) fn side_depth(req: &QueryRequest) -> usize {
    let k = req.k.unwrap_or(10);
    match req.mode.unwrap_or_default() {
        QueryMode::Hybrid => hybrid_depth(k),
        _ => k,
    }
}

impl Store {
    /// The best documents for a query. Vector mode: nearest chunks, a
    /// document scoring as its best chunk. Keyword mode: BM25 over document
    /// texts. Hybrid: both rankings fused. The filter applies to every mode.
    pub fn query(&self, name: &str, req: &QueryRequest) -> Result<QueryResponse> {
        if let Some(scatter) = self.scatter() {
            // Cluster mode: this node's graph may hold only its own shards.
            return scatter.query(name, req);
        }
        let started = Instant::now();
        let (coll, q) = self.prepare_query(name, req)?;
        let (vector, text) = q.sides();
        let sides = self.rank(&coll, vector, text, &q.search, None);
        self.respond(&coll, req, sides, started)
    }

    /// Waits for `min_seq`, validates the request against the collection and
    /// embeds its text where the vector side needs it.
    pub(super) fn prepare_query<'a>(
        &self,
        name: &str,
        req: &'a QueryRequest,
    ) -> Result<(Arc<Collection>, Prepared<'a>)> {
        if let Some(seq) = req.min_seq {
            self.wait_applied(seq)?;
        }
        let coll = self.collection(name)?;
        let k = req.k.unwrap_or(10);
        validate::top_k(k, &self.limits)?;
        let ef = req.ef.unwrap_or(coll.config.ef_search);
        check(LimitKind::Ef, ef, self.limits.max_ef)?;
        let filter = req.filter.as_ref().map(Filter::parse).transpose()?;
        let plan = self.plan(&coll, req)?;
        let depth = side_depth(req);
        let prepared = Prepared {
            plan,
            search: Search {
                depth,
                ef,
                filter,
                term_stats: None,
            },
        };
        Ok((coll, prepared))
    }

    /// Ranks each side the query searches, `q.depth` deep, among the documents of
    /// the shards `only` marks when given (`only[s]`: shard `s` is searched; cluster
    /// mode's scatter, see `replicated_query`), with one walk either way.
    pub(super) fn rank(
        &self,
        coll: &Collection,
        vector: Option<&[f32]>,
        text: Option<&str>,
        q: &Search,
        only: Option<&[bool]>,
    ) -> Sides {
        let filter = q.filter.as_ref();
        let shards = coll.config.shards;
        let in_shard = |id: &str| only.is_none_or(|m| m[shard_of(id, shards) as usize]);
        let (vector, cut) = match vector {
            Some(v) => vector_ranking(
                coll,
                v,
                q.depth,
                q.ef,
                self.limits.max_ef,
                filter,
                &in_shard,
            ),
            None => (Vec::new(), false),
        };
        let keyword = text
            .map(|t| keyword_ranking(coll, t, q, &in_shard))
            .unwrap_or_default();
        Sides {
            vector,
            keyword,
            cut,
        }
    }

    /// Combines the sides as the request's mode says (hybrid: fused) and turns the
    /// best k into hits.
    pub(super) fn respond(
        &self,
        coll: &Collection,
        req: &QueryRequest,
        sides: Sides,
        started: Instant,
    ) -> Result<QueryResponse> {
        let cut = sides.cut;
        let terms = query_terms(req);
        let mut hits = Vec::new();
        for r in best(coll, req, sides) {
            hits.extend(self.hit(coll, req, r, &terms)?);
        }
        Ok(self.answered(coll, req, hits, cut, started))
    }

    /// The response with `hits`, counted as hits and logged as the collection's
    /// questions (both kept where the query was asked).
    pub(super) fn answered(
        &self,
        coll: &Collection,
        req: &QueryRequest,
        hits: Vec<Hit>,
        cut: bool,
        started: Instant,
    ) -> QueryResponse {
        let name = coll.config.name.as_str();
        coll.hits
            .record(&self.storage, name, hits.iter().map(|h| h.id.as_str()));
        if let Some(text) = &req.text {
            let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
            coll.questions.record(&self.storage, name, text, &ids);
        }
        QueryResponse {
            hits,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            exhaustive: !cut,
            warning: cut.then(|| {
                "the graph walk found fewer matching vectors than it looked for (the filter matched few of those it reached, so it stopped at its work limit, or it could reach no more), and too many (or the collection is too large) to score each: matching documents may be missing; raise ef, or use mode \"keyword\" with the same filter".to_string()
            }),
        }
    }

    /// Checks that the request's fields fit its mode and the collection, and
    /// embeds the query text where the vector side needs it.
    fn plan<'a>(&self, coll: &Collection, req: &'a QueryRequest) -> Result<Plan<'a>> {
        let cfg = &coll.config;
        let name = &cfg.name;
        let mode = req.mode.unwrap_or_default();
        if req.fusion.is_some() && mode != QueryMode::Hybrid {
            return Err(Error::invalid(
                "fusion",
                format!(
                    "fusion only applies to mode 'hybrid', not '{}'; drop it or set \"mode\": \"hybrid\"",
                    mode.as_str()
                ),
            ));
        }
        let own_vector = |v: &Vec<f32>| -> Result<Vec<f32>> {
            validate::vector("vector", name, v, cfg.dimension, cfg.distance)?;
            Ok(v.clone())
        };
        let text = |t: &'a String| -> Result<&'a str> {
            validate::text("text", t, &self.limits)?;
            Ok(t.as_str())
        };
        match mode {
            QueryMode::Vector => match (&req.text, &req.vector, &cfg.embedder) {
                (Some(_), Some(_), _) => Err(Error::invalid(
                    "query",
                    "send either 'text' or 'vector', not both (or both with \"mode\": \"hybrid\" on a collection without an embedder)",
                )),
                (Some(t), None, Some(_)) => Ok(Plan::Vector(self.embed_query(coll, text(t)?)?)),
                (Some(_), None, None) => Err(Error::conflict(
                    "text",
                    format!("collection '{name}' has no embedder; query it with a vector, or with \"mode\": \"keyword\""),
                )),
                (None, Some(v), _) => Ok(Plan::Vector(own_vector(v)?)),
                (None, None, _) => Err(Error::invalid("query", "send 'text' or 'vector'")),
            },
            QueryMode::Keyword => match (&req.text, &req.vector) {
                (Some(t), None) => Ok(Plan::Keyword(text(t)?)),
                (_, Some(_)) => Err(Error::invalid(
                    "vector",
                    "keyword mode searches text only; drop 'vector', or use mode 'vector' or 'hybrid'",
                )),
                (None, None) => Err(Error::invalid("text", "keyword mode needs 'text'")),
            },
            QueryMode::Hybrid => {
                let Some(t) = &req.text else {
                    return Err(Error::invalid(
                        "text",
                        "hybrid mode needs 'text' (the keyword side searches it)",
                    ));
                };
                let t = text(t)?;
                let vector = match (&req.vector, &cfg.embedder) {
                    (None, Some(_)) => self.embed_query(coll, t)?,
                    (Some(v), None) => own_vector(v)?,
                    (Some(_), Some(e)) => {
                        return Err(Error::conflict(
                            "vector",
                            format!("collection '{name}' embeds text with '{e}'; in hybrid mode send only 'text'"),
                        ))
                    }
                    (None, None) => {
                        return Err(Error::conflict(
                            "vector",
                            format!("collection '{name}' has no embedder; hybrid mode needs 'vector' for the vector side as well as 'text'"),
                        ))
                    }
                };
                req.fusion.unwrap_or_default().validate()?;
                Ok(Plan::Hybrid { vector, text: t })
            }
        }
    }

    /// Embeds query text with the encoder (and corpus context) the collection's
    /// index was built under: if a new context was swapped in meanwhile, embeds
    /// again (at most a few times in a row).
    fn embed_query(&self, coll: &Collection, text: &str) -> Result<Vec<f32>> {
        let mut attempts = 0;
        loop {
            let (encoder, version) = self.text_encoder(coll)?;
            let v = encoder.embed(&[text])?.remove(0);
            attempts += 1;
            if version == coll.context_version() || attempts == 3 {
                return Ok(v);
            }
        }
    }

    /// Assembles one hit; `None` when the document was deleted meanwhile.
    pub(super) fn hit(
        &self,
        coll: &Collection,
        req: &QueryRequest,
        r: Ranked,
        terms: &HashSet<String>,
    ) -> Result<Option<Hit>> {
        let name = &coll.config.name;
        let needs_doc =
            r.chunk.is_none() || req.includes(Include::Text) || req.includes(Include::Metadata);
        let rec: Option<DocumentRecord> = if needs_doc {
            match self.storage.get_document(name, &r.id)? {
                Some(rec) => Some(rec),
                None => return Ok(None),
            }
        } else {
            None
        };
        let chunk = match (r.chunk, &rec) {
            (Some(c), _) => self.storage.get_vector(name, c)?,
            (None, Some(rec)) => self.best_keyword_chunk(name, rec, terms)?,
            (None, None) => None,
        };
        let Some(chunk) = chunk else {
            return Ok(None);
        };
        Ok(Some(Hit {
            id: r.id.to_string(),
            score: r.score,
            chunk: ChunkSpan {
                index: chunk.chunk_index,
                start: chunk.start,
                end: chunk.end,
            },
            text: rec
                .as_ref()
                .filter(|_| req.includes(Include::Text))
                .and_then(|r| r.text.clone()),
            metadata: rec
                .filter(|_| req.includes(Include::Metadata))
                .map(|r| r.metadata),
            vector: req.includes(Include::Vector).then_some(chunk.vector),
        }))
    }

    /// The chunk of a document holding the most occurrences of the query's
    /// terms (the first on ties): where a keyword hit points.
    fn best_keyword_chunk(
        &self,
        coll: &str,
        rec: &DocumentRecord,
        terms: &HashSet<String>,
    ) -> Result<Option<VectorRecord>> {
        let text = rec.text.as_deref().unwrap_or("");
        let mut best: Option<(usize, VectorRecord)> = None;
        for c in &rec.chunks {
            let Some(chunk) = self.storage.get_vector(coll, *c)? else {
                continue;
            };
            let span = text
                .get(chunk.start as usize..chunk.end as usize)
                .unwrap_or("");
            let count = tokenize(span).iter().filter(|t| terms.contains(*t)).count();
            if best.as_ref().is_none_or(|(n, _)| count > *n) {
                best = Some((count, chunk));
            }
        }
        Ok(best.map(|(_, c)| c))
    }
}

/// The best k of the sides, combined as the request's mode says (hybrid: fused).
pub(super) fn best(coll: &Collection, req: &QueryRequest, sides: Sides) -> Vec<Ranked> {
    let k = req.k.unwrap_or(10);
    let mut ranked = match req.mode.unwrap_or_default() {
        QueryMode::Vector => sides.vector,
        QueryMode::Keyword => sides.keyword,
        QueryMode::Hybrid => fuse(
            req.fusion.unwrap_or_default(),
            coll.config.distance,
            &sides.vector,
            &sides.keyword,
            k,
        ),
    };
    ranked.truncate(k);
    ranked
}

/// The query's words, which place a keyword hit on its chunk.
pub(super) fn query_terms(req: &QueryRequest) -> HashSet<String> {
    req.text
        .as_deref()
        .map(|t| tokenize(t).into_iter().collect())
        .unwrap_or_default()
}

/// How many chunks to ask the graph for and how wide to search: enough chunks to
/// fill `k` distinct documents (about `chunks_per_doc` each), no more than the index
/// holds (`len`), and neither over `max_ef` (but at least `k`, which the request's
/// own limit already bounds), so a long-document collection cannot widen a search
/// past the server's limit.
pub fn search_breadth(
    k: usize,
    chunks_per_doc: f64,
    ef: usize,
    len: usize,
    max_ef: usize,
) -> (usize, usize) {
    let cap = max_ef.max(k);
    let want = ((k as f64 * chunks_per_doc * 1.5).ceil() as usize + 4)
        .min(len.max(1))
        .min(cap);
    (want, ef.max(want).min(cap))
}

/// The k nearest documents by their best chunk, filtered inside the graph walk;
/// the flag is true when the walk stopped at its work limit (see `filter_budget`) or
/// could reach no more chunks, short of `ef`, and too many matched to score each
/// (`VectorIndex::search_filtered`).
fn vector_ranking(
    coll: &Collection,
    query: &[f32],
    k: usize,
    ef: usize,
    max_ef: usize,
    filter: Option<&Filter>,
    in_shard: &dyn Fn(&str) -> bool,
) -> (Vec<Ranked>, bool) {
    let index = coll.index();
    let (want, ef) = search_breadth(k, coll.chunks_per_doc(), ef, index.len(), max_ef);
    coll.with_chunks(|chunks| {
        let keep = |id: u64| match (filter, chunks.get(&id)) {
            (_, None) => false,
            (None, Some(doc)) => in_shard(&doc.id),
            (Some(f), Some(doc)) => in_shard(&doc.id) && f.matches(&doc.metadata),
        };
        let (found, cut) = index.search_filtered(query, want, ef, &keep);
        let mut seen = HashSet::new();
        let ranked = found
            .into_iter()
            .filter_map(|(id, score)| {
                let doc = chunks.get(&id)?;
                seen.insert(doc.id.clone()).then(|| Ranked {
                    id: doc.id.clone(),
                    score,
                    chunk: Some(id),
                })
            })
            .take(k)
            .collect();
        (ranked, cut)
    })
}

/// The `q.depth` best documents by BM25 among the live ones `q`'s filter accepts.
fn keyword_ranking(
    coll: &Collection,
    text: &str,
    q: &Search,
    in_shard: &dyn Fn(&str) -> bool,
) -> Vec<Ranked> {
    let filter = q.filter.as_ref();
    coll.with_documents(|docs| {
        let keep = |id: &str| {
            in_shard(id)
                && docs
                    .get(id)
                    .is_some_and(|e| filter.is_none_or(|f| f.matches(&e.doc.metadata)))
        };
        coll.keywords()
            .search(text, q.depth, &keep, q.term_stats.as_ref())
            .into_iter()
            .map(|(id, score)| Ranked {
                id,
                score,
                chunk: None,
            })
            .collect()
    })
}

/// Fuses the two rankings and keeps the best k; a document keeps the chunk
/// the vector side found for it.
fn fuse(
    fusion: Fusion,
    metric: Metric,
    vector: &[Ranked],
    keyword: &[Ranked],
    k: usize,
) -> Vec<Ranked> {
    // Fusion wants higher-is-better scores; euclidean distances are the opposite.
    let sign = if metric == Metric::Euclidean {
        -1.0
    } else {
        1.0
    };
    let v: Vec<(Arc<str>, f32)> = vector
        .iter()
        .map(|r| (r.id.clone(), sign * r.score))
        .collect();
    let kw: Vec<(Arc<str>, f32)> = keyword.iter().map(|r| (r.id.clone(), r.score)).collect();
    let chunks: HashMap<&Arc<str>, u64> = vector
        .iter()
        .filter_map(|r| Some((&r.id, r.chunk?)))
        .collect();
    fusion
        .fuse(&v, &kw)
        .into_iter()
        .take(k)
        .map(|(id, score)| Ranked {
            chunk: chunks.get(&id).copied(),
            id,
            score,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::search_breadth;

    #[test]
    fn the_search_breadth_never_exceeds_max_ef() {
        // 1,000 documents of 40 chunks each would ask for 60,004 chunks.
        assert_eq!(
            search_breadth(1000, 40.0, 64, 1_000_000, 10_000),
            (10_000, 10_000)
        );
        // Small requests are untouched: ef stands, want fills k documents.
        assert_eq!(search_breadth(10, 1.0, 64, 1_000, 10_000), (19, 64));
        assert_eq!(search_breadth(10, 2.0, 20, 1_000, 10_000), (34, 34));
        // A small index caps what is asked for, and a max_ef below k still yields k.
        assert_eq!(search_breadth(10, 3.0, 64, 12, 10_000), (12, 64));
        assert_eq!(search_breadth(50, 1.0, 64, 1_000, 20), (50, 50));
    }
}
