//! An acknowledged write survives `kill -9`: stream inserts, kill the server at
//! a random moment, restart, and find every acknowledged document, by its
//! vector and by its text (the keyword index). Both durability modes: `sync`
//! fsyncs the WAL before acknowledging; `fast` acknowledges once the WAL write is
//! in the operating system's hands, which a killed process cannot lose (only an
//! OS crash or power cut can take its last writes), so both must keep every one.
//!
//! The restarts go both ways to the graph: loaded from its dump and brought up to
//! date from the write log (the dump is written in the background after a start-up
//! that rebuilt), and, every fourth round, rebuilt from RocksDB because the dump was
//! removed. The server's log says which; the test checks both happened.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::support::Server;

const DIM: usize = 16;

fn vector_for(n: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
    (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    kill_9_rounds("sync", 20);
}

#[test]
fn acknowledged_fast_writes_survive_kill_9() {
    kill_9_rounds("fast", 10);
}

/// Checks that acknowledged document `n` is readable, found by its vector, and by
/// its text through the keyword index written in the same batch.
fn assert_complete(server: &Server, n: u64, round: usize) {
    let q = server.post(
        "/collections/crash/query",
        json!({"vector": vector_for(n), "k": 1, "ef": 200}),
    );
    assert_eq!(q.body["hits"][0]["id"], format!("d{n}"), "round {round}");
    let q = server.post(
        "/collections/crash/query",
        json!({"mode": "keyword", "text": format!("token{n}"), "k": 1}),
    );
    assert_eq!(
        q.body["hits"][0]["id"],
        format!("d{n}"),
        "round {round}: keyword"
    );
}

/// The part of the server's log written since `from` (its length then).
fn log_since(log: &Path, from: u64) -> String {
    let bytes = std::fs::read(log).unwrap();
    String::from_utf8_lossy(&bytes[from as usize..]).into_owned()
}

fn kill_9_rounds(durability: &str, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("engram.log"));
    let dump = data.join("graphs").join("crash.graph");
    let mut server = Server::start_logged(&data, &["--lazy-models"], &log);
    let (mut from_dump, mut rebuilt) = (0, 0);
    let r = server.put(
        "/collections/crash",
        json!({"dimension": DIM, "durability": durability}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);

    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut acked_total: Vec<u64> = Vec::new();
    let mut next = 0u64;
    for round in 0..rounds {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let url = server.url("/collections/crash/documents");
                let (acked, stop) = (acked.clone(), stop.clone());
                let start = next + w * 1_000_000;
                std::thread::spawn(move || {
                    let mut n = start;
                    while !stop.load(Ordering::Relaxed) {
                        let doc = json!({"documents": [{"id": format!("d{n}"), "vector": vector_for(n), "text": format!("token{n} shared words"), "metadata": {"n": n}}]});
                        match ureq::post(&url).timeout(Duration::from_secs(60)).send_json(doc) {
                            Ok(_) => acked.lock().unwrap().push(n),
                            // A live server refusing a valid write is a bug, not a crash.
                            Err(ureq::Error::Status(code, r)) => {
                                panic!("d{n} refused with {code}: {:?}", r.into_string())
                            }
                            // The server died mid-request: not acknowledged.
                            Err(ureq::Error::Transport(_)) => break,
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        // Kill at a random moment after the first acknowledgement: on a loaded
        // machine a fixed delay can elapse before any write has landed, and a
        // round with nothing acknowledged tests nothing.
        let waited = std::time::Instant::now();
        while acked.lock().unwrap().is_empty() && waited.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..450)));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        next += 10_000_000;
        let acked = acked.lock().unwrap().clone();
        assert!(
            !acked.is_empty(),
            "round {round}: no write was acknowledged"
        );
        let fresh = acked.len();
        acked_total.extend(acked);

        let removed = round % 4 == 2 && dump.exists();
        if removed {
            std::fs::remove_file(&dump).unwrap();
        }
        let logged = std::fs::metadata(&log).unwrap().len();
        server.restart();
        let said = log_since(&log, logged);
        if said.contains("graph loaded from its dump") {
            assert!(!removed, "round {round}: loaded a removed dump: {said}");
            from_dump += 1;
        } else {
            assert!(
                said.contains("rebuilding the graph from the records"),
                "round {round}: the log says neither: {said}"
            );
            rebuilt += 1;
        }
        let info = server.get("/collections/crash");
        assert!(
            info.body["documents"].as_u64().unwrap() >= acked_total.len() as u64,
            "round {round}: {} documents after restart, {} acknowledged",
            info.body["documents"],
            acked_total.len()
        );
        // Every document acknowledged in any round so far is readable ...
        for n in &acked_total {
            let r = server.get(&format!("/collections/crash/documents/d{n}"));
            assert_eq!(r.status, 200, "round {round}: acknowledged d{n} lost");
            assert_eq!(r.body["metadata"]["n"], *n, "round {round}: d{n} torn");
        }
        // ... and this round's are searchable by vector and by text.
        for n in &acked_total[acked_total.len() - fresh..] {
            assert_complete(&server, *n, round);
        }
    }
    // Last, the whole set once more through both indexes.
    for n in &acked_total {
        assert_complete(&server, *n, rounds);
    }
    assert!(
        from_dump > 0 && rebuilt > 0,
        "{from_dump} restarts loaded the dump, {rebuilt} rebuilt: both must happen"
    );
    eprintln!(
        "{} acknowledged writes ({durability}) survived {rounds} kill -9 rounds ({from_dump} restarts from the graph dump, {rebuilt} rebuilt)",
        acked_total.len()
    );
}
