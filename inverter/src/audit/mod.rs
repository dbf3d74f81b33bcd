//! The leakage audit: invert a sample of a collection's vectors, look for secrets in
//! what comes back, and measure what each defence costs and buys.
//!
//! For every defence (always including `none`) the sampled documents' vectors are
//! defended as they would be stored, the attacker inverts them against the public
//! encoder, and retrieval is measured with brute-force cosine between the queries
//! (rotated with the key by the legitimate user) and the defended corpus vectors.

mod grade;
mod html;

use std::ops::ControlFlow;
use std::sync::Arc;

use engram_embedder::TextEncoder;
use engram_metrics::ranking::ndcg_at;
use serde::{Deserialize, Serialize};

use crate::defence::Defence;
use crate::error::{Error, Result};
use crate::inverter::Inverter;
use crate::lexicon::Lexicon;
use crate::metrics::{bleu4, cosine, exact_match, token_f1};
use crate::pii::{AttackStrength, PiiRow};
use crate::probe::Probe;
use crate::search::{CosineSearch, SearchOptions};
use crate::secrets::{self, SecretFinding};

pub use grade::{grade, strong, Grade, STRONG_NAMES};

/// A text the audit embeds as one vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDoc {
    pub id: String,
    pub text: String,
}

/// A query and the id of the corpus document that answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub text: String,
    pub relevant: String,
}

/// What to audit: `targets` are inverted; retrieval runs `queries` over `corpus`.
#[derive(Debug, Clone, Default)]
pub struct AuditInput {
    pub collection: String,
    pub targets: Vec<AuditDoc>,
    pub corpus: Vec<AuditDoc>,
    pub queries: Vec<AuditQuery>,
    /// Where the queries came from, in words (shown in the report).
    pub query_source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditOptions {
    /// Documents inverted.
    pub sample: usize,
    pub steps: usize,
    pub beam: usize,
    pub defences: Vec<Defence>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            sample: 10,
            steps: 10,
            beam: 2,
            defences: vec![
                Defence::None,
                Defence::Noise { lambda: 0.5 },
                Defence::Rotation { key: 1 },
            ],
        }
    }
}

/// Most documents one audit inverts.
pub const MAX_SAMPLE: usize = 500;
/// Most defences one audit compares.
pub const MAX_DEFENCES: usize = 12;

impl AuditOptions {
    pub fn validate(&self) -> Result<()> {
        if self.sample == 0 || self.sample > MAX_SAMPLE {
            return Err(Error::invalid(
                "sample",
                format!("{} is out of range; use 1 to {MAX_SAMPLE}", self.sample),
            ));
        }
        if self.defences.len() > MAX_DEFENCES {
            return Err(Error::invalid(
                "defences",
                format!("at most {MAX_DEFENCES} defences per audit"),
            ));
        }
        self.search().validate()
    }

    fn search(&self) -> SearchOptions {
        SearchOptions {
            steps: self.steps,
            beam: self.beam,
            ..SearchOptions::default()
        }
    }

    /// `none` first (the collection as stored), then the others, without repeats.
    fn defences(&self) -> Vec<Defence> {
        let mut out = vec![Defence::None];
        for d in &self.defences {
            if !out.contains(d) {
                out.push(*d);
            }
        }
        out
    }
}

/// One sampled document, undefended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentResult {
    pub id: String,
    pub original: String,
    pub reconstruction: String,
    pub token_f1: f64,
    pub bleu: f64,
    pub exact_match: bool,
    pub cosine: f32,
    pub secrets: Vec<SecretFinding>,
}

/// Means over the sample under one defence, and retrieval quality under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefenceResult {
    pub defence: Defence,
    pub token_f1: f64,
    pub bleu: f64,
    pub exact_match: f64,
    pub cosine: f64,
    /// Secrets of the sample fully recovered under this defence.
    pub secrets_recovered: usize,
    /// nDCG@10 of the queries over the defended corpus (None without queries).
    pub ndcg_at_10: Option<f64>,
    /// nDCG@10 points lost against no defence (100 points = 1.0).
    pub ndcg_loss_points: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub collection: String,
    pub created_unix: u64,
    pub encoder: String,
    pub options: AuditOptions,
    pub corpus_documents: usize,
    pub queries: usize,
    pub query_source: String,
    /// The undefended collection, document by document.
    pub documents: Vec<DocumentResult>,
    pub secrets_found: usize,
    pub secrets_recovered: usize,
    /// `none` first.
    pub defences: Vec<DefenceResult>,
    pub grade: char,
    pub verdict: String,
    /// The attack's measured strength on the PII benchmark at this audit's budget
    /// (None in reports stored before it was recorded, or if never measured).
    #[serde(default)]
    pub attack: Option<PiiRow>,
    /// See [`Grade::shown_safe`]: false unless a strong attack recovered little.
    #[serde(default)]
    pub shown_safe: bool,
    pub seconds: f64,
}

