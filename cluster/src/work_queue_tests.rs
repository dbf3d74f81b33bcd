//! The work queue against real `nats-server`s (three: a lone clustered server never
//! elects a JetStream leader): one worker runs a job, and when its
//! worker stops (no more progress) the job goes to another; statuses read from the
//! bucket. The runners are stand-ins that run until told to finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

use super::*;
use crate::local::NatsCluster;

/// A runner that records its starts and reports "running" until `finish`.
struct Fake {
    node: u32,
    starts: Arc<Mutex<Vec<(u32, String)>>>,
    finish: Arc<AtomicBool>,
    cancelled: Arc<AtomicBool>,
}

impl JobRunner for Fake {
    fn start(&self, job: &QueuedJob) -> std::result::Result<(), String> {
        self.starts
            .lock()
            .unwrap()
            .push((self.node, job.id.clone()));
        Ok(())
    }

    fn status(&self, job: &QueuedJob) -> Option<Value> {
        let ran_here = self
            .starts
            .lock()
            .unwrap()
            .iter()
            .any(|(n, _)| *n == self.node);
        let state = if self.cancelled.load(Ordering::SeqCst) {
            "cancelled"
        } else if self.finish.load(Ordering::SeqCst) && job.id == "abc123" {
            "done"
        } else {
            "running"
        };
        ran_here.then(
            || json!({"id": job.id, "collection": job.collection, "state": state, "stage": "work"}),
        )
    }

