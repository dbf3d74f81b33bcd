//! Background jobs, one framework for every kind: corpus-context builds here, leakage
//! audits and promotions in the application.
//!
//! Why one framework: each kind needs the same things (a typed state, progress, a
//! record that survives restarts, "interrupted" when the process died while it
//! ran, cancellation, and a job whose thread could not start must not read
//! "running" forever), and three hand-written copies had drifted apart. A job's
//! record is stored in the collection's meta range through the write log, so it
//! goes away with the collection; progress lives in memory while the job runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Storage;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Done,
    Failed,
    /// Stopped on request.
    Cancelled,
    /// The server stopped while it ran.
    Interrupted,
}

impl JobState {
    pub fn is_running(self) -> bool {
        self == JobState::Running
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        };
        f.write_str(s)
    }
}

/// What every job reports, whatever its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub id: String,
    pub collection: String,
    pub state: JobState,
    /// What it is doing now; each kind names its stages (e.g. "building",
    /// "embedding" for a context build; "training" for a promotion).
    #[serde(default)]
    pub stage: String,
    /// Progress within the stage.
    pub done: usize,
    pub total: usize,
    pub created_unix: u64,
    /// The same instant in milliseconds, which orders jobs started within one
    /// second (a restart and a new job take less); 0 in records from before it.
    #[serde(default)]
    pub created_ms: u64,
    /// Why it failed or was interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Cluster mode: the node that runs (or ran) the job from the work queue, and
    /// that delivery's number (more than 1: an earlier node died running it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<i64>,
    /// Cluster mode: every delivery so far, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<JobRun>,
}

/// One delivery of a queued job (cluster mode): the node that ran it, the
/// delivery's number, and when it started (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRun {
    pub node: u32,
    pub delivery: i64,
    pub started_ms: u64,
}

impl JobStatus {
    /// A running job with a new id.
    pub fn start(collection: &str, stage: &str) -> Self {
        let created_ms = crate::clock::unix_now_ms();
        let created = created_ms / 1000;
        JobStatus {
            id: format!(
                "{created:x}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            collection: collection.to_string(),
            state: JobState::Running,
            stage: stage.to_string(),
            done: 0,
            total: 0,
            created_unix: created,
            created_ms,
            error: None,
            node: None,
            delivery: None,
            runs: Vec::new(),
        }
    }
}

/// A kind of job: its status type embeds a [`JobStatus`] and adds its own fields.
pub trait JobKind: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// The kind's tag in record keys ("context", "audit", "promotion").
    const KIND: &'static str;
    fn job(&self) -> &JobStatus;
    fn job_mut(&mut self) -> &mut JobStatus;
}

/// Implements [`JobKind`] for a status struct whose `job` field is its [`JobStatus`]:
/// `job_kind!(AuditStatus, "audit");`.
#[macro_export]
macro_rules! job_kind {
    ($status:ty, $kind:literal) => {
        impl $crate::jobs::JobKind for $status {
            const KIND: &'static str = $kind;
            fn job(&self) -> &$crate::jobs::JobStatus {
                &self.job
            }
            fn job_mut(&mut self) -> &mut $crate::jobs::JobStatus {
                &mut self.job
            }
        }
    };
}

/// A running job's live status and its cancel flag, shared with its thread.
pub struct JobHandle<T> {
    status: Mutex<T>,
    cancelled: AtomicBool,
}

impl<T: JobKind> JobHandle<T> {
    pub fn status(&self) -> T {
        self.status.lock().expect("lock").clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut T)) {
        f(&mut self.status.lock().expect("lock"));
    }

    pub fn progress(&self, stage: &str, done: usize, total: usize) {
        self.update(|s| {
            let job = s.job_mut();
            if job.stage != stage {
                job.stage = stage.to_string();
            }
            (job.done, job.total) = (done, total);
        });
    }

    /// True once a cancel was asked for; the work checks it between steps.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Every job of one kind: the running ones in memory, every one's record in storage.
pub struct Jobs<T> {
    storage: Arc<Storage>,
    running: Mutex<HashMap<String, Arc<JobHandle<T>>>>,
    /// The job threads' stack size; `None` is the platform's default. A test sets
    /// one no system can give, to make the thread's start fail for real.
    pub(crate) stack_size: Option<usize>,
}

impl<T: JobKind> Jobs<T> {
    pub fn new(storage: Arc<Storage>) -> Self {
        Jobs {
            storage,
            running: Mutex::default(),
            stack_size: None,
        }
    }

