//! Promotion of a collection's hot cluster into a LoRA adapter, run in the background
//! like an audit: `start_promotion` picks the documents (a cluster ranked by query
//! hits, or the whole collection), returns at once, and a thread runs the trainer's
//! pipeline (`engram_trainer::promote::run`: synthetic data, training, gate, register,
//! activate when the gate passes).
//!
//! Everything a promotion writes lives in `<data>/promotions/<collection>/<id>`, where
//! the id is a hash of the chosen documents and options: asking again for the same
//! promotion after a crash or restart resumes it from its synthetic-data journal and
//! last checkpoint. The job (its status, and the report once done) is recorded by the
//! job framework (`engram_store::jobs`), so finished promotions are listed after a
//! restart too, and a promotion the server died in reads "interrupted". One promotion
//! runs at a time: it takes both cores and ~0.7 GB for the trainable model.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use engram_generator::AdapterKind;
use engram_store::jobs::{JobState, JobStatus, Jobs};
use engram_trainer::gate::GateConfig;
use engram_trainer::promote::{self, Models, PromoteEvent, PromoteOptions};
use engram_trainer::synth::{Document, SynthConfig, SynthItem};
use engram_trainer::{
    HeldOutQuestion, LoraConfig, PrefixConfig, QaPair, TrainConfig, TrainableModel,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::promote_request::{adapter_kind, check_bounds, parse_strategies, DEFAULT_PREFIX_TOKENS};
pub use super::promote_request::{PairInput, PromoteRequest, QuestionInput};
use super::traffic::{serving_prompt, LoggedPicks};
use super::Engine;
use crate::error::{Error, Result};
use engram_trainer::distill::{DistillConfig, DistillLoss};
use engram_trainer::token_weights::TokenWeights;

/// Documents a promotion takes from its cluster at most, by default.
const DEFAULT_MAX_DOCUMENTS: usize = 40;
/// Where promotions finished before the job framework kept their status.
const LEGACY_STATUS_FILE: &str = "status.json";

/// A promotion as listed: where it is (stages synthesizing, training, evaluating),
/// and its report once done. An interrupted one resumes when asked for again.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct PromotionStatus {
    #[serde(flatten)]
    pub job: JobStatus,
    /// Latest training loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    pub documents: usize,
    /// The trainer's report (gate, accuracy, perplexity, training) once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub report: Option<serde_json::Value>,
    /// The same as a plain-text table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

engram_store::job_kind!(PromotionStatus, "promotion");

impl PromotionStatus {
    pub(super) fn new(job: JobStatus, documents: usize) -> Self {
        Self {
            job,
            loss: None,
            documents,
            report: None,
            summary: None,
        }
    }
}

/// The value a request field names (`default` when absent), or a 400 listing the
/// names `parse` accepts (its error).
fn named_choice<T>(
    field: &str,
    given: Option<&str>,
    default: T,
    parse: impl Fn(&str) -> std::result::Result<T, &'static str>,
) -> Result<T> {
    match given {
        None => Ok(default),
        Some(name) => parse(name).map_err(|choices| {
            Error::invalid(field, format!("unknown {field} '{name}'; use {choices}"))
        }),
    }
}

/// The promotion jobs.
pub(super) struct PromotionJobs {
    pub(super) jobs: Jobs<PromotionStatus>,
    /// The adapter kind of requests that name none ([`Engine::with_default_adapter`]).
    default_adapter: AdapterKind,
}

impl PromotionJobs {
    pub(super) fn new(storage: Arc<engram_store::storage::Storage>) -> Self {
        PromotionJobs {
            jobs: Jobs::new(storage),
            default_adapter: AdapterKind::Lora,
        }
    }
}

impl Engine {
    /// Promotions that name no adapter kind train `kind` (LoRA unless set): what
    /// `engram eval weights --adapter` uses to run its promotion with a prefix.
    pub fn with_default_adapter(mut self, kind: AdapterKind) -> Self {
        self.promotions.default_adapter = kind;
        self
    }
}

/// A promotion ready to run: its documents, questions and options.
pub struct PromotionPlan {
    pub id: String,
    pub documents: Vec<Document>,
    pub held_out: Vec<HeldOutQuestion>,
    pub options: PromoteOptions,
    /// Logged questions to train on and to gate on (`logged_questions`), answered by
    /// rag when the promotion runs.
    pub logged: LoggedPicks,
}

/// FNV-1a over the plan's defining parts: same documents and options, same id.
fn plan_id(
    documents: &[Document],
    options: &PromoteOptions,
    held_out: &[HeldOutQuestion],
    logged: &LoggedPicks,
) -> String {
    let docs: Vec<_> = documents.iter().map(|d| (&d.id, &d.text)).collect();
    // Without logged questions the key is what it was before they existed, so an
    // interrupted promotion of an older version still resumes.
    let key = if logged.train.is_empty() && logged.held_out.is_empty() {
        serde_json::to_string(&(docs, options, held_out))
    } else {
        serde_json::to_string(&(docs, options, held_out, logged))
    }
    .expect("plans serialise");
    format!("{:016x}", engram_trainer::synth::hash_str(&key))
}

impl Engine {
    pub(super) fn promotions_dir(&self, name: &str) -> PathBuf {
        self.dir.join("promotions").join(name)
    }

    /// A document as a promotion learns it (None: gone, or no text).
    pub(super) fn learnable(&self, name: &str, id: &str) -> Result<Option<Document>> {
        let rec: Option<engram_store::collection::DocumentRecord> =
            self.store().document_record(name, id)?;
        Ok(rec.and_then(|r| {
            let text = r.text.filter(|t| !t.trim().is_empty())?;
            Some(Document {
                id: id.to_string(),
                text,
                seq: r.seq,
            })
        }))
    }

    /// The documents `req` picks (a cluster, or all) and the cluster's rank.
    fn chosen_documents(
        &self,
        name: &str,
        req: &PromoteRequest,
    ) -> Result<(Vec<Document>, Option<String>)> {
        let max_docs = req.max_documents.unwrap_or(DEFAULT_MAX_DOCUMENTS);
        let (ids, cluster) = if req.all {
            // Listed shard by shard where each is kept; in id order, as before.
            let mut ids = Vec::new();
            self.store().each_document(name, |id, _| {
                ids.push(id);
                Ok(())
            })?;
            ids.sort_unstable();
            (ids, None)
        } else {
            let rank = req.cluster.unwrap_or(0);
            let clusters = self.store().clusters(name, req.clusters, max_docs)?;
            let n = clusters.len();
            let c = clusters.into_iter().nth(rank).ok_or_else(|| {
                Error::invalid(
                    "cluster",
                    format!("collection '{name}' has {n} clusters (0..{n}); list them with `engram hot {name}`"),
                )
            })?;
            // The most-hit documents first, then the rest in id order.
            let mut ids: Vec<String> = c.top.iter().map(|d| d.id.clone()).collect();
            let rest: Vec<String> = c.ids.into_iter().filter(|id| !ids.contains(id)).collect();
            ids.extend(rest);
            (ids, Some(rank.to_string()))
        };
        let mut documents = Vec::new();
        for id in ids.into_iter().take(max_docs) {
            documents.extend(self.learnable(name, &id)?);
        }
        if documents.is_empty() {
            return Err(Error::invalid(
                "collection",
                format!("collection '{name}' has no documents with text to learn from; promotion trains on text"),
            ));
        }
        Ok((documents, cluster))
    }

    /// Chooses the documents and builds the trainer's options for `req`.
    pub fn plan_promotion(&self, name: &str, req: &PromoteRequest) -> Result<PromotionPlan> {
        self.store().collection(name)?;
        check_bounds(req)?;
        let continued = if req.continue_training {
            Some(self.plan_continuation(name, req)?)
        } else {
            None
        };
        let (documents, cluster) = match &continued {
            Some(c) => (c.documents.clone(), None),
            None => self.chosen_documents(name, req)?,
        };
        let seed = req.seed.unwrap_or(0);
        let (distill, logged) = self.plan_method(name, req, &documents, seed)?;
        let strategies = match (&distill, &req.strategies) {
            // Distillation's own training questions are the logged ones; synthetic
            // strategies (self-study questions) only when asked for.
            (Some(_), None) => Vec::new(),
            _ => parse_strategies(req.strategies.as_deref())?,
        };
        let rank = req.rank.unwrap_or(16);
        let kind = match &continued {
            Some(c) => c.start.kind,
            None => adapter_kind(req, self.promotions.default_adapter)?,
        };
        let prefix = (kind == AdapterKind::Prefix).then(|| PrefixConfig {
            tokens: req.prefix_tokens.unwrap_or(DEFAULT_PREFIX_TOKENS),
            init: Vec::new(),
        });
        // A prefix's keys and values are activations of order 1, not small deltas:
        // they take a larger step (the Cartridges paper trains them at 2e-2).
        let learning_rate = match kind {
            AdapterKind::Lora => 1e-3,
            AdapterKind::Prefix => 1e-2,
        };
        let mut train = TrainConfig {
            prefix,
            lora: LoraConfig {
                rank,
                alpha: req.alpha.unwrap_or(2.0 * rank as f64),
                dropout: 0.05,
                ..Default::default()
            },
            learning_rate: req.learning_rate.unwrap_or(learning_rate),
            warmup_steps: 4,
            steps: req.steps.unwrap_or(60),
            grad_accum: 4,
            replay_ratio: 0.2,
            checkpoint_every: 10,
            seed: req.seed.unwrap_or(0),
            ..Default::default()
        };
        let (mut replay_texts, eval_texts) = engram_trainer::data::general_text();
        // Replayed text is pulled towards the base model's own distributions (it
        // forgot +1% where training on its tokens forgot +3 to +6%); a continuation
        // replays the adapter's kept documents instead, which the base does not know.
        let replay_base_kl = continued.is_none();
        if let Some(c) = continued {
            // The adapter's shape, its weights to start from, its records to carry
            // over, and its unchanged documents replayed so it keeps them.
            (train.lora, train.prefix) = (c.start.lora, c.start.prefix);
            train.continue_from = Some(c.start.continuation);
            replay_texts.extend(c.kept_texts);
        }
        let options = PromoteOptions {
            collection: name.to_string(),
            cluster,
            synth: SynthConfig {
                strategies,
                seed: req.seed.unwrap_or(0),
                ..Default::default()
            },
            train,
            gate: GateConfig {
                force: req.force,
                ..Default::default()
            },
            work_dir: PathBuf::new(),
            replay_texts,
            eval_texts,
            eval_max_tokens: 32,
            extra_pairs: req
                .train_pairs
                .iter()
                .map(|p| QaPair {
                    question: p.question.clone(),
                    answer: p.answer.clone(),
                })
                .collect(),
            hold_out_every: 0,
            distill,
            distill_questions: Vec::new(),
            replay_base_kl,
        };
        options.train.validate()?;
        let held_out: Vec<HeldOutQuestion> = req
            .held_out
            .iter()
            .map(|q| HeldOutQuestion {
                question: q.question.clone(),
                answers: q.answers.clone(),
                facts: Vec::new(),
            })
            .collect();
        let id = plan_id(&documents, &options, &held_out, &logged);
        let options = PromoteOptions {
            work_dir: self.promotions_dir(name).join(&id),
            ..options
        };
        Ok(PromotionPlan {
            id,
            documents,
            held_out,
            options,
            logged,
        })
    }

    /// The teaching method of `req` (distillation's configuration, or None for pairs)
    /// and the logged questions it uses.
    fn plan_method(
        &self,
        name: &str,
        req: &PromoteRequest,
        documents: &[Document],
        seed: u64,
    ) -> Result<(Option<DistillConfig>, LoggedPicks)> {
        let defaults = DistillConfig::default();
        let loss = named_choice("loss", req.loss.as_deref(), defaults.loss, |l| {
            DistillLoss::parse(l).ok_or("kl, next-token or kl+next-token")
        })?;
        let token_weights = named_choice(
            "token_weights",
            req.token_weights.as_deref(),
            defaults.token_weights,
            |w| TokenWeights::parse(w).ok_or("uniform or context-gain"),
        )?;
        let config = DistillConfig {
            loss,
            top_k: req.top_k.unwrap_or(20),
            token_weights,
            ..defaults
        };
        config
            .validate()
            .map_err(|e| Error::invalid("token_weights", e.to_string()))?;
        match req.method.as_deref() {
            Some("pairs") => Ok((
                None,
                if req.logged_questions {
                    self.logged_picks(name, documents, seed)?
                } else {
                    LoggedPicks::default()
                },
            )),
            Some("distill") => {
                let picks = self.logged_picks(name, documents, seed)?;
                if picks.held_out.is_empty() {
                    return Err(Error::invalid("method", "distillation holds out logged questions for its gate: ask at least two distinct questions about the promoted documents first"));
                }
                Ok((Some(config), picks))
            }
            Some(other) => Err(Error::invalid(
                "method",
                format!("unknown method '{other}'; use distill or pairs"),
            )),
            None => match self.logged_picks(name, documents, seed) {
                Ok(picks) if !picks.held_out.is_empty() && !picks.train.is_empty() => {
                    Ok((Some(config), picks))
                }
                // Too few logged questions to distill and gate on: the pairs method,
                // with them when asked for.
                picks if req.logged_questions => Ok((None, picks?)),
                _ => Ok((None, LoggedPicks::default())),
            },
        }
    }

    /// Runs a planned promotion to the end on this thread (the background job and the
    /// benchmark use it), reporting progress to `progress`.
    pub fn run_promotion(
        &self,
        plan: &PromotionPlan,
        progress: &mut dyn FnMut(&PromoteEvent) -> ControlFlow<()>,
    ) -> Result<engram_trainer::PromotionReport> {
        let collection = &plan.options.collection;
        let incarnation = self.store().incarnation(collection)?;
        let registry = self.adapter_store()?.registry()?;
        let chat = self.language_model()?;
        let (mut held_out, mut options) = (plan.held_out.clone(), plan.options.clone());
        if options.distill.is_some() {
            held_out.extend(self.rag_gate(collection, &plan.logged.held_out)?);
            options.distill_questions = self.distill_questions(collection, &plan.logged.train)?;
        } else {
            let (pairs, gate) = self.answer_logged(collection, &plan.logged)?;
            options.extra_pairs.extend(pairs);
            held_out.extend(gate);
        }
        let trainable = TrainableModel::load_default()?;
        let result = promote::run(
            &plan.documents,
            &held_out,
            Models {
                chat: chat.as_ref(),
                trainable: &trainable,
                prompt: Some(&serving_prompt),
            },
            &registry,
            &options,
            progress,
        );
        // Tie the adapter to the collection it trained for; deleted (or deleted and
        // created again) meanwhile, the adapter goes with it.
        self.claim_adapters(collection, incarnation)?;
        Ok(result?)
    }

    /// Starts a promotion of `name` in the background and returns its status (202).
    pub fn start_promotion(
        self: &Arc<Self>,
        name: &str,
        req: &PromoteRequest,
    ) -> Result<PromotionStatus> {
        let plan = self.plan_promotion(name, req)?;
        if let Some(node) = self.cluster_node() {
            let mut job = JobStatus::start(name, "queued");
            job.id = plan.id.clone();
            let first = PromotionStatus::new(job, plan.documents.len());
            let request = serde_json::to_value(req).expect("requests serialise");
            return self.queue_job(node, first, request);
        }
        if let Some(other) = self.promotions.jobs.running().first() {
            return Err(Error::PromotionRunning(other.job.collection.clone()));
        }
        self.spawn_promotion(plan)
    }

    /// Runs `plan` as a job on this machine, in the background.
    pub(super) fn spawn_promotion(
        self: &Arc<Self>,
        plan: PromotionPlan,
    ) -> Result<PromotionStatus> {
        let name = plan.options.collection.clone();
        let mut job = JobStatus::start(&name, "starting");
        job.id = plan.id.clone();
        let status = PromotionStatus::new(job, plan.documents.len());
        std::fs::create_dir_all(&plan.options.work_dir)?;
        let (engine, keep) = (Arc::clone(self), Arc::clone(self));
        Ok(self.promotions.jobs.spawn(
            status,
            move |s| keep.store().collection(&s.job.collection).is_ok(),
            move |job| engine.promotion_job(&plan, job),
        )?)
    }

    /// The body of a promotion job: runs the plan with progress, then keeps the report.
    fn promotion_job(
        &self,
        plan: &PromotionPlan,
        job: &engram_store::jobs::JobHandle<PromotionStatus>,
    ) -> Result<()> {
        if !plan.logged.is_empty() {
            job.progress("answering logged questions", 0, plan.logged.len());
        }
        let result = self.run_promotion(plan, &mut |event| {
            match event {
                PromoteEvent::Synth(p) => job.progress("synthesizing", p.done, p.total),
                PromoteEvent::Teacher { done, total } => {
                    job.progress("teacher answering", *done, *total)
                }
                PromoteEvent::Train(p) => {
                    job.progress("training", p.step, p.total_steps);
                    job.update(|s| s.loss = Some(p.loss));
                }
                PromoteEvent::Evaluated { which, .. } => {
                    job.progress("evaluating", usize::from(*which == "adapter") + 1, 2)
                }
            }
            if job.is_cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let report = result?;
        // Cluster mode: the new version (and the activation) reach every node.
        if self.cluster_node().is_some() {
            job.progress("sharing the adapter", 0, 1);
            self.share_adapters(&plan.options.collection, None)?;
        }
        job.update(|s| {
            s.job.stage = "done".into();
            s.summary = Some(report.summary_table());
            s.report = serde_json::to_value(&report).ok();
        });
        Ok(())
    }

    /// Every promotion of a collection, oldest first, with live progress for the
    /// running one.
    pub fn promotions(&self, name: &str) -> Result<Vec<PromotionStatus>> {
        self.store().collection(name)?;
        let mut out = self.promotions.jobs.list(name)?;
        self.merge_queued(name, &mut out)?;
        let known: HashSet<String> = out.iter().map(|s| s.job.id.clone()).collect();
        // Promotions from before the job framework left only their directory (and
        // a `status.json` once finished).
        if let Ok(entries) = std::fs::read_dir(self.promotions_dir(name)) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&id) {
                    out.push(legacy_status(&e, id, name)?);
                }
            }
        }
        out.sort_by_key(|s| s.job.created_unix);
        Ok(out)
    }

    /// Asks a running promotion to stop: the trainer checks between steps, the job
    /// then reads "cancelled" (its files stay, so asking for the same promotion again
    /// resumes it). A finished promotion is returned unchanged.
    pub fn cancel_promotion(&self, name: &str, id: &str) -> Result<PromotionStatus> {
        self.store().collection(name)?;
        self.cancel_queued::<PromotionStatus>(name, id)?;
        match self.promotions.jobs.cancel(name, id)? {
            Some(status) => Ok(status),
            None => self.promotion_status(name, id),
        }
    }

    pub fn promotion_status(&self, name: &str, id: &str) -> Result<PromotionStatus> {
        self.promotions(name)?
            .into_iter()
            .find(|s| s.job.id == id)
            .ok_or_else(|| Error::PromotionNotFound {
                collection: name.into(),
                id: id.into(),
            })
    }

    /// The synthetic data a promotion made (`engram synth show`).
    pub fn promotion_data(&self, name: &str, id: &str) -> Result<Vec<SynthItem>> {
        self.promotion_status(name, id)?;
        let path = self.promotions_dir(name).join(id).join("synth.jsonl");
        if !path.is_file() {
            return Ok(Vec::new());
        }
        Ok(engram_trainer::synth::read_journal(&path)?)
    }
}

/// The status of a promotion directory with no job record (written before the job
/// framework): its `status.json` when it finished, else interrupted.
fn legacy_status(
    entry: &std::fs::DirEntry,
    id: String,
    collection: &str,
) -> Result<PromotionStatus> {
    if let Ok(bytes) = std::fs::read(entry.path().join(LEGACY_STATUS_FILE)) {
        return serde_json::from_slice(&bytes)
            .map_err(|err| Error::corrupt(format!("promotion status {id}: {err}")));
    }
    let modified = entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut job = JobStatus::start(collection, "interrupted");
    (job.id, job.created_unix, job.state) = (id, modified, JobState::Interrupted);
    job.error = Some(
        "the server stopped while it ran; ask for the same promotion again to resume it".into(),
    );
    Ok(PromotionStatus::new(job, 0))
}
