//! Faults below the API: a full disk and a corrupt database on disk. A full disk
//! must leave the server answering reads and refusing writes with a 507 that says
//! what to do, and writes must work again once space returns, without a restart.
//! A database whose table files are damaged must refuse to start with a clear
//! message, never panic or answer from half its data. A damaged graph dump must be
//! set aside for a rebuild from the records, saying so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::Server;

const DIM: usize = 4;

/// A size-limited tmpfs, unmounted on drop. The test needs a real full file system
/// (RocksDB sees ENOSPC exactly as on a full disk); without permission to mount one
/// it fails loudly rather than pass without testing anything.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the disk-full test needs a size-limited file system, and `mount -t tmpfs` failed: {}; \
             run the end-to-end tests as root (or where mounting a tmpfs is allowed)",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { mount, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for block in [1 << 20, 4096, 64] {
        let zeros = vec![0u8; block];
        while f.write_all(&zeros).is_ok() {}
    }
    let _ = f.sync_all();
}

fn doc(n: usize) -> serde_json::Value {
    let text = format!("document {n} ").repeat(200);
    json!({"documents": [{"id": format!("d{n}"), "vector": [n as f32, 1.0, 0.0, 1.0], "text": text}]})
}

/// Writes `mb` MiB of zeros into `path`.
fn ballast(path: &Path, mb: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..mb {
        f.write_all(&block).unwrap();
    }
}

#[test]
fn a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers() {
    // RocksDB resumes writes only once the free space exceeds a memtable (64 MiB),
    // so the disk must be larger than that; the server starts with a ballast taking
    // most of it, so the write-ahead log cannot reserve its usual 70 MB up front
    // (then appends would land in reserved space and never see the disk full).
    let disk = SmallDisk::mount("256m");
    ballast(&disk.mount.join("ballast"), 200);
    let data = disk.mount.join("data");
    let mut server = Server::start(&data, &["--lazy-models"], &[]);
    let r = server.put("/collections/full", json!({"dimension": DIM}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    for n in 0..10 {
        let r = server.post("/collections/full/documents", doc(n));
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    let filler = disk.mount.join("filler");
    fill(&filler);
    // Writes now fail; a few may still fit into pages the log already holds.
    let mut refused = None;
    let mut n = 10;
    while refused.is_none() && n < 2_000 {
        let r = server.post("/collections/full/documents", doc(n));
        match r.status {
            200 => n += 1,
            507 => refused = Some(r.body),
            other => panic!("a write on a full disk got {other}: {:?}", r.body),
        }
    }
    let refused = refused.expect("no write was refused on a full disk");
    assert_eq!(
        refused["error"]["code"], "insufficient_storage",
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("disk") && message.contains("free"),
        "{message}"
    );
    let acked = n;

    // Reads keep working: documents, vector and keyword search, the collection.
    assert_eq!(server.get("/collections/full/documents/d3").status, 200);
    let q = server.post(
        "/collections/full/query",
        json!({"vector": [3.0, 1.0, 0.0, 1.0], "k": 1}),
    );
    assert_eq!(q.status, 200, "{:?}", q.body);
    let q = server.post(
        "/collections/full/query",
        json!({"mode": "keyword", "text": "document", "k": 3}),
    );
    assert_eq!(q.status, 200, "{:?}", q.body);
    assert_eq!(q.body["hits"].as_array().unwrap().len(), 3);
    // Still refusing while the disk is full (not a one-off).
    let r = server.post("/collections/full/documents", doc(acked));
    assert_eq!(r.status, 507, "{:?}", r.body);

    // Space returns: writes succeed again without a restart.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(disk.mount.join("ballast")).unwrap();
    let started = Instant::now();
    loop {
        let r = server.post("/collections/full/documents", doc(acked));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 507, "{:?}", r.body);
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "writes did not recover after space was freed: {:?}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "writes recovered {:.1} s after space was freed",
        started.elapsed().as_secs_f64()
    );
    let r = server.post("/collections/full/documents", doc(acked + 1));
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Nothing acknowledged was lost, across a crash too.
    server.kill9();
    server.restart();
    for n in (0..acked).chain([acked, acked + 1]) {
        let r = server.get(&format!("/collections/full/documents/d{n}"));
        assert_eq!(r.status, 200, "acknowledged d{n} lost: {:?}", r.body);
    }
}

#[test]
fn a_corrupt_table_file_stops_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--lazy-models"], &[]);
    let r = server.put("/collections/c", json!({"dimension": DIM}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    for n in 0..50 {
        assert_eq!(server.post("/collections/c/documents", doc(n)).status, 200);
    }
    // A backup flushes the records into table files, in the data directory too.
    let r = server.post("/admin/backup", json!({"path": dir.path().join("backup")}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    drop(server);

    let mut damaged = 0;
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "sst") {
            let mut bytes = std::fs::read(entry.path()).unwrap();
            let len = bytes.len();
            for b in bytes[..len - 64].iter_mut().step_by(61) {
                *b ^= 0x5a;
            }
            std::fs::write(entry.path(), bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "the backup left no table file to damage");

    let mut child = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(["serve", "--lazy-models", "--port", "0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            panic!("the server started on a damaged database");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a panic, not an error: {stderr}"
    );
    assert!(
        stderr.contains("cannot open the database")
            && stderr.contains("Corruption")
            && stderr.contains("engram restore"),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_graph_dump_is_rebuilt_from_the_records_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("engram.log"));
    let mut server = Server::start_logged(&data, &["--lazy-models"], &log);
    let r = server.put("/collections/c", json!({"dimension": DIM}));
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Spread-out vectors, so each document is the only nearest one to its own.
    let vector = |n: usize| -> Vec<f32> {
        (0..DIM)
            .map(|i| ((n * 7919 + i * 104729) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    };
    for batch in (0..200).collect::<Vec<_>>().chunks(50) {
        let docs: Vec<_> = batch
            .iter()
            .map(|n| json!({"id": format!("d{n}"), "vector": vector(*n)}))
            .collect();
        let r = server.post("/collections/c/documents", json!({"documents": docs}));
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // A clean shutdown writes the dump; the next start loads it.
    server.stop();
    let dump = data.join("graphs").join("c.graph");
    assert!(dump.is_file(), "no graph dump after a clean shutdown");
    server.start_again();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("graph loaded from its dump"), "{said}");
    server.kill9();

    let mut bytes = std::fs::read(&dump).unwrap();
    let len = bytes.len();
    for b in bytes[len / 3..len / 3 + 64].iter_mut() {
        *b ^= 0x5a;
    }
    std::fs::write(&dump, bytes).unwrap();
    let logged = std::fs::metadata(&log).unwrap().len();
    server.start_again();
    let said =
        String::from_utf8_lossy(&std::fs::read(&log).unwrap()[logged as usize..]).into_owned();
    assert!(
        said.contains("graph dump not used (corrupt: checksum mismatch); rebuilding the graph from the records"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    // Every document is found through the rebuilt graph.
    for n in 0..200 {
        let q = server.post(
            "/collections/c/query",
            json!({"vector": vector(n), "k": 1, "ef": 100}),
        );
        assert_eq!(q.body["hits"][0]["id"], format!("d{n}"), "{:?}", q.body);
    }
}
