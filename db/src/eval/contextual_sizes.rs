//! Contextual embeddings by collection size (`engram eval contextual-sizes`): for each
//! corpus and each size, a collection of that many documents drawn evenly from it,
//! nDCG@10 of MiniLM, of every variant (its context fitted on those documents alone)
//! and of the self-checked default (the variant the collection's self-check puts live
//! from those documents, or MiniLM when it keeps stage one).
//!
//! Why by size: corpus statistics from 50 documents are not those from 3,000, and a
//! context that helps a large collection can hurt a small one. Why niche corpora
//! too: the variants were developed on Quoref and DROP; the niche corpora
//! (`tests/data/niche_*.json`, written by `scripts/niche_corpora.py`) are several
//! entities described by the same templates, where a hit must have the query's
//! entity and topic, and queries that name the entity or only describe it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use engram_embedder::self_check::{self, SelfCheck, SelfCheckOptions, VariantScore};
use engram_embedder::stage_two_eval::{rank_passages, variant_vectors};
use engram_embedder::states_corpus::StatesCorpus;
use engram_embedder::{Chunking, MiniLm, StageTwo, Variant};

use super::dataset::load;
use super::metrics::MeanMetrics;
use crate::error::{Error, Result};

/// Documents, queries and which documents each query counts as relevant.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub name: String,
    pub texts: Vec<String>,
    pub queries: Vec<String>,
    /// Indices into `texts` of each query's relevant documents.
    pub relevant: Vec<Vec<usize>>,
}

#[derive(Deserialize)]
struct NicheFile {
    name: String,
    documents: Vec<NicheDoc>,
    queries: Vec<NicheQuery>,
}

#[derive(Deserialize)]
struct NicheDoc {
    entity: String,
    topic: String,
    text: String,
}

#[derive(Deserialize)]
struct NicheQuery {
    text: String,
    entity: String,
    topic: String,
}

impl Corpus {
    /// A niche corpus file: a document is relevant to a query when it has the
    /// query's entity and topic.
    pub fn niche(path: &Path) -> Result<Corpus> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid("corpus", format!("{}: {e}", path.display())))?;
        let file: NicheFile = serde_json::from_str(&raw)
            .map_err(|e| Error::invalid("corpus", format!("{}: {e}", path.display())))?;
        let relevant = file
            .queries
            .iter()
            .map(|q| {
                (0..file.documents.len())
                    .filter(|&d| {
                        let doc = &file.documents[d];
                        doc.entity == q.entity && doc.topic == q.topic
                    })
                    .collect()
            })
            .collect();
        Ok(Corpus {
            name: file.name,
            texts: file.documents.into_iter().map(|d| d.text).collect(),
            queries: file.queries.into_iter().map(|q| q.text).collect(),
            relevant,
        })
    }

    /// A retrieval dataset file (Quoref's shape): a question's own passage is its one
    /// relevant document.
    pub fn dataset(name: &str, path: &Path) -> Result<Corpus> {
        let passages = load(path)?;
        let (mut queries, mut relevant) = (Vec::new(), Vec::new());
        for (i, p) in passages.iter().enumerate() {
            for q in &p.questions {
                queries.push(q.clone());
                relevant.push(vec![i]);
            }
        }
        Ok(Corpus {
            name: name.to_string(),
            texts: passages.into_iter().map(|p| p.text).collect(),
            queries,
            relevant,
        })
    }

    /// `n` documents spread evenly over the corpus, and the queries with at least one
    /// relevant document among them (relevance restricted to them).
    pub fn subset(&self, n: usize) -> Corpus {
        let len = self.texts.len();
        let keep: Vec<usize> = if n >= len {
            (0..len).collect()
        } else {
            (0..n).map(|i| i * len / n).collect()
        };
        let mut new_index = vec![None; len];
        for (j, &i) in keep.iter().enumerate() {
            new_index[i] = Some(j);
        }
        let (mut queries, mut relevant) = (Vec::new(), Vec::new());
        for (q, rel) in self.queries.iter().zip(&self.relevant) {
            let r: Vec<usize> = rel.iter().filter_map(|&d| new_index[d]).collect();
            if !r.is_empty() {
                queries.push(q.clone());
                relevant.push(r);
            }
        }
        Corpus {
            name: self.name.clone(),
            texts: keep.iter().map(|&i| self.texts[i].clone()).collect(),
            queries,
            relevant,
        }
    }
}

/// One encoder's nDCG@10 on one collection.
#[derive(Debug, Clone, Serialize)]
pub struct SizeRow {
    pub encoder: String,
    pub ndcg_at_10: f64,
}

/// Every encoder on one collection of one size, and what its self-check decided.
#[derive(Debug, Clone, Serialize)]
pub struct SizeFigures {
    pub corpus: String,
    pub documents: usize,
    pub queries: usize,
    /// MiniLM, then every variant.
    pub rows: Vec<SizeRow>,
    pub self_check: SelfCheck,
    /// Every variant's score on the same pseudo-queries (the whitening ones only where
    /// the sample has enough vectors), candidate or not.
    pub pseudo_query_scores: Vec<VariantScore>,
    /// nDCG@10 of what the self-check put live (MiniLM when it kept stage one).
    pub self_checked: f64,
}

impl SizeFigures {
    /// nDCG@10 of the named encoder's row.
    pub fn score(&self, encoder: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.encoder == encoder)
            .map(|r| r.ndcg_at_10)
    }
}

