//! What the cluster benches (`cluster`, `cluster_model`) share: `engram serve`
//! processes on free ports, their synthetic documents, loading, and concurrent
//! clients. One copy, so that both benches drive the nodes the same way.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use engram_cluster::local::NatsCluster;
use serde_json::{json, Value};

/// Dimension of the benches' vectors.
pub const DIM: usize = 16;

/// An `engram serve` process on a free port (killed when dropped).
pub struct Engram {
    child: Option<Child>,
    pub port: u16,
}

impl Engram {
    /// Starts `bin serve` on `dir` with `extra` arguments and waits until it is healthy.
    pub fn start(bin: &Path, dir: &Path, extra: &[String]) -> Result<Engram> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(bin)
            .args([
                "serve",
                "--lazy-models",
                "--port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            // Quiet unless asked (`ENGRAM_BENCH_LOG=info` shows the nodes' logs).
            .env(
                "RUST_LOG",
                std::env::var("ENGRAM_BENCH_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .context("start engram")?;
        let e = Engram {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while ureq::get(&e.url("/healthz")).call().is_err() {
            if Instant::now() > deadline {
                bail!("engram did not become healthy");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(e)
    }

    /// The process id while it runs (the CPU accounting reads `/proc/PID/stat`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One JSON request; a non-2xx answer is an error carrying the server's message.
    pub fn call(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        match ureq::request(method, &self.url(path)).send_json(body) {
            Ok(r) => Ok(r.into_json()?),
            // The server's error message says why.
            Err(ureq::Error::Status(code, r)) => {
                bail!("{path}: {code}: {}", r.into_string().unwrap_or_default())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// SIGKILL, by the child's pid.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

impl Drop for Engram {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Node `i` (id i + 1) of a cluster on `nats`, its data in `dir`.
pub fn cluster_node(bin: &Path, nats: &NatsCluster, dir: &Path, i: usize) -> Result<Engram> {
    let id = (i + 1).to_string();
    let extra = ["--cluster".to_string(), nats.urls(), "--node-id".into(), id];
    Engram::start(bin, dir, &extra)
}

/// Document `n`: a deterministic 16-d vector and a short text, as a write body.
/// The components are splitmix64 hashes of (n, i) in [-0.5, 0.5): every document
/// differs. (An earlier `(n * 31 + i) % 97` made only 97 distinct vectors, and
/// among 3,000 documents, about 31 copies each, the graph walk often found fewer
/// than 10 hits.)
pub fn doc(n: u64) -> Value {
    let v: Vec<f32> = (0..DIM as u64)
        .map(|i| (splitmix64(n.wrapping_mul(DIM as u64).wrapping_add(i)) >> 40) as f32)
        .map(|x| x / (1u64 << 24) as f32 - 0.5)
        .collect();
    json!({"documents": [{"id": format!("d{n}"), "vector": v, "text": format!("token{n} words")}]})
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `p` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Writes documents 0..`count` into collection `name` through `node`, 100 a
/// request (one message per shard each); the last write's sequence.
pub fn load(node: &Engram, name: &str, count: u64) -> Result<u64> {
    let mut last = 0;
    for first in (0..count).step_by(100) {
        let docs: Vec<Value> = (first..(first + 100).min(count))
            .map(|n| doc(n)["documents"][0].clone())
            .collect();
        let r = node.call(
            "POST",
            &format!("/collections/{name}/documents"),
            json!({ "documents": docs }),
        )?;
        last = r["seq"].as_u64().context("seq")?;
    }
    Ok(last)
}

/// Runs `total` calls of `one(node, n)` from `clients` threads, thread t on node
/// t modulo the node count; returns calls per second.
pub fn throughput(
    nodes: &[&Engram],
    clients: usize,
    total: u64,
    one: impl Fn(&Engram, u64) -> Result<()> + Sync,
) -> Result<f64> {
    let started = Instant::now();
    std::thread::scope(|s| {
        let running: Vec<_> = (0..clients)
            .map(|t| {
                let one = &one;
                let node = nodes[t % nodes.len()];
                s.spawn(move || {
                    (t as u64..total)
                        .step_by(clients)
                        .try_for_each(|n| one(node, n))
                })
            })
            .collect();
        running
            .into_iter()
            .try_for_each(|r| r.join().expect("client thread"))
    })?;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Waits until `node` has applied `last` (polling its `GET /cluster`); the seconds
/// since `started`.
pub fn until_applied(node: &Engram, last: u64, started: Instant) -> Result<f64> {
    loop {
        let status = node.call("GET", "/cluster", Value::Null);
        let applied = status
            .ok()
            .and_then(|s| s["applied_seq"].as_u64())
            .unwrap_or(0);
        if applied >= last {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the node did not catch up (applied {applied} of {last})");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until every node has applied the creation of `name` (a write to a node
/// that has not is a 404).
pub fn wait_created(nodes: &[&Engram], name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in nodes {
        while ureq::get(&node.url(&format!("/collections/{name}")))
            .call()
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("collection {name} did not reach {}", node.url(""));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_differ_and_stay_in_range() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..3000 {
            let v = doc(n)["documents"][0]["vector"].clone();
            let xs: Vec<f64> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(xs.len(), DIM);
            assert!(xs.iter().all(|x| (-0.5..0.5).contains(x)), "{xs:?}");
            assert!(
                seen.insert(format!("{xs:?}")),
                "document {n} repeats a vector"
            );
        }
    }
}
