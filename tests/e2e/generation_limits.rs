//! Admission control, deadlines and cancellation of generations, through the real
//! binary and the real SmolLM2: a full queue is a 429 with `Retry-After` and the usual
//! error body; a client that disconnects (streamed or not) frees its slot within a
//! moment; the deadline ends a long answer with what was generated. Observed through
//! `/metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::Server;

/// A request SmolLM2 answers with thousands of tokens ("1, 2, 3, ..."), greedy.
fn long_chat(max_tokens: usize, stream: bool) -> Value {
    json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Write the numbers from 1 to 1000, one per line."}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

/// Sends a chat request on a raw connection and returns it unread: dropping it is a
/// client that goes away.
fn send_raw(server: &Server, body: &Value) -> TcpStream {
    let body = body.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

/// The value of one series of `/metrics` (e.g. `engram_generation_running`).
fn metric(server: &Server, series: &str) -> f64 {
    let text = server.get("/metrics").body;
    let text = text.as_str().expect("metrics are text");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
        .parse()
        .unwrap()
}

/// Waits until `series` equals `value`, failing after `within`.
fn wait_for(server: &Server, series: &str, value: f64, within: Duration) {
    let start = Instant::now();
    while metric(server, series) != value {
        assert!(
            start.elapsed() < within,
            "{series} stayed at {} instead of {value} for {within:?}",
            metric(server, series)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const RUNNING: &str = "engram_generation_running";
const WAITING: &str = "engram_generation_waiting";
const CANCELLED: &str = "engram_generation_requests{outcome=\"cancelled\"}";

#[test]
fn the_gate_refuses_when_full_frees_slots_on_disconnect_and_enforces_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engram.toml");
    std::fs::write(
        &config,
        "[generation]\nmax_concurrent = 1\nmax_queue = 1\ndeadline_s = 8\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap(), "--lazy-models"],
        // One candle thread: decoding collapses when two spin on a shared machine.
        &[("CANDLE_NUM_THREADS", "1")],
    );
    // Loads the model.
    let warm = server.post("/v1/chat/completions", long_chat(1, false));
    assert_eq!(warm.status, 200, "{:?}", warm.body);

    // More tokens than the server's cap: a clear 400 before any work.
    let r = server.post("/v1/chat/completions", long_chat(5000, false));
    assert_eq!(r.status, 400, "{:?}", r.body);
    let message = r.error_message();
    assert!(message.contains("[generation] max_tokens"), "{message}");

    // A non-streamed client that goes away: its generation stops and frees the slot.
    let client = send_raw(&server, &long_chat(2000, false));
    wait_for(&server, RUNNING, 1.0, Duration::from_secs(10));
    drop(client);
    wait_for(&server, RUNNING, 0.0, Duration::from_secs(3));
    assert_eq!(metric(&server, CANCELLED), 1.0);

    // A streamed one: read the first chunk, then go away.
    let mut client = send_raw(&server, &long_chat(2000, true));
    let mut first = [0u8; 512];
    let n = client.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    wait_for(&server, RUNNING, 1.0, Duration::from_secs(10));
    drop(client);
    wait_for(&server, RUNNING, 0.0, Duration::from_secs(3));
    assert_eq!(metric(&server, CANCELLED), 2.0);

    // One running, one waiting: the next is refused with Retry-After and the error body.
    let running = send_raw(&server, &long_chat(2000, false));
    wait_for(&server, RUNNING, 1.0, Duration::from_secs(10));
    let waiting = send_raw(&server, &long_chat(2000, false));
    wait_for(&server, WAITING, 1.0, Duration::from_secs(10));
    let refused = ureq::post(&server.url("/v1/chat/completions")).send_json(long_chat(10, false));
    let Err(ureq::Error::Status(429, refused)) = refused else {
        panic!("expected a 429, got {refused:?}");
    };
    let retry_after: u64 = refused.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=8).contains(&retry_after), "{retry_after}");
    let body: Value = refused.into_json().unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1 generations running and 1 waiting")
            && message.contains("raise [generation] max_queue"),
        "{message}"
    );
    // The running client leaves: the waiting one gets the slot; then it leaves too.
    drop(running);
    wait_for(&server, WAITING, 0.0, Duration::from_secs(3));
    assert_eq!(metric(&server, RUNNING), 1.0);
    drop(waiting);
    wait_for(&server, RUNNING, 0.0, Duration::from_secs(3));
    assert_eq!(metric(&server, CANCELLED), 4.0);
    assert_eq!(
        metric(&server, "engram_generation_requests{outcome=\"rejected\"}"),
        1.0
    );

    // The deadline ends a long answer: what was generated, finish reason "length" for
    // OpenAI clients and "deadline" in Engram's own account.
    let started = Instant::now();
    let r = server.post("/v1/chat/completions", long_chat(2000, false));
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["choices"][0]["finish_reason"], "length");
    assert_eq!(r.body["engram"]["finish_reason"], "deadline");
    assert!(r.body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(12),
        "{took:?}"
    );
    assert_eq!(
        metric(&server, "engram_generation_requests{outcome=\"deadline\"}"),
        1.0
    );
    assert_eq!(metric(&server, RUNNING), 0.0);
}