    /// Records `status` as running and runs `work` on a thread of its own; returns
    /// at once with the status. `work`'s error ends the job failed (cancelled when a
    /// cancel was asked for); the final record is stored only while `keep(&status)`
    /// holds (the collection still exists), and the job stays listed as running
    /// until it is.
    pub fn spawn<W, K, E>(&self, status: T, keep: K, work: W) -> Result<T>
    where
        E: std::fmt::Display,
        W: FnOnce(&JobHandle<T>) -> std::result::Result<(), E> + Send + 'static,
        K: FnOnce(&T) -> bool + Send + 'static,
    {
        let id = status.job().id.clone();
        let handle = Arc::new(JobHandle {
            status: Mutex::new(status.clone()),
            cancelled: AtomicBool::new(false),
        });
        // Listed as running before its record is stored, so no listing ever sees a
        // stored "running" record without its job and calls it interrupted.
        self.running
            .lock()
            .expect("lock")
            .insert(id.clone(), handle.clone());
        if let Err(e) = self.store(&status) {
            self.running.lock().expect("lock").remove(&id);
            return Err(e);
        }
        let (storage, job) = (self.storage.clone(), handle.clone());
        let finish = move |result: std::result::Result<(), E>| {
            let mut status = job.status();
            let s = status.job_mut();
            match result {
                Ok(()) => {
                    s.state = JobState::Done;
                    s.done = s.total;
                }
                Err(_) if job.is_cancelled() => s.state = JobState::Cancelled,
                Err(e) => {
                    tracing::error!(kind = T::KIND, collection = %s.collection, error = %e, "job failed");
                    s.state = JobState::Failed;
                    s.error = Some(e.to_string());
                }
            }
            if keep(&status) {
                if let Err(e) = store_record(&storage, &status) {
                    tracing::error!(kind = T::KIND, error = %e, "cannot store the job's record");
                }
            }
            *job.status.lock().expect("lock") = status;
        };
        let thread_handle = handle.clone();
        let mut builder =
            std::thread::Builder::new().name(format!("{}-{}", T::KIND, status.job().collection));
        if let Some(bytes) = self.stack_size {
            builder = builder.stack_size(bytes);
        }
        let spawned = builder.spawn(move || finish(work(&thread_handle)));
        match spawned {
            // The thread holds no reference to the registry: `list` drops finished
            // handles once their final status is set.
            Ok(_) => Ok(status),
            Err(e) => {
                let mut failed = status.clone();
                let s = failed.job_mut();
                s.state = JobState::Failed;
                s.error = Some(format!("the job's thread could not start: {e}"));
                self.store(&failed)?;
                self.running.lock().expect("lock").remove(&id);
                Err(Error::Io(e))
            }
        }
    }

    fn store(&self, status: &T) -> Result<()> {
        store_record(&self.storage, status)
    }

    /// Every job of the kind in `collection`, oldest first: live status for running
    /// ones, "interrupted" for records left running by a process that died.
    pub fn list(&self, collection: &str) -> Result<Vec<T>> {
        let mut running = self.running.lock().expect("lock");
        // Finished jobs leave the running set once their record is stored.
        running.retain(|_, h| h.status().job().state.is_running());
        let mut out = Vec::new();
        self.storage.scan_jobs(collection, T::KIND, |id, bytes| {
            let mut status: T = serde_json::from_slice(bytes)
                .map_err(|e| Error::Corrupt(format!("{} record {id}: {e}", T::KIND)))?;
            if let Some(live) = running.get(id) {
                status = live.status();
            } else if status.job().state.is_running() {
                let s = status.job_mut();
                s.state = JobState::Interrupted;
                s.error = Some("the server stopped while it ran".into());
            }
            out.push(status);
            Ok(())
        })?;
        out.sort_by_key(|s| (s.job().created_unix, s.job().created_ms));
        Ok(out)
    }

    /// One job of `collection`, if it exists.
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<T>> {
        Ok(self
            .list(collection)?
            .into_iter()
            .find(|s| s.job().id == id))
    }

    /// The running job of the kind, in any collection.
    pub fn running(&self) -> Vec<T> {
        self.running
            .lock()
            .expect("lock")
            .values()
            .map(|h| h.status())
            .filter(|s| s.job().state.is_running())
            .collect()
    }

    /// Asks a running job to stop; returns its status (unchanged for a finished one).
    pub fn cancel(&self, collection: &str, id: &str) -> Result<Option<T>> {
        if let Some(h) = self.running.lock().expect("lock").get(id) {
            if h.status().job().collection == collection {
                h.cancelled.store(true, Ordering::SeqCst);
            }
        }
        self.get(collection, id)
    }
}

