//! Leakage audits of a collection, run in the background by the job framework
//! (`engram_store::jobs`): `start_audit` records the job and returns at once; a thread
//! gathers the documents and runs `engram_inverter::audit::run`, then the report is
//! stored in the collection's meta range (RocksDB, synced), so reports survive
//! restarts and go away with the collection. In cluster mode the audit is queued
//! (`queued.rs`), one node runs it, and the report is stored through the
//! replicated log, so every node holds and serves it.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use engram_cluster::work_queue::QueuedJob;
use engram_inverter::audit::{self, AuditDoc, AuditInput};
use engram_inverter::lexicon::Lexicon;
use engram_inverter::{AuditOptions, AuditReport, Probe};
use engram_store::collection::{Collection, DocumentRecord};
use engram_store::jobs::{JobStatus, Jobs};
use engram_store::storage::Storage;
use engram_store::Store;
use serde::{Deserialize, Serialize};

use super::queued::Queued;
use super::Engine;
use crate::error::{Error, Result};

/// Most documents embedded for the retrieval side of an audit (evenly sampled).
const MAX_CORPUS: usize = 500;
/// Words of a known-item query (a span from the middle of a document).
const QUERY_WORDS: usize = 12;
/// Audits running at once at most, over all collections (each takes a core and
/// the probe's memory).
const MAX_RUNNING: usize = 2;

/// An audit job as listed: where it is, and its grade once done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditStatus {
    #[serde(flatten)]
    pub job: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<char>,
    /// Cluster mode: the replicated log's sequence of the stored report, which a
    /// node other than the one that ran the audit waits for before serving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_seq: Option<u64>,
}

engram_store::job_kind!(AuditStatus, "audit");

/// What is stored per audit beside its job record: the report. (Records written
/// before the job framework carry their status here too, and are listed from it.)
#[derive(Serialize, Deserialize)]
struct AuditRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<AuditStatus>,
    report: Option<AuditReport>,
}

/// The audit jobs, and the probe (loaded once, on the first audit).
pub(super) struct AuditJobs {
    pub(super) jobs: Jobs<AuditStatus>,
    probe: OnceLock<Arc<Probe>>,
}

impl AuditJobs {
    pub(super) fn new(storage: Arc<Storage>) -> Self {
        AuditJobs {
            jobs: Jobs::new(storage),
            probe: OnceLock::new(),
        }
    }

    fn probe(&self) -> Result<Arc<Probe>> {
        if let Some(p) = self.probe.get() {
            return Ok(p.clone());
        }
        let p = Arc::new(Probe::default_probe()?);
        Ok(self.probe.get_or_init(|| p).clone())
    }
}

/// In cluster mode an audit goes on the work queue: one node inverts (minutes of a
/// core, the probe's memory), and its report reaches every node through the
/// replicated log.
impl Queued for AuditStatus {
    fn local(engine: &Engine) -> &Jobs<Self> {
        &engine.audits.jobs
    }

    fn run(engine: &Arc<Engine>, job: &QueuedJob) -> Result<()> {
        let opts: AuditOptions = serde_json::from_value(job.request.clone())
            .map_err(|e| Error::invalid("request", format!("a queued audit's request: {e}")))?;
        let coll = engine.audit_target(&job.collection, &opts)?;
        let mut status = AuditStatus {
            job: JobStatus::start(&job.collection, "inverting"),
            grade: None,
            report_seq: None,
        };
        status.job.id = job.id.clone();
        engine.spawn_audit(coll, opts, status)?;
        Ok(())
    }
}

impl Engine {
    /// Starts an audit of `name` in the background and returns its status (202); in
    /// cluster mode it is queued (stage "queued") and one node runs it.
    pub fn start_audit(&self, name: &str, opts: AuditOptions) -> Result<AuditStatus> {
        let coll = self.audit_target(name, &opts)?;
        if let Some(node) = self.cluster_node() {
            let first = AuditStatus {
                job: JobStatus::start(name, "queued"),
                grade: None,
                report_seq: None,
            };
            let request = serde_json::to_value(&opts).expect("options serialise");
            return self.queue_job(node, first, request);
        }
        if self.audits.jobs.running().len() >= MAX_RUNNING {
            return Err(Error::Busy(format!(
                "{MAX_RUNNING} audits are running already; wait for one to finish"
            )));
        }
        let status = AuditStatus {
            job: JobStatus::start(name, "inverting"),
            grade: None,
            report_seq: None,
        };
        self.spawn_audit(coll, opts, status)
    }

    /// The collection an audit with `opts` may run on (checked input, a known
    /// collection of text embeddings).
    fn audit_target(&self, name: &str, opts: &AuditOptions) -> Result<Arc<Collection>> {
        let coll = self.store().collection(name)?;
        opts.validate()?;
        if coll.config.embedder.is_none() {
            return Err(Error::invalid(
                "collection",
                format!("collection '{name}' stores own vectors without an embedder; the audit inverts text embeddings"),
            ));
        }
        Ok(coll)
    }

