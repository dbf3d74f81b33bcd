//! Retrieval evaluation (`engram eval retrieval`): every passage of a dataset
//! goes into a fresh collection through the library [`Engine`] (no server),
//! every question is asked in each query mode, and a question's own passage
//! is its one relevant document. Reports nDCG@10, recall@1, recall@10 and
//! MRR@10 per mode.
//!
//! With a fusion sweep, each question's vector and keyword rankings are
//! fetched once (as deep as hybrid mode fetches them) and fused with every
//! setting of the sweep, so choosing the fusion costs one pass, not one per
//! setting.
//!
//! The encoder is a collection setting chosen by name, so this harness
//! evaluates any encoder `engram_embedder::encoder_by_name` knows, with no
//! change here.

pub mod answers;
pub mod contextual;
pub mod contextual_mix;
pub mod contextual_sizes;
mod dataset;
pub mod metrics;
pub mod weights;

use std::time::Instant;

use serde::Serialize;

pub use dataset::{load, Dataset, Passage};
use metrics::{MeanMetrics, RetrievalMetrics};

use crate::api_types::{CreateCollection, DocumentInput, QueryMode, QueryRequest};
use crate::engine::Engine;
use crate::error::Result;
use engram_store::collection::{ContextSettings, Durability};
use engram_store::fusion::Fusion;
use engram_store::hybrid_depth;
use engram_store::index::{IndexParams, Quantization};
use engram_store::jobs::JobState;

/// Passages per insert: the batch the embedder sees.
const INSERT_BATCH: usize = 32;
/// Results per question.
const K: usize = 10;
const COLLECTION: &str = "eval";

/// What to evaluate.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalSpec {
    pub dataset: String,
    /// Encoder name, as a collection's `embedder`.
    pub encoder: String,
    pub modes: Vec<QueryMode>,
    /// How hybrid mode fuses its rankings.
    pub fusion: Fusion,
    /// The collection's graph walk (int8 codes or f32 vectors).
    pub quantization: Quantization,
    /// Fusion settings to compare (empty: no sweep).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<Fusion>,
}

/// The fusion settings `--sweep` compares: weighted fusion from 0.1 to 0.9 and
/// RRF with small, medium and the usual k.
pub fn fusion_sweep() -> Vec<Fusion> {
    let weighted = (1..=9).map(|i| Fusion::Weighted {
        vector_weight: i as f32 / 10.0,
    });
    let rrf = [1.0, 10.0, 60.0].map(|k| Fusion::Rrf { k });
    weighted.chain(rrf).collect()
}

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mode: QueryMode,
    #[serde(flatten)]
    pub metrics: RetrievalMetrics,
    pub median_query_ms: f64,
}

/// The whole evaluation, as printed and as written to the JSON file.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalReport {
    #[serde(flatten)]
    pub spec: RetrievalSpec,
    pub passages: usize,
    pub questions: usize,
    pub insert_seconds: f64,
    /// Chunk vectors in the collection, and whether its graph walked int8 codes
    /// (they start at 1,000 vectors), so a report says what it measured.
    pub vectors: usize,
    pub quantized: bool,
    pub results: Vec<ModeResult>,
    /// Hybrid mode under each fusion setting of the sweep.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<SweepResult>,
    pub engram_version: &'static str,
}

/// Hybrid mode's figures under one fusion setting.
#[derive(Debug, Clone, Serialize)]
pub struct SweepResult {
    pub fusion: Fusion,
    #[serde(flatten)]
    pub metrics: RetrievalMetrics,
}

/// Told about long steps, so a caller can show progress.
pub trait Progress {
    fn begin(&self, what: &str, total: usize);
    fn advance(&self, n: usize);
    fn end(&self);
}

/// A progress sink that shows nothing (tests).
impl Progress for () {
    fn begin(&self, _: &str, _: usize) {}
    fn advance(&self, _: usize) {}
    fn end(&self) {}
}