impl AuditReport {
    /// A self-contained HTML page for a reviewer (see `html.rs`).
    pub fn to_html(&self) -> String {
        html::render(self)
    }
}

/// Runs the audit (`lexicon`: also propose its words, see `candidates.rs`). `progress(done, total)` counts embedded texts and inversions;
/// returning `Break` stops the audit after the current text (`Error::Cancelled`).
pub fn run(
    input: &AuditInput,
    encoder: &dyn TextEncoder,
    probe: Arc<Probe>,
    lexicon: Option<Arc<Lexicon>>,
    opts: &AuditOptions,
    progress: &dyn Fn(usize, usize) -> ControlFlow<()>,
) -> Result<AuditReport> {
    opts.validate()?;
    if input.targets.is_empty() {
        return Err(Error::invalid(
            "documents",
            "the collection has no text documents to audit",
        ));
    }
    let started = std::time::Instant::now();
    let mut search = CosineSearch::new(probe, opts.search())?;
    if let Some(lex) = lexicon {
        search = search.with_lexicon(lex);
    }
    let defences = opts.defences();
    let targets: Vec<&AuditDoc> = input.targets.iter().take(opts.sample).collect();
    let total = input.corpus.len() + input.queries.len() + targets.len() * (defences.len() + 1);
    let mut done = 0;
    let mut tick = |n: usize| -> Result<()> {
        done += n;
        match progress(done, total) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(Error::Cancelled),
        }
    };

    let embed_all =
        |texts: Vec<&str>, tick: &mut dyn FnMut(usize) -> Result<()>| -> Result<Vec<Vec<f32>>> {
            let mut out = Vec::with_capacity(texts.len());
            for batch in texts.chunks(32) {
                out.extend(encoder.embed(batch)?);
                tick(batch.len())?;
            }
            Ok(out)
        };
    let corpus = embed_all(
        input.corpus.iter().map(|d| d.text.as_str()).collect(),
        &mut tick,
    )?;
    let queries = embed_all(
        input.queries.iter().map(|q| q.text.as_str()).collect(),
        &mut tick,
    )?;
    let target_vecs = embed_all(targets.iter().map(|d| d.text.as_str()).collect(), &mut tick)?;

    let mut results = Vec::new();
    let mut documents = Vec::new();
    for defence in &defences {
        let transform = defence.prepare(encoder.dim());
        let mut sums = [0.0f64; 4];
        let mut recovered = 0;
        for (i, (doc, v)) in targets.iter().zip(&target_vecs).enumerate() {
            let stored = transform.store(v, i as u64);
            let inv = search.invert(&stored, encoder)?;
            let f1 = token_f1(&doc.text, &inv.text);
            let bleu = bleu4(&doc.text, &inv.text);
            let em = exact_match(&doc.text, &inv.text);
            // The cosine the reviewer cares about: reconstruction vs the true text.
            let cos = cosine(&encoder.embed(&[&inv.text])?[0], v);
            let found = secrets::audit(&doc.text, &inv.text);
            recovered += found.iter().filter(|s| s.recovered).count();
            sums[0] += f1;
            sums[1] += bleu;
            sums[2] += em as u8 as f64;
            sums[3] += cos as f64;
            if *defence == Defence::None {
                documents.push(DocumentResult {
                    id: doc.id.clone(),
                    original: doc.text.clone(),
                    reconstruction: inv.text,
                    token_f1: f1,
                    bleu,
                    exact_match: em,
                    cosine: cos,
                    secrets: found,
                });
            }
            tick(1)?;
        }
        let n = targets.len() as f64;
        let ndcg = (!queries.is_empty()).then(|| retrieval(input, &corpus, &queries, &transform));
        results.push(DefenceResult {
            defence: *defence,
            token_f1: sums[0] / n,
            bleu: sums[1] / n,
            exact_match: sums[2] / n,
            cosine: sums[3] / n,
            secrets_recovered: recovered,
            ndcg_at_10: ndcg,
            ndcg_loss_points: None,
        });
    }
    let base = results[0].ndcg_at_10;
    for r in &mut results {
        r.ndcg_loss_points = r.ndcg_at_10.zip(base).map(|(x, b)| 100.0 * (b - x));
    }
    let secrets_found = documents.iter().map(|d| d.secrets.len()).sum();
    let secrets_recovered = results[0].secrets_recovered;
    let attack = AttackStrength::measured().and_then(|s| s.at(opts.steps).cloned());
    let graded = grade(results[0].token_f1, secrets_recovered, attack.as_ref());
    Ok(AuditReport {
        collection: input.collection.clone(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        encoder: encoder.name().to_string(),
        options: AuditOptions {
            defences,
            ..opts.clone()
        },
        corpus_documents: input.corpus.len(),
        queries: input.queries.len(),
        query_source: input.query_source.clone(),
        documents,
        secrets_found,
        secrets_recovered,
        defences: results,
        grade: graded.letter,
        verdict: graded.verdict,
        attack,
        shown_safe: graded.shown_safe,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Mean nDCG@10 of brute-force cosine search over the defended corpus.
fn retrieval(
    input: &AuditInput,
    corpus: &[Vec<f32>],
    queries: &[Vec<f32>],
    transform: &crate::defence::Transform,
) -> f64 {
    let stored: Vec<Vec<f32>> = corpus
        .iter()
        .enumerate()
        .map(|(i, v)| transform.store(v, 1_000_000 + i as u64))
        .collect();
    let mut sum = 0.0;
    for (q, qv) in input.queries.iter().zip(queries) {
        let qv = transform.query(qv);
        let mut ranked: Vec<(f32, usize)> = stored
            .iter()
            .enumerate()
            .map(|(i, v)| (engram_kernels::dot(&qv, v), i))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let ids: Vec<&str> = ranked
            .iter()
            .take(10)
            .map(|&(_, i)| input.corpus[i].id.as_str())
            .collect();
        sum += ndcg_at(&ids, &[q.relevant.as_str()], 10);
    }
    sum / queries.len().max(1) as f64
}

/// Known-item queries for a corpus without questions: a span of `words` words from
/// the middle of each document of at least `words + 4` words (relevant: that document).
pub fn known_item_queries(corpus: &[AuditDoc], words: usize) -> Vec<AuditQuery> {
    corpus
        .iter()
        .filter_map(|d| {
            let w: Vec<&str> = d.text.split_whitespace().collect();
            (w.len() >= words + 4).then(|| {
                let start = (w.len() - words) / 2;
                AuditQuery {
                    text: w[start..start + words].join(" "),
                    relevant: d.id.clone(),
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert!(AuditOptions::default().validate().is_ok());
        for bad in [
            AuditOptions {
                sample: 0,
                ..Default::default()
            },
            AuditOptions {
                beam: 0,
                ..Default::default()
            },
            AuditOptions {
                steps: 10_000,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
        let opts: AuditOptions =
            serde_json::from_str(r#"{"sample": 3, "defences": ["noise:0.5"]}"#).unwrap();
        assert_eq!(
            opts.defences(),
            [Defence::None, Defence::Noise { lambda: 0.5 }]
        );
        assert!(serde_json::from_str::<AuditOptions>(r#"{"defences": ["blur"]}"#).is_err());
        assert!(serde_json::from_str::<AuditOptions>(r#"{"smaple": 3}"#).is_err());
    }

    #[test]
    fn known_item_queries_take_the_middle() {
        let docs = [
            AuditDoc {
                id: "a".into(),
                text: "w1 w2 w3 w4 w5 w6 w7 w8".into(),
            },
            AuditDoc {
                id: "b".into(),
                text: "too short".into(),
            },
        ];
        let q = known_item_queries(&docs, 2);
        assert_eq!(
            q,
            [AuditQuery {
                text: "w4 w5".into(),
                relevant: "a".into()
            }]
        );
    }
}