    /// Runs an audit of `coll` as a job on this node, in the background.
    fn spawn_audit(
        &self,
        coll: Arc<Collection>,
        opts: AuditOptions,
        status: AuditStatus,
    ) -> Result<AuditStatus> {
        let probe = self.audits.probe()?;
        let encoder = engram_embedder::shared_minilm()?;
        let store = self.store.clone();
        let keep_coll = coll.clone();
        Ok(self.audits.jobs.spawn(
            status,
            move |_| !keep_coll.is_deleted(),
            move |job| -> Result<()> {
                let input = gather(&store, &coll, opts.sample)?;
                let progress = |done: usize, total: usize| {
                    job.progress("inverting", done, total);
                    if job.is_cancelled() {
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(())
                    }
                };
                let lexicon = Lexicon::shared_minilm(encoder.as_ref())?;
                let report = audit::run(
                    &input,
                    encoder.as_ref(),
                    probe,
                    Some(lexicon),
                    &opts,
                    &progress,
                )?;
                job.update(|s| s.grade = Some(report.grade));
                let id = job.status().job.id;
                let seq = store_report(&store, &coll, &id, report)?;
                job.update(|s| s.report_seq = seq);
                Ok(())
            },
        )?)
    }

    /// Every audit of a collection, oldest first, with live progress for running ones
    /// (in cluster mode, as the node running each reports it).
    pub fn audits(&self, name: &str) -> Result<Vec<AuditStatus>> {
        self.store().collection(name)?;
        let mut out = self.audits.jobs.list(name)?;
        self.merge_queued(name, &mut out)?;
        // Audits recorded before the job framework: their status is in the report record.
        let known: HashSet<String> = out.iter().map(|s| s.job.id.clone()).collect();
        self.store().storage().scan_audits(name, |id, bytes| {
            if !known.contains(id) {
                if let Some(status) = read_record(id, bytes)?.status {
                    out.push(status);
                }
            }
            Ok(())
        })?;
        out.sort_by_key(|s| s.job.created_unix);
        Ok(out)
    }

    /// Asks a running audit to stop after the text it is inverting; it then reads
    /// "cancelled". A finished audit is returned unchanged.
    pub fn cancel_audit(&self, name: &str, id: &str) -> Result<AuditStatus> {
        self.store().collection(name)?;
        self.cancel_queued::<AuditStatus>(name, id)?;
        match self.audits.jobs.cancel(name, id)? {
            Some(status) => Ok(status),
            None => self.audit_status(name, id),
        }
    }

    pub fn audit_status(&self, name: &str, id: &str) -> Result<AuditStatus> {
        self.audits(name)?
            .into_iter()
            .find(|s| s.job.id == id)
            .ok_or_else(|| Error::AuditNotFound {
                collection: name.into(),
                id: id.into(),
            })
    }

    /// The finished report of an audit (409 while it runs or when it failed).
    pub fn audit_report(&self, name: &str, id: &str) -> Result<AuditReport> {
        let status = self.audit_status(name, id)?;
        // Stored through the replicated log by another node: read once applied here.
        if let Some(seq) = status.report_seq {
            self.store().wait_applied(seq)?;
        }
        let mut report = None;
        self.store().storage().scan_audits(name, |key, bytes| {
            if key == id {
                report = read_record(id, bytes)?.report;
            }
            Ok(())
        })?;
        report.ok_or(Error::AuditNotReady(
            id.to_string(),
            status.job.state.to_string(),
        ))
    }
}

fn read_record(id: &str, bytes: &[u8]) -> engram_store::Result<AuditRecord> {
    serde_json::from_slice(bytes)
        .map_err(|e| engram_store::Error::Corrupt(format!("audit record {id}: {e}")))
}

/// Stores the report (a 404 once the collection is deleted); returns its log
/// sequence in cluster mode.
fn store_report(
    store: &Store,
    coll: &Collection,
    id: &str,
    report: AuditReport,
) -> Result<Option<u64>> {
    let record = AuditRecord {
        status: None,
        report: Some(report),
    };
    let json = serde_json::to_vec(&record).expect("audit records serialise");
    Ok(store.put_audit(&coll.config.name, coll.incarnation(), id, &json)?)
}

/// Up to `n` items spread evenly over `items` (sorted by id, so reproducible).
fn even<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n].clone()).collect()
}

/// The audit's input: `sample` documents' first stored chunk (the text behind the
/// vector an attacker would hold), and up to [`MAX_CORPUS`] whole documents with
/// known-item queries for the retrieval side. The documents are listed shard by
/// shard where each is kept (`Store::each_document`), and so is a chunk's span
/// (`Store::chunk_span`).
fn gather(store: &Store, coll: &Collection, sample: usize) -> Result<AuditInput> {
    let name = &coll.config.name;
    let mut docs: Vec<(String, String, Vec<u64>)> = Vec::new();
    store.each_document(name, |id, rec: DocumentRecord| {
        if let Some(text) = rec.text.filter(|t| !t.trim().is_empty()) {
            docs.push((id.to_string(), text, rec.chunks));
        }
        Ok(())
    })?;
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut targets = Vec::new();
    for (id, text, chunks) in even(&docs, sample) {
        let span = match chunks.first() {
            Some(&c) => store
                .chunk_span(name, &id, c)?
                .and_then(|(start, end)| text.get(start as usize..end as usize))
                .map(str::to_string),
            None => None,
        };
        targets.push(AuditDoc {
            id,
            text: span.unwrap_or(text),
        });
    }
    let corpus: Vec<AuditDoc> = even(&docs, MAX_CORPUS)
        .into_iter()
        .map(|(id, text, _)| AuditDoc { id, text })
        .collect();
    let queries = audit::known_item_queries(&corpus, QUERY_WORDS);
    Ok(AuditInput {
        collection: name.clone(),
        targets,
        corpus,
        queries,
        query_source: format!(
            "known-item queries: a {QUERY_WORDS}-word span from the middle of each document"
        ),
    })
}
