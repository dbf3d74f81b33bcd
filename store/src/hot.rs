//! Which documents queries return, counted with exponential decay, and the clusters
//! of a collection ranked by that heat.
//!
//! Why: knowledge that is asked for again and again is the candidate for moving out
//! of retrieval and into the model's weights (an adapter). The counter sees every
//! query's results; [`clusters`] groups the collection's documents by topic (k-means
//! over their vectors) and ranks the groups by the share of recent hits they got.
//! Counts decay with a half-life so last month's burst does not dominate today.
//! They are statistics, not data: kept in memory, written to RocksDB without a
//! WAL sync every few seconds (see `crate::flush`), so a crash loses at most the
//! last seconds of counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::collection::{Collection, DocumentRecord};
use crate::error::Result;
use crate::flush::{FlushGate, FlushHold};
use crate::questions::LoggedQuestion;
use crate::storage::Storage;

/// Hits lose half their weight in a week.
pub const HALF_LIFE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A decayed hit count as of a moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Heat {
    pub value: f64,
    /// Unix seconds when `value` was exact.
    pub at: f64,
}

impl Heat {
    /// The value decayed to `now` (unix seconds).
    pub fn at(self, now: f64) -> f64 {
        let half_lives = ((now - self.at) / HALF_LIFE.as_secs_f64()).max(0.0);
        self.value * 0.5f64.powf(half_lives)
    }

    fn bump(self, now: f64) -> Heat {
        Heat {
            value: self.at(now) + 1.0,
            at: now,
        }
    }
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A collection's hit counts.
pub struct HitCounter {
    heat: Mutex<HashMap<String, Heat>>,
    /// Documents whose count changed since the last flush.
    pending: Mutex<Vec<String>>,
    flushes: FlushGate,
}

impl HitCounter {
    /// No counts (a new collection).
    pub fn empty() -> HitCounter {
        Self::with(HashMap::new())
    }

    fn with(heat: HashMap<String, Heat>) -> HitCounter {
        HitCounter {
            heat: Mutex::new(heat),
            pending: Mutex::new(Vec::new()),
            flushes: FlushGate::default(),
        }
    }

    /// Loads the stored counts of `coll`.
    pub fn load(storage: &Storage, coll: &str) -> Result<HitCounter> {
        let mut heat = HashMap::new();
        storage.scan_hits(coll, |doc, bytes| {
            if let Ok(h) = serde_json::from_slice::<Heat>(bytes) {
                heat.insert(doc.to_string(), h);
            }
            Ok(())
        })?;
        Ok(Self::with(heat))
    }

    /// Counts one query's results and writes the changed counts out when the last
    /// flush is old enough (see [`FlushGate`]).
    pub fn record<'a>(&self, storage: &Storage, coll: &str, docs: impl Iterator<Item = &'a str>) {
        let now = now_s();
        let mut changed = Vec::new();
        {
            let mut heat = self.heat.lock().expect("lock");
            for d in docs {
                let h = heat.entry(d.to_string()).or_insert(Heat {
                    value: 0.0,
                    at: now,
                });
                *h = h.bump(now);
                changed.push(d.to_string());
            }
        }
        let flush = {
            let mut pending = self.pending.lock().expect("lock");
            pending.extend(changed);
            if !self.flushes.due() {
                return;
            }
            std::mem::take(&mut *pending)
        };
        let heat = self.heat.lock().expect("lock");
        let mut batch = storage.batch();
        for d in flush {
            if let Some(h) = heat.get(&d) {
                let bytes = serde_json::to_vec(h).expect("plain struct serialises");
                storage.put_hits(&mut batch, coll, &d, &bytes);
            }
        }
        drop(heat);
        self.flushes.commit(storage, coll, batch, "hit counts");
    }

    /// Holds off flushes until the hold is dropped; its `close` stops them for good.
    pub fn hold_flushes(&self) -> FlushHold<'_> {
        self.flushes.hold()
    }

    /// Writes every pending count now (a query flushes at most every few seconds;
    /// tests and shutdown call this).
    pub fn flush(&self, storage: &Storage, coll: &str) {
        self.flushes.make_due();
        self.record(storage, coll, std::iter::empty());
    }

    /// Every document's heat now.
    pub fn snapshot(&self) -> HashMap<String, f64> {
        let now = now_s();
        self.heat
            .lock()
            .expect("lock")
            .iter()
            .map(|(d, h)| (d.clone(), h.at(now)))
            .collect()
    }
}