/// Evaluates MiniLM, every variant and the self-checked default on `corpus` (all of
/// it: call [`Corpus::subset`] first for a size), with `net` as the learned variant.
pub fn evaluate(
    base: &MiniLm,
    net: &StageTwo,
    corpus: &Corpus,
    options: &SelfCheckOptions,
) -> Result<SizeFigures> {
    let texts: Vec<&str> = corpus.texts.iter().map(|t| t.as_str()).collect();
    let queries: Vec<&str> = corpus.queries.iter().map(|q| q.as_str()).collect();
    let chunking = Chunking::default();
    let docs = StatesCorpus::embed(base, &texts, Some(chunking), &mut |_| {})?;
    let qs = StatesCorpus::embed(base, &queries, None, &mut |_| {})?;
    let mut rows = Vec::new();
    for variant in std::iter::once(None).chain(Variant::ALL.into_iter().map(Some)) {
        let (d, q) = variant_vectors(base, &texts, &docs, &qs, variant, net)?;
        let ranked = rank_passages(&d, &docs, &q, 10)?;
        let mut mean = MeanMetrics::default();
        for (r, rel) in ranked.iter().zip(&corpus.relevant) {
            mean.add(r, rel);
        }
        rows.push(SizeRow {
            encoder: variant.map_or("minilm".into(), |v| format!("contextual-{}", v.name())),
            ndcg_at_10: mean.mean().ndcg_at_10,
        });
    }
    // The check scores every variant (the report shows how each fared on the
    // pseudo-queries); the default collection decides among its candidates only.
    let every = self_check::run_with(base, net, &texts, chunking, &Variant::ALL, options)?;
    let check = self_check::conclude(every.clone(), &self_check::DEFAULT_CANDIDATES, "");
    let live = check
        .chosen
        .map_or("minilm".to_string(), |v| format!("contextual-{}", v.name()));
    let figures = SizeFigures {
        corpus: corpus.name.clone(),
        documents: texts.len(),
        queries: queries.len(),
        rows,
        self_checked: 0.0,
        self_check: check,
        pseudo_query_scores: every.variants,
    };
    let self_checked = figures.score(&live).expect("every variant has a row");
    Ok(SizeFigures {
        self_checked,
        ..figures
    })
}

/// The figures as one Markdown table: a row per corpus and size, a column per encoder.
pub fn table(figures: &[SizeFigures]) -> String {
    let Some(first) = figures.first() else {
        return String::new();
    };
    let names: Vec<&str> = first.rows.iter().map(|r| r.encoder.as_str()).collect();
    let mut s = format!(
        "| corpus | docs | queries | {} | self-checked (chosen) |\n|---|---|---|{}---|\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for f in figures {
        let cells: Vec<String> = f
            .rows
            .iter()
            .map(|r| format!("{:.3}", r.ndcg_at_10))
            .collect();
        let chosen = f
            .self_check
            .chosen
            .map_or("minilm".to_string(), |v| v.name().to_string());
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} ({chosen}) |\n",
            f.corpus,
            f.documents,
            f.queries,
            cells.join(" | "),
            f.self_checked
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn niche(name: &str) -> Corpus {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/data/{name}"));
        Corpus::niche(&path).unwrap()
    }

    #[test]
    fn niche_relevance_is_entity_and_topic() {
        let c = niche("niche_airlines.json");
        assert_eq!(c.texts.len(), 384);
        assert_eq!(c.queries.len(), c.relevant.len());
        // 4 templates x 4 fillings of one entity and topic.
        assert!(c.relevant.iter().all(|r| r.len() == 16));
        let sub = c.subset(50);
        assert_eq!(sub.texts.len(), 50);
        assert!(sub
            .relevant
            .iter()
            .all(|r| !r.is_empty() && r.iter().all(|&d| d < 50)));
        assert_eq!(sub.texts[1], c.texts[384 / 50]);
        // The fifth session's corpora: 4 templates x 8 fillings per entity and topic.
        for (file, docs) in [
            ("niche_hotels.json", 1152),
            ("niche_insurers.json", 800),
            ("niche_telecoms.json", 960),
            ("niche_carmakers.json", 1152),
        ] {
            let c = niche(file);
            assert_eq!(c.texts.len(), docs, "{file}");
            assert!(c.relevant.iter().all(|r| r.len() == 32), "{file}");
        }
    }

    /// The "never worse" promise on the niche test sets, real MiniLM: at every
    /// size, the self-checked collection retrieves at least as well as MiniLM. The bank
    /// and carmaker sets' 1,000 documents are past the 384 dimensions, so whitening is
    /// offered there; on the carmakers' the check puts center live.
    #[test]
    fn self_checked_default_is_never_worse_than_minilm_on_the_niche_test_sets() {
        let base = engram_embedder::shared_minilm().unwrap();
        let net = StageTwo::bundled().unwrap();
        for (file, sizes) in [
            ("niche_airlines.json", &[50, 100, 384][..]),
            ("niche_banks.json", &[300, 1000][..]),
            ("niche_telecoms.json", &[100][..]),
            // Center goes live here: the assertion is then about a live context.
            ("niche_carmakers.json", &[1000][..]),
        ] {
            let corpus = niche(file);
            for &n in sizes {
                let f =
                    evaluate(&base, &net, &corpus.subset(n), &SelfCheckOptions::default()).unwrap();
                let minilm = f.score("minilm").unwrap();
                eprintln!("{}", table(std::slice::from_ref(&f)));
                assert!(
                    f.self_checked >= minilm,
                    "{file}, {n} documents: self-checked {} < minilm {minilm} ({})",
                    f.self_checked,
                    f.self_check.decision
                );
            }
        }
    }
}