    fn cancel(&self, _: &QueuedJob) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

/// A JetStream context on `nats` once its JetStream answers (a new server elects
/// its meta leader first).
fn jetstream(nats: &NatsCluster, rt: &tokio::runtime::Runtime) -> Context {
    let urls: Vec<async_nats::ServerAddr> =
        nats.urls().split(',').map(|u| u.parse().unwrap()).collect();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(urls).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = || {
            js.create_key_value(kv::Config {
                bucket: "ready".into(),
                ..Default::default()
            })
        };
        while let Err(e) = probe().await {
            assert!(Instant::now() < deadline, "JetStream never answered: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        js
    })
}

/// Three NATS servers, a runtime, and a JetStream context once it answers.
pub(crate) fn setup() -> (NatsCluster, tokio::runtime::Runtime, Context) {
    let nats = NatsCluster::start(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let js = jetstream(&nats, &rt);
    (nats, rt, js)
}

/// Polls `done` until it holds, for at most `secs`.
pub(crate) fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_job_runs_on_one_worker_and_moves_to_another_when_its_worker_stops() {
    let (_nats, rt, js) = setup();
    let queue = |node| Queue {
        ack_wait: Duration::from_secs(2),
        progress_every: Duration::from_millis(300),
        ..Queue::new(js.clone(), 1, node)
    };
    let starts = Arc::new(Mutex::new(Vec::new()));
    let finish = Arc::new(AtomicBool::new(false));
    let cancelled = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = [1, 2]
        .map(|node| {
            let runner = Arc::new(Fake {
                node,
                starts: starts.clone(),
                finish: finish.clone(),
                cancelled: cancelled.clone(),
            });
            rt.spawn(queue(node).work(runner))
        })
        .into_iter()
        .collect();
    let job = QueuedJob {
        kind: "promotion".into(),
        collection: "docs".into(),
        id: "abc123".into(),
        request: json!({"steps": 2}),
    };
    let first =
        json!({"id": "abc123", "collection": "docs", "state": "running", "stage": "queued"});
    rt.block_on(queue(3).enqueue(&job, first.clone())).unwrap();
    // Queued twice (a retried request): still one job.
    rt.block_on(queue(3).enqueue(&job, first)).unwrap();

    until("the job starts", 20, || !starts.lock().unwrap().is_empty());
    // Several progress periods and more than the ack wait: nobody else runs it.
    std::thread::sleep(Duration::from_secs(3));
    let ran: Vec<(u32, String)> = starts.lock().unwrap().clone();
    assert_eq!(ran.len(), 1, "{ran:?}");
    let worker = ran[0].0;
    let view_of = |q: &Queue, id: &str| {
        let records = rt.block_on(q.list("promotion", "docs")).unwrap();
        let views: Vec<Value> = records.iter().map(|r| r.view(now_ms())).collect();
        views.into_iter().find(|v| v["id"] == id).expect("listed")
    };
    let view = |q: &Queue| view_of(q, "abc123");
    let status = view(&queue(3));
    assert_eq!(status["node"], worker);
    assert_eq!(status["delivery"], 1);
    assert_eq!(status["stage"], "work");
    assert!(rt
        .block_on(queue(3).list("promotion", "other"))
        .unwrap()
        .is_empty());

    // Its worker stops (as when its node dies): the job moves to the other.
    workers[worker as usize - 1].abort();
    until("the job is delivered again", 20, || {
        starts.lock().unwrap().len() == 2
    });
    let second = starts.lock().unwrap()[1].0;
    assert_ne!(second, worker);
    until("the new worker reports", 10, || {
        view(&queue(3))["node"] == second
    });
    finish.store(true, Ordering::SeqCst);
    until("the job is done", 10, || view(&queue(3))["state"] == "done");
    let status = view(&queue(3));
    assert_eq!(status["delivery"], 2);
    let runs: Vec<u64> = status["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_u64().unwrap())
        .collect();
    assert_eq!(runs, vec![u64::from(worker), u64::from(second)]);
    // Acknowledged: gone from the work queue, never run again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(starts.lock().unwrap().len(), 2);
    let left = rt.block_on(async {
        let mut s = js.get_stream(JOBS_STREAM).await.unwrap();
        s.info().await.unwrap().state.messages
    });
    assert_eq!(left, 0);

    // A cancel asked through the bucket reaches the node running the job.
    let other = QueuedJob {
        id: "def456".into(),
        ..job.clone()
    };
    let queued =
        json!({"id": "def456", "collection": "docs", "state": "running", "stage": "queued"});
    rt.block_on(queue(1).enqueue(&other, queued)).unwrap();
    until("the second job starts", 20, || {
        starts.lock().unwrap().len() == 3
    });
    assert_eq!(view_of(&queue(3), "def456")["state"], "running");
    rt.block_on(queue(3).request_cancel("promotion", "docs", "def456"))
        .unwrap();
    until("the second job is cancelled", 10, || {
        view_of(&queue(3), "def456")["state"] == "cancelled"
    });
    for w in workers {
        w.abort();
    }
}

#[test]
fn a_deleted_collections_jobs_are_forgotten_dropped_when_delivered_and_stopped_when_running() {
    let (_nats, rt, js) = setup();
    let queue = |node| Queue {
        ack_wait: Duration::from_secs(2),
        progress_every: Duration::from_millis(300),
        ..Queue::new(js.clone(), 1, node)
    };
    let job = |collection: &str, id: &str| {
        let job = QueuedJob {
            kind: "audit".into(),
            collection: collection.into(),
            id: id.into(),
            request: json!({}),
        };
        let first =
            json!({"id": id, "collection": collection, "state": "running", "stage": "queued"});
        rt.block_on(queue(3).enqueue(&job, first)).unwrap();
    };
    let listed = |collection: &str| rt.block_on(queue(3).list("audit", collection)).unwrap();
    // Queued while no node pulls: one of the collection that goes, one that stays.
    job("gone", "zzz111");
    job("kept", "abc123");
    rt.block_on(queue(3).request_cancel("audit", "gone", "zzz111"))
        .unwrap();
    let removed = rt.block_on(queue(3).forget_collection("gone")).unwrap();
    assert_eq!(removed, 2, "the record and its cancel request");
    assert!(listed("gone").is_empty());
    assert_eq!(listed("kept").len(), 1);

    // The deleted collection's job, first in the stream, is dropped unrun.
    let starts = Arc::new(Mutex::new(Vec::new()));
    let cancelled = Arc::new(AtomicBool::new(false));
    let runner = Arc::new(Fake {
        node: 1,
        starts: starts.clone(),
        finish: Arc::new(AtomicBool::new(false)),
        cancelled: cancelled.clone(),
    });
    let worker = rt.spawn(queue(1).work(runner));
    until("the kept job starts", 20, || {
        !starts.lock().unwrap().is_empty()
    });
    assert_eq!(*starts.lock().unwrap(), vec![(1, "abc123".to_string())]);

    // Its collection deleted while it runs: the job is stopped, and its record is
    // not written back.
    rt.block_on(queue(3).forget_collection("kept")).unwrap();
    until("the running job is cancelled", 10, || {
        cancelled.load(Ordering::SeqCst)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(listed("kept").is_empty(), "{:?}", listed("kept"));
    // Nothing left on the queue, nothing ran twice.
    until("the queue is empty", 10, || {
        rt.block_on(async {
            let mut s = js.get_stream(JOBS_STREAM).await.unwrap();
            s.info().await.unwrap().state.messages
        }) == 0
    });
    assert_eq!(starts.lock().unwrap().len(), 1);
    worker.abort();
}

#[test]
fn running_jobs_whose_node_went_quiet_read_interrupted() {
    let record = Record {
        status: json!({"id": "a", "state": "running", "stage": "training"}),
        runs: vec![Run {
            node: 2,
            delivery: 1,
            started_ms: 1_000,
        }],
        updated_ms: 10_000,
    };
    let fresh = record.view(10_000 + 1_000);
    assert_eq!(fresh["state"], "running");
    assert_eq!(
        (fresh["node"].clone(), fresh["delivery"].clone()),
        (json!(2), json!(1))
    );
    let stale = record.view(10_000 + STALE_AFTER.as_millis() as u64 + 1);
    assert_eq!(stale["state"], "interrupted");
    assert!(
        stale["error"].as_str().unwrap().contains("node 2"),
        "{stale}"
    );
    // A queued job (no run yet) waits for a node, however long: not interrupted.
    let queued = Record {
        runs: Vec::new(),
        ..record.clone()
    };
    assert_eq!(queued.view(u64::MAX)["state"], "running");
    // A finished job stays finished.
    let done = Record {
        status: json!({"id": "a", "state": "done"}),
        ..record
    };
    assert_eq!(done.view(u64::MAX)["state"], "done");
}