/// One cluster of a collection, for `GET /collections/{name}/clusters`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterInfo {
    /// Rank by hit share (0: hottest).
    pub cluster: usize,
    pub documents: usize,
    /// Decayed hits of its documents, and their share of the collection's.
    pub hits: f64,
    pub hit_share: f64,
    /// The most-hit documents (or the first ones, without hits): id and snippet.
    pub top: Vec<ClusterDoc>,
    /// Every document id in the cluster (what a promotion trains on).
    pub ids: Vec<String>,
    /// Logged questions whose best-ranked document is in this cluster.
    #[serde(default)]
    pub questions: usize,
    /// The newest of them (as many as `top`), to show what users ask about it.
    #[serde(default)]
    pub sample_questions: Vec<LoggedQuestion>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterDoc {
    pub id: String,
    pub hits: f64,
    pub snippet: String,
}

/// Which documents belong together: the k-means result the clusters are ranked from.
/// Computing it reads every vector, so it is cached (see [`GroupingCache`]); the heat
/// that ranks the groups changes with every query and is applied on each call.
#[derive(Debug)]
pub struct Grouping {
    /// The collection's write generation it was computed at.
    pub generation: u64,
    /// The `k` asked for (`None`: the default for the collection's size).
    pub k: Option<usize>,
    ids: Vec<String>,
    members: Vec<Vec<usize>>,
}

/// One collection's latest grouping. Any write (upsert, delete, a new corpus context)
/// moves the collection's generation on, and a grouping of an older generation is
/// computed again; one entry per collection keeps the memory to one grouping.
#[derive(Default)]
pub struct GroupingCache(Mutex<Option<Arc<Grouping>>>);

impl GroupingCache {
    /// The cached grouping for `generation` and `k`, or a new one from `compute`
    /// (which must read the collection as of `generation` or later).
    pub fn get_or_compute(
        &self,
        generation: u64,
        k: Option<usize>,
        compute: impl FnOnce() -> Result<Grouping>,
    ) -> Result<Arc<Grouping>> {
        if let Some(g) = self.current() {
            if g.generation == generation && g.k == k {
                return Ok(g);
            }
        }
        // Computed outside the lock, so other collections' callers and a reader of
        // `current` never wait on a k-means; two concurrent misses both compute.
        let fresh = Arc::new(compute()?);
        let mut slot = self.0.lock().expect("lock");
        if slot
            .as_ref()
            .is_none_or(|g| g.generation <= fresh.generation)
        {
            *slot = Some(fresh.clone());
        }
        Ok(fresh)
    }

    /// The cached grouping, if any.
    pub fn current(&self) -> Option<Arc<Grouping>> {
        self.0.lock().expect("lock").clone()
    }
}

/// Groups `coll`'s documents by spherical k-means over each document's mean chunk
/// vector: `k` clusters, or about sqrt(n/2) when `None`. `generation` is the
/// collection's write generation read before the vectors.
pub fn group(
    storage: &Storage,
    coll: &Collection,
    generation: u64,
    k: Option<usize>,
) -> Result<Grouping> {
    let name = &coll.config.name;
    let dim = coll.config.dimension;
    let mut sums: HashMap<String, Vec<f32>> = HashMap::new();
    storage.scan_vectors(name, |_, rec| {
        let sum = sums
            .entry(rec.doc_id.clone())
            .or_insert_with(|| vec![0.0; dim]);
        sum.iter_mut().zip(&rec.vector).for_each(|(s, v)| *s += v);
        Ok(())
    })?;
    let mut ids: Vec<String> = sums.keys().cloned().collect();
    ids.sort();
    let asked = k;
    if ids.is_empty() {
        return Ok(Grouping {
            generation,
            k: asked,
            ids,
            members: Vec::new(),
        });
    }
    let mut rows = Vec::with_capacity(ids.len() * dim);
    for id in &ids {
        let mut v = sums.remove(id).expect("listed");
        engram_kernels::normalize(&mut v);
        rows.extend(v);
    }
    let k = k
        .unwrap_or(((ids.len() as f64 / 2.0).sqrt().round() as usize).clamp(2, 32))
        .clamp(1, ids.len());
    let centroids = engram_kernels::kmeans(&rows, dim, k, 11);
    let k = centroids.len() / dim;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, row) in rows.chunks(dim).enumerate() {
        let best = (0..k)
            .max_by(|&a, &b| {
                let da = engram_kernels::dot(row, &centroids[a * dim..(a + 1) * dim]);
                let db = engram_kernels::dot(row, &centroids[b * dim..(b + 1) * dim]);
                da.total_cmp(&db)
            })
            .unwrap_or(0);
        members[best].push(i);
    }
    Ok(Grouping {
        generation,
        k: asked,
        ids,
        members,
    })
}

