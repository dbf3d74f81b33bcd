//! Starts the real `engram` binary on a free loopback port and talks to it
//! over real HTTP.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Where the server's log goes (`start_logged`); nowhere otherwise.
    log: Option<PathBuf>,
}

/// A status code and the JSON body of a response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The message of an error reply (`{"error": {"code", "message"}}`); panics with
    /// the body when the reply carries none, which fails the test saying why.
    pub fn error_message(&self) -> &str {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {:?}", self.body))
    }

    /// The (id, score) of a query's hits, in order; fails the test on any other reply.
    pub fn hit_scores(&self) -> Vec<(String, f64)> {
        assert_eq!(self.status, 200, "{:?}", self.body);
        self.body["hits"]
            .as_array()
            .unwrap_or_else(|| panic!("no hits in {:?}", self.body))
            .iter()
            .map(|h| {
                (
                    h["id"].as_str().unwrap().to_string(),
                    h["score"].as_f64().unwrap(),
                )
            })
            .collect()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a server on `data_dir`; `args` are extra `serve` flags.
    pub fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::start_with(data_dir, args, envs, None)
    }

    /// Like `start`, appending the server's log (the store's events at info level,
    /// the rest from warnings up) to `log`, across restarts.
    pub fn start_logged(data_dir: &Path, args: &[&str], log: &Path) -> Server {
        Self::start_with(data_dir, args, &[], Some(log))
    }

    fn start_with(
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Server {
        let mut s = Server {
            child: None,
            port: free_port(),
            data_dir: data_dir.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: log.map(Path::to_path_buf),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_engram"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--port")
            .arg(self.port.to_string())
            .args(&self.args)
            .env("RUST_LOG", "error")
            .env_remove("ENGRAM_API_KEYS")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(log) = &self.log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("open the server log");
            cmd.env("RUST_LOG", "warn,engram_store=info")
                .env("NO_COLOR", "1")
                .stderr(file);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start engram"));
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("engram serve exited early: {status}");
            }
            if ureq::get(&self.url("/healthz")).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("engram serve did not become healthy");
    }

    /// SIGKILL: no shutdown code runs, exactly like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// SIGTERM, as a service manager stops it: the server finishes its shutdown
    /// (and writes its graph dumps) before it exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let status = Command::new("kill")
                .arg(c.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {} failed", c.id());
            let exit = c.wait().expect("wait for engram");
            assert!(exit.success(), "engram exited with {exit} on SIGTERM");
        }
    }

    /// Starts the server again after `kill9` or `stop`.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>, key: Option<&str>) -> Reply {
        let mut req = ureq::request(method, &self.url(path));
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        reply(resp)
    }

    /// `call` that must succeed (any 2xx); returns the body.
    pub fn call_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Value {
        let r = self.call(method, path, body, key);
        assert!(r.status < 300, "{method} {path}: {} {:?}", r.status, r.body);
        r.body
    }

    /// Sends raw bytes as the body, for malformed-input tests.
    pub fn raw(&self, method: &str, path: &str, body: &[u8], content_type: &str) -> Reply {
        let resp = ureq::request(method, &self.url(path))
            .set("Content-Type", content_type)
            .send_bytes(body);
        reply(resp)
    }

    /// POSTs a `size`-byte JSON body the way curl does (`Expect: 100-continue`,
    /// reading the answer while still sending), since a server may refuse an
    /// oversized body before reading it and a client that only reads after
    /// sending everything would just see a broken pipe.
    pub fn post_oversized(&self, path: &str, size: usize) -> Reply {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {size}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let block = vec![b' '; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(block.len());
                if writer.write_all(&block[..n]).is_err() {
                    break; // the server stopped reading: expected
                }
                left -= n;
            }
        });
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&raw);
            let final_head = text
                .split("\r\n\r\n")
                .find(|h| h.starts_with("HTTP/1.1") && !h.starts_with("HTTP/1.1 100"));
            if final_head.is_some() && text.trim_end().ends_with('}') {
                break;
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        sender.join().unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        let response = text
            .split("HTTP/1.1 ")
            .find(|r| !r.is_empty() && !r.starts_with("100"))
            .unwrap_or_else(|| panic!("no final response in {text:?}"));
        let status: u16 = response[..3].parse().unwrap();
        let body = response.split_once("\r\n\r\n").map_or("", |b| b.1);
        Reply {
            status,
            body: serde_json::from_str(body.trim()).unwrap_or(Value::String(body.to_string())),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, None)
    }
    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(body), None)
    }
    /// [`Server::post`] again while the answer is 503 (a cluster node that has not
    /// applied the query's `min_seq` yet), for at most `within`.
    /// GET `path` again while it answers 503 (the node says "retry"), up to `within`.
    pub fn get_while_unavailable(&self, path: &str, within: Duration) -> Reply {
        let started = Instant::now();
        let mut r = self.get(path);
        while r.status == 503 && started.elapsed() < within {
            std::thread::sleep(Duration::from_millis(50));
            r = self.get(path);
        }
        r
    }
    pub fn post_while_unavailable(&self, path: &str, body: Value, within: Duration) -> Reply {
        let started = Instant::now();
        let mut r = self.post(path, body.clone());
        while r.status == 503 && started.elapsed() < within {
            r = self.post(path, body.clone());
        }
        r
    }
    pub fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(body), None)
    }
    pub fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None, None)
    }

    /// Runs the `engram` CLI against this server (`key` as its API key) and returns
    /// what it printed; it must succeed.
    pub fn cli(&self, args: &[&str], key: Option<&str>) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_engram"));
        cmd.args(args).env("ENGRAM_URL", self.url(""));
        if let Some(k) = key {
            cmd.env("ENGRAM_API_KEY", k);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "engram {args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn reply(resp: Result<ureq::Response, ureq::Error>) -> Reply {
    let r = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = r.status();
    let text = r.into_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, body }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The first `n` Quoref passages as documents `doc-0`, `doc-1`, ..., each cut to
/// its first `chars` characters (short texts keep model-backed tests quick).
pub fn quoref_docs(n: usize, chars: usize) -> Vec<Value> {
    quoref()[..n]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let text: String = p["text"].as_str().unwrap().chars().take(chars).collect();
            serde_json::json!({"id": format!("doc-{i}"), "text": text})
        })
        .collect()
}

/// The project's own Quoref extract: passages with their questions.
pub fn quoref() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/quoref_300.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (a committed file: `git checkout tests/data`)",
                path.display()
            )
        })
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A virtual environment under `~/.cache/engram/NAME` with the pinned `packages`,
/// made once (the tests' Python clients: openai, schemathesis). `ready` is a Python
/// statement that succeeds once the packages are there. Returns the venv directory.
pub fn python_venv(name: &str, packages: &[&str], ready: &str) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
    let venv = home.join(".cache/engram").join(name);
    let is_ready = Command::new(venv.join("bin/python"))
        .args(["-c", ready])
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_ready {
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("python3 runs");
            assert!(
                out.status.success(),
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(packages));
    }
    venv
}