/// Builds the corpus context of the evaluation collection from all its passages and
/// waits for the re-embedding under it (the same background job a server runs).
fn build_context(engine: &Engine, progress: &dyn Progress) -> Result<()> {
    engine.store().recontextualize(COLLECTION)?;
    let mut shown = 0;
    let mut begun = false;
    loop {
        let info = engine.store().collection_info(COLLECTION)?;
        let job = info.corpus_context.and_then(|c| c.job).map(|b| b.job);
        match job {
            Some(j) if j.state == JobState::Done => break,
            Some(j) if !j.state.is_running() => {
                return Err(crate::Error::invalid(
                    "encoder",
                    format!(
                        "building the corpus context {}: {}",
                        j.state,
                        j.error.unwrap_or_default()
                    ),
                ))
            }
            Some(j) => {
                if !begun && j.total > 0 {
                    progress.begin("building the corpus context and re-embedding", j.total);
                    begun = true;
                }
                progress.advance(j.done.saturating_sub(shown));
                shown = shown.max(j.done);
            }
            None => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    if begun {
        progress.end();
    }
    Ok(())
}

/// Runs the evaluation in `engine`, which should be a fresh, throw-away database.
pub fn run_retrieval(
    engine: &Engine,
    spec: &RetrievalSpec,
    passages: &[Passage],
    progress: &dyn Progress,
) -> Result<RetrievalReport> {
    let contextual = matches!(
        engram_embedder::EncoderKind::parse(&spec.encoder),
        Ok(engram_embedder::EncoderKind::Contextual(_))
    );
    let create = CreateCollection {
        embedder: Some(spec.encoder.clone()),
        // A throw-away collection: no need to wait for the disk.
        durability: Some(Durability::Fast),
        hnsw: Some(IndexParams {
            quantization: spec.quantization,
            ..IndexParams::default()
        }),
        // Contextual: the context is built once, from every passage, after the insert.
        context: contextual.then_some(ContextSettings {
            min_documents: usize::MAX,
            sample: passages.len(),
        }),
        ..Default::default()
    };
    engine.store().create_collection(COLLECTION, create)?;

    let started = Instant::now();
    progress.begin("embedding and inserting passages", passages.len());
    for batch in passages.chunks(INSERT_BATCH) {
        let docs = batch
            .iter()
            .map(|p| DocumentInput {
                id: Some(p.id.clone()),
                text: Some(p.text.clone()),
                ..Default::default()
            })
            .collect();
        engine.store().upsert(COLLECTION, docs)?;
        progress.advance(batch.len());
    }
    progress.end();
    if contextual {
        build_context(engine, progress)?;
    }
    let insert_seconds = started.elapsed().as_secs_f64();
    let info = engine.store().collection_info(COLLECTION)?;

    let questions: usize = passages.iter().map(|p| p.questions.len()).sum();
    let mut results = Vec::new();
    for &mode in &spec.modes {
        progress.begin(&format!("{} queries", mode.as_str()), questions);
        let mut mean = MeanMetrics::default();
        let mut times = Vec::with_capacity(questions);
        for p in passages {
            for q in &p.questions {
                let req = QueryRequest {
                    text: Some(q.clone()),
                    mode: Some(mode),
                    fusion: (mode == QueryMode::Hybrid).then_some(spec.fusion),
                    k: Some(K),
                    include: Some(Vec::new()),
                    ..Default::default()
                };
                let t = Instant::now();
                let hits = engine.store().query(COLLECTION, &req)?.hits;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                let ranked: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
                mean.add(&ranked, &[p.id.as_str()]);
            }
            progress.advance(p.questions.len());
        }
        progress.end();
        results.push(ModeResult {
            mode,
            metrics: mean.mean(),
            median_query_ms: median(&mut times),
        });
    }
    let sweep = if spec.sweep.is_empty() {
        Vec::new()
    } else {
        sweep_fusions(engine, &spec.sweep, passages, progress)?
    };
    Ok(RetrievalReport {
        spec: spec.clone(),
        passages: passages.len(),
        questions,
        insert_seconds,
        vectors: info.vectors,
        quantized: info.quantized,
        results,
        sweep,
        engram_version: env!("CARGO_PKG_VERSION"),
    })
}

/// A ranking as fusion takes it: (document id, score), best first.
type Scored = Vec<(String, f32)>;

fn ranking(engine: &Engine, question: &str, mode: QueryMode) -> Result<Scored> {
    let req = QueryRequest {
        text: Some(question.to_string()),
        mode: Some(mode),
        k: Some(hybrid_depth(K)),
        include: Some(Vec::new()),
        ..Default::default()
    };
    let hits = engine.store().query(COLLECTION, &req)?.hits;
    Ok(hits.into_iter().map(|h| (h.id, h.score)).collect())
}

/// Hybrid metrics for each fusion setting, from one pass of vector and
/// keyword queries (the same rankings hybrid mode fuses).
fn sweep_fusions(
    engine: &Engine,
    fusions: &[Fusion],
    passages: &[Passage],
    progress: &dyn Progress,
) -> Result<Vec<SweepResult>> {
    let questions: usize = passages.iter().map(|p| p.questions.len()).sum();
    progress.begin("fusion sweep queries", questions);
    let mut means: Vec<MeanMetrics> = fusions.iter().map(|_| MeanMetrics::default()).collect();
    for p in passages {
        for q in &p.questions {
            let vector = ranking(engine, q, QueryMode::Vector)?;
            let keyword = ranking(engine, q, QueryMode::Keyword)?;
            for (fusion, mean) in fusions.iter().zip(&mut means) {
                let fused = fusion.fuse(&vector, &keyword);
                let ranked: Vec<&str> = fused.iter().take(K).map(|(id, _)| id.as_str()).collect();
                mean.add(&ranked, &[p.id.as_str()]);
            }
        }
        progress.advance(p.questions.len());
    }
    progress.end();
    Ok(fusions
        .iter()
        .zip(means)
        .map(|(fusion, mean)| SweepResult {
            fusion: *fusion,
            metrics: mean.mean(),
        })
        .collect())
}

fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

impl RetrievalReport {
    /// The report as a Markdown table (what the README quotes).
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}: {} passages, {} questions, encoder {}, fusion {}\n\n\
             | mode | nDCG@10 | recall@1 | recall@10 | MRR@10 | median query ms |\n\
             |---|---|---|---|---|---|\n",
            self.spec.dataset,
            self.passages,
            self.questions,
            self.spec.encoder,
            serde_json::to_string(&self.spec.fusion).unwrap_or_default(),
        );
        for r in &self.results {
            let m = &r.metrics;
            out += &format!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |\n",
                r.mode.as_str(),
                m.ndcg_at_10,
                m.recall_at_1,
                m.recall_at_10,
                m.mrr_at_10,
                r.median_query_ms
            );
        }
        if !self.sweep.is_empty() {
            out += "\nhybrid mode by fusion setting\n\n\
                    | fusion | nDCG@10 | recall@1 | recall@10 | MRR@10 |\n|---|---|---|---|---|\n";
            for r in &self.sweep {
                let m = &r.metrics;
                let fusion = match r.fusion {
                    Fusion::Weighted { vector_weight } => format!("weighted w={vector_weight}"),
                    Fusion::Rrf { k } => format!("rrf k={k}"),
                };
                out += &format!(
                    "| {fusion} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                    m.ndcg_at_10, m.recall_at_1, m.recall_at_10, m.mrr_at_10
                );
            }
        }
        out
    }
}