fn store_record<T: JobKind>(storage: &Storage, status: &T) -> Result<()> {
    let json = serde_json::to_vec(status).expect("job records serialise");
    let job = status.job();
    storage.put_job(&job.collection, T::KIND, &job.id, &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Test {
        #[serde(flatten)]
        job: JobStatus,
        note: Option<String>,
    }

    crate::job_kind!(Test, "test");

    fn new_job() -> Test {
        Test {
            job: JobStatus::start("c", "working"),
            note: None,
        }
    }

    /// Polls until the job leaves "running".
    fn finished(jobs: &Jobs<Test>, id: &str) -> Test {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = jobs.get("c", id).unwrap().expect("listed");
            if !s.job.state.is_running() {
                return s;
            }
            assert!(Instant::now() < deadline, "never finished: {s:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_job_runs_reports_progress_and_keeps_its_final_record() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let jobs = Jobs::new(storage.clone());
        let started = jobs
            .spawn(
                new_job(),
                |_| true,
                |job: &JobHandle<Test>| -> Result<()> {
                    job.progress("working", 3, 7);
                    job.update(|s| s.note = Some("kept".into()));
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(started.job.state, JobState::Running);
        let done = finished(&jobs, &started.job.id);
        assert_eq!(done.job.state, JobState::Done);
        assert_eq!((done.job.done, done.job.total), (7, 7));
        assert_eq!(done.note.as_deref(), Some("kept"));
        // A new registry over the same records (a restart) reads the same.
        let again = Jobs::<Test>::new(storage).list("c").unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].job.state, JobState::Done);
        assert_eq!(again[0].note.as_deref(), Some("kept"));
    }

    #[test]
    fn a_job_left_running_by_a_dead_process_reads_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let status = new_job();
        store_record(&storage, &status).unwrap();
        let listed = Jobs::<Test>::new(storage).list("c").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].job.state, JobState::Interrupted);
        assert!(listed[0].job.error.as_deref().unwrap().contains("stopped"));
    }

    #[test]
    fn failures_and_cancels_end_the_job_with_their_state() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let jobs = Jobs::new(storage);
        let failed = jobs
            .spawn(
                new_job(),
                |_| true,
                |_: &JobHandle<Test>| -> Result<()> { Err(Error::invalid("x", "went wrong")) },
            )
            .unwrap();
        let failed = finished(&jobs, &failed.job.id);
        assert_eq!(failed.job.state, JobState::Failed);
        assert!(failed.job.error.unwrap().contains("went wrong"));

        let looping = jobs
            .spawn(
                new_job(),
                |_| true,
                |job: &JobHandle<Test>| -> Result<()> {
                    while !job.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(Error::Cancelled("stopped on request".into()))
                },
            )
            .unwrap();
        assert_eq!(jobs.running().len(), 1);
        jobs.cancel("c", &looping.job.id).unwrap();
        let cancelled = finished(&jobs, &looping.job.id);
        assert_eq!(cancelled.job.state, JobState::Cancelled);
        assert!(jobs.running().is_empty());
    }

    #[test]
    fn a_job_whose_thread_cannot_start_is_recorded_failed_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let mut jobs = Jobs::new(storage.clone());
        // No system maps a stack this size: the spawn itself fails.
        jobs.stack_size = Some(usize::MAX / 2);
        let job = new_job();
        let id = job.job.id.clone();
        let err = jobs
            .spawn(
                job,
                |_| true,
                |_: &JobHandle<Test>| -> Result<()> { Ok(()) },
            )
            .unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err:?}");
        let listed = jobs.get("c", &id).unwrap().expect("its record is kept");
        assert_eq!(listed.job.state, JobState::Failed);
        assert!(listed.job.error.unwrap().contains("could not start"));
        // Another process (a restart) reads the same record, not "interrupted".
        let after_restart: Jobs<Test> = Jobs::new(storage);
        let reread = after_restart.get("c", &id).unwrap().unwrap();
        assert_eq!(reread.job.state, JobState::Failed);
    }

    #[test]
    fn a_job_whose_collection_went_away_stores_no_final_record() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path()).unwrap());
        let jobs = Jobs::new(storage.clone());
        let s = jobs
            .spawn(
                new_job(),
                |_| false,
                |_: &JobHandle<Test>| -> Result<()> { Ok(()) },
            )
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !jobs.running().is_empty() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        // Only the first record is there (a deleted collection's range goes with it).
        let mut records = 0;
        storage
            .scan_jobs("c", "test", |id, _| {
                assert_eq!(id, s.job.id);
                records += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(records, 1);
    }
}