/// The clusters of a grouping ranked by `heat`, hottest first, each with its `top`
/// documents' snippets.
pub fn clusters(
    storage: &Storage,
    coll: &Collection,
    grouping: &Grouping,
    heat: &HashMap<String, f64>,
    top: usize,
) -> Result<Vec<ClusterInfo>> {
    let name = &coll.config.name;
    let ids = &grouping.ids;
    let total: f64 = ids
        .iter()
        .map(|d| heat.get(d).copied().unwrap_or(0.0))
        .sum();
    let mut out = Vec::new();
    for m in grouping.members.iter().filter(|m| !m.is_empty()) {
        let mut docs: Vec<(&String, f64)> = m
            .iter()
            .map(|&i| (&ids[i], heat.get(&ids[i]).copied().unwrap_or(0.0)))
            .collect();
        docs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let hits: f64 = docs.iter().map(|d| d.1).sum();
        let mut shown = Vec::new();
        for (id, h) in docs.iter().take(top) {
            let rec: Option<DocumentRecord> = storage.get_document(name, id)?;
            shown.push(ClusterDoc {
                id: id.to_string(),
                hits: *h,
                snippet: rec
                    .and_then(|r| r.text)
                    .map_or(String::new(), |t| snippet(&t)),
            });
        }
        out.push(ClusterInfo {
            cluster: 0,
            documents: docs.len(),
            hits,
            hit_share: if total > 0.0 { hits / total } else { 0.0 },
            top: shown,
            ids: docs.iter().map(|d| d.0.clone()).collect(),
            questions: 0,
            sample_questions: Vec::new(),
        });
    }
    out.sort_by(|a, b| {
        b.hits
            .total_cmp(&a.hits)
            .then(b.documents.cmp(&a.documents))
    });
    for (i, c) in out.iter_mut().enumerate() {
        c.cluster = i;
    }
    Ok(out)
}

/// Gives each cluster the logged questions whose best-ranked document it holds:
/// their count and the newest `top` (`questions` is newest first).
pub fn attach_questions(clusters: &mut [ClusterInfo], questions: &[LoggedQuestion], top: usize) {
    let home: HashMap<&str, usize> = clusters
        .iter()
        .enumerate()
        .flat_map(|(c, info)| info.ids.iter().map(move |id| (id.as_str(), c)))
        .collect();
    let mut found: Vec<(usize, &LoggedQuestion)> = Vec::new();
    for q in questions {
        if let Some(&c) = q.ids.first().and_then(|id| home.get(id.as_str())) {
            found.push((c, q));
        }
    }
    for (c, q) in found {
        let info = &mut clusters[c];
        info.questions += 1;
        if info.sample_questions.len() < top {
            info.sample_questions.push(q.clone());
        }
    }
}

/// The first ~120 characters of a text, cut at a word boundary.
fn snippet(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= 120 {
        return flat;
    }
    let cut: String = flat.chars().take(120).collect();
    match cut.rfind(' ') {
        Some(i) => format!("{}…", &cut[..i]),
        None => format!("{cut}…"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_halves_every_half_life() {
        let h = Heat {
            value: 8.0,
            at: 1000.0,
        };
        let week = HALF_LIFE.as_secs_f64();
        assert_eq!(h.at(1000.0), 8.0);
        assert!((h.at(1000.0 + week) - 4.0).abs() < 1e-9);
        assert!((h.at(1000.0 + 3.0 * week) - 1.0).abs() < 1e-9);
        assert_eq!(h.at(0.0), 8.0, "no growth backwards in time");
        let b = h.bump(1000.0 + week);
        assert!((b.value - 5.0).abs() < 1e-9);
    }

    #[test]
    fn questions_go_to_the_cluster_of_their_best_document() {
        let cluster = |ids: &[&str]| ClusterInfo {
            cluster: 0,
            documents: ids.len(),
            hits: 0.0,
            hit_share: 0.0,
            top: Vec::new(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
            questions: 0,
            sample_questions: Vec::new(),
        };
        let mut clusters = vec![cluster(&["a", "b"]), cluster(&["c"])];
        let q = |text: &str, ids: &[&str]| LoggedQuestion {
            question: text.into(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
            at: 0,
        };
        // Newest first, as the log hands them out.
        let asked = [
            q("newest about c", &["c", "a"]),
            q("about b", &["b", "c"]),
            q("about a", &["a"]),
            q("oldest about a", &["a"]),
            q("retrieved nothing", &[]),
            q("a deleted document", &["gone"]),
        ];
        attach_questions(&mut clusters, &asked, 2);
        assert_eq!(clusters[0].questions, 3);
        let sample: Vec<&str> = clusters[0]
            .sample_questions
            .iter()
            .map(|q| q.question.as_str())
            .collect();
        assert_eq!(sample, ["about b", "about a"], "the newest `top`");
        assert_eq!(clusters[1].questions, 1);
        assert_eq!(clusters[1].sample_questions[0].question, "newest about c");
    }

    #[test]
    fn snippets_cut_at_words() {
        assert_eq!(snippet("  a  b\nc "), "a b c");
        let long = "word ".repeat(40);
        let s = snippet(&long);
        assert!(s.ends_with('…') && s.chars().count() <= 121, "{s}");
        assert!(!s.contains("wor…"));
    }
}
