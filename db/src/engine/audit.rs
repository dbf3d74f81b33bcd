//! Leakage audits of a collection, run in the background like a context build
//! (`contextualize.rs`): `start_audit` records the job and returns at once; a thread
//! gathers the documents, runs `engram_inverter::audit::run` with progress kept in
//! memory, then stores the report in the collection's meta range (RocksDB, synced),
//! so reports survive restarts and go away with the collection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use engram_inverter::audit::{self, AuditDoc, AuditInput};
use engram_inverter::{AuditOptions, AuditReport, Probe};
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::collection::{Collection, DocumentRecord};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Most documents embedded for the retrieval side of an audit (evenly sampled).
const MAX_CORPUS: usize = 500;
/// Words of a known-item query (a span from the middle of a document).
const QUERY_WORDS: usize = 12;

/// An audit job as listed: where it is, and its grade once done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditStatus {
    pub id: String,
    pub collection: String,
    /// running, done, failed, or interrupted (the server stopped while it ran).
    pub state: String,
    pub done: usize,
    pub total: usize,
    pub created_unix: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<char>,
}

/// What is stored per audit.
#[derive(Serialize, Deserialize)]
struct AuditRecord {
    status: AuditStatus,
    report: Option<AuditReport>,
}

/// Running audits' progress, and the probe (loaded once, on the first audit).
#[derive(Default)]
pub(super) struct AuditJobs {
    running: Mutex<HashMap<String, AuditStatus>>,
    probe: OnceLock<Arc<Probe>>,
}

impl AuditJobs {
    fn probe(&self) -> Result<Arc<Probe>> {
        if let Some(p) = self.probe.get() {
            return Ok(p.clone());
        }
        let p = Arc::new(Probe::default_probe()?);
        Ok(self.probe.get_or_init(|| p).clone())
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Engine {
    /// Starts an audit of `name` in the background and returns its status (202).
    pub fn start_audit(&self, name: &str, opts: AuditOptions) -> Result<AuditStatus> {
        let coll = self.collection(name)?;
        opts.validate()?;
        if coll.config.embedder.is_none() {
            return Err(Error::invalid(
                "collection",
                format!("collection '{name}' stores own vectors without an embedder; the audit inverts text embeddings"),
            ));
        }
        let probe = self.audits.probe()?;
        let encoder = engram_embedder::shared_minilm()?;
        let created = now();
        let id = format!(
            "{created:x}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let status = AuditStatus {
            id: id.clone(),
            collection: name.to_string(),
            state: "running".into(),
            done: 0,
            total: 0,
            created_unix: created,
            error: None,
            grade: None,
        };
        // Into `running` before the record is stored, so no listing ever sees a
        // stored "running" record without its job (see `audits`).
        self.audits
            .running
            .lock()
            .expect("lock")
            .insert(id.clone(), status.clone());
        let record = AuditRecord {
            status: status.clone(),
            report: None,
        };
        if let Err(e) = store(&self.storage, &coll, &record) {
            self.audits.running.lock().expect("lock").remove(&id);
            return Err(e);
        }
        let (storage, jobs) = (self.storage.clone(), self.audits.clone());
        let reply = status.clone();
        std::thread::Builder::new()
            .name(format!("audit-{name}"))
            .spawn(move || {
                let progress = |done: usize, total: usize| {
                    if let Some(s) = jobs.running.lock().expect("lock").get_mut(&id) {
                        (s.done, s.total) = (done, total);
                    }
                };
                let result = gather(&storage, &coll, opts.sample).and_then(|input| {
                    Ok(audit::run(
                        &input,
                        encoder.as_ref(),
                        probe,
                        &opts,
                        &progress,
                    )?)
                });
                // Stays in `running` until the final record is stored: a status
                // request in between would otherwise read the stored "running"
                // record of a job that is not running, and call it interrupted.
                let mut status = jobs
                    .running
                    .lock()
                    .expect("lock")
                    .get(&id)
                    .cloned()
                    .unwrap_or(status);
                let report = match result {
                    Ok(report) => {
                        status.state = "done".into();
                        status.done = status.total;
                        status.grade = Some(report.grade);
                        Some(report)
                    }
                    Err(e) => {
                        tracing::error!(collection = %coll.config.name, error = %e, "audit failed");
                        status.state = "failed".into();
                        status.error = Some(e.to_string());
                        None
                    }
                };
                {
                    let _writer = coll.write_lock.lock().expect("lock");
                    if !coll.is_deleted() {
                        if let Err(e) = store(&storage, &coll, &AuditRecord { status, report }) {
                            tracing::error!(error = %e, "cannot store the audit report");
                        }
                    }
                }
                jobs.running.lock().expect("lock").remove(&id);
            })
            .map_err(Error::Io)?;
        Ok(reply)
    }

    /// Every audit of a collection, oldest first, with live progress for running ones.
    pub fn audits(&self, name: &str) -> Result<Vec<AuditStatus>> {
        self.collection(name)?;
        let running = self.audits.running.lock().expect("lock").clone();
        let mut out = Vec::new();
        self.storage.scan_audits(name, |id, bytes| {
            let rec: AuditRecord = serde_json::from_slice(bytes)
                .map_err(|e| Error::Corrupt(format!("audit record {id}: {e}")))?;
            let mut status = running.get(id).cloned().unwrap_or(rec.status);
            if status.state == "running" && !running.contains_key(id) {
                status.state = "interrupted".into();
            }
            out.push(status);
            Ok(())
        })?;
        Ok(out)
    }

    pub fn audit_status(&self, name: &str, id: &str) -> Result<AuditStatus> {
        self.audits(name)?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Error::AuditNotFound {
                collection: name.into(),
                id: id.into(),
            })
    }

    /// The finished report of an audit (409 while it runs or when it failed).
    pub fn audit_report(&self, name: &str, id: &str) -> Result<AuditReport> {
        let status = self.audit_status(name, id)?;
        let mut report = None;
        self.storage.scan_audits(name, |key, bytes| {
            if key == id {
                let rec: AuditRecord = serde_json::from_slice(bytes)
                    .map_err(|e| Error::Corrupt(format!("audit record {id}: {e}")))?;
                report = rec.report;
            }
            Ok(())
        })?;
        report.ok_or(Error::AuditNotReady(id.to_string(), status.state))
    }
}

fn store(storage: &Storage, coll: &Collection, rec: &AuditRecord) -> Result<()> {
    let json = serde_json::to_vec(rec).expect("audit records serialise");
    storage.put_audit(&coll.config.name, &rec.status.id, &json)
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
/// known-item queries for the retrieval side.
fn gather(storage: &Storage, coll: &Collection, sample: usize) -> Result<AuditInput> {
    let name = &coll.config.name;
    let mut docs: Vec<(String, String, Vec<u64>)> = Vec::new();
    storage.scan_documents::<DocumentRecord>(name, |id, rec| {
        if let Some(text) = rec.text.filter(|t| !t.trim().is_empty()) {
            docs.push((id.to_string(), text, rec.chunks));
        }
        Ok(())
    })?;
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut targets = Vec::new();
    for (id, text, chunks) in even(&docs, sample) {
        let span = match chunks.first() {
            Some(&c) => storage.get_vector(name, c)?.and_then(|v| {
                text.get(v.start as usize..v.end as usize)
                    .map(str::to_string)
            }),
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
