//! Mixed load on a running server over loopback: hybrid queries, single-document
//! inserts and rag answers at increasing concurrency, each level for a fixed time.
//! Prints, per level and operation, the count, p50 / p99 latency, refusals (429 from the
//! generation gate) and errors, and the server's RSS (from /proc) over time: what shows
//! whether admission control keeps queries fast while generation is saturated.
//! Driven by `run_load.sh`, which starts the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:6398")]
    url: String,
    /// JSONL of passages with "text" and "questions" (Quoref).
    #[arg(long, default_value = "tests/data/quoref_300.jsonl")]
    data: String,
    /// The server's process id, for its RSS.
    #[arg(long)]
    pid: u32,
    /// Levels: query threads at each; insert threads are a third of them (at least 1)
    /// and answer threads are `--answers-per-query` times them.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    levels: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    answers_per_query: usize,
    /// Seconds per level (plus, first, the highest level without answers, for reference).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// max_tokens of each answer.
    #[arg(long, default_value_t = 64)]
    answer_tokens: usize,
    /// The shape of the measured baseline instead of the levels: one level
    /// of 6 hybrid-query threads and 2 threads inserting short single documents (a
    /// passage's first 12 words), no answers; run it for 40 s to compare.
    #[arg(long)]
    baseline: bool,
}

/// The first `n` words of a text: a short document, as the baseline inserted.
fn first_words(text: &str, n: usize) -> String {
    text.split_whitespace()
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    Query,
    Insert,
    Answer,
}

/// One request's latency and how it ended: 200, refused by the gate (429), or other.
struct Sample {
    op: Op,
    ms: f64,
    status: u16,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let passages: Vec<Value> = std::fs::read_to_string(&args.data)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let texts: Arc<Vec<String>> = Arc::new(
        passages
            .iter()
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect(),
    );
    let questions: Arc<Vec<String>> = Arc::new(
        passages
            .iter()
            .flat_map(|p| p["questions"].as_array().cloned().unwrap_or_default())
            .filter_map(|q| q["question"].as_str().map(str::to_string))
            .collect(),
    );
    let agent = ureq::agent();
    let url = |p: &str| format!("{}{p}", args.url);
    agent.put(&url("/collections/load")).send_json(json!({}))?;
    for (i, chunk) in texts.chunks(50).enumerate() {
        let docs: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, t)| json!({"id": format!("base-{}", i * 50 + j), "text": t}))
            .collect();
        agent
            .post(&url("/collections/load/documents"))
            .send_json(json!({ "documents": docs }))?;
    }
    eprintln!(
        "loaded {} passages, {} questions",
        texts.len(),
        questions.len()
    );

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    let started = Instant::now();
    let rss_log: Arc<Mutex<Vec<(f64, String, f64)>>> = Arc::default();
    println!(
        "{:<10}{:<8}{:>8}{:>10}{:>10}{:>8}{:>8}{:>10}{:>10}",
        "level", "op", "count", "p50 ms", "p99 ms", "busy", "errors", "RSS0 MB", "RSSmax MB"
    );
    // (query, insert, answer) threads per level. The reference: the highest query
    // concurrency with no answers.
    let top = args.levels.iter().copied().max().unwrap_or(1);
    let mut levels = vec![(top, (top / 3).max(1), 0)];
    levels.extend(
        args.levels
            .iter()
            .map(|&q| (q, (q / 3).max(1), q * args.answers_per_query)),
    );
    if args.baseline {
        levels = vec![(6, 2, 0)];
    }
    let short = args.baseline;
    for (queries, inserts, answers) in levels {
        let name = format!("{queries}q{inserts}i{answers}a");
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let mut threads = Vec::new();
        let spawn = |op: Op, n: usize, threads: &mut Vec<std::thread::JoinHandle<()>>| {
            for t in 0..n {
                let (stop, samples) = (stop.clone(), samples.clone());
                let (texts, questions) = (texts.clone(), questions.clone());
                let (base, tokens, level) = (args.url.clone(), args.answer_tokens, name.clone());
                let seconds = args.seconds;
                threads.push(std::thread::spawn(move || {
                    // An answer still running when its level ends is given up (the
                    // client disconnects, so the server cancels it): levels stay bounded.
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(seconds))
                        .build();
                    let mut i = t * 7919;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let (path, body) = match op {
                            Op::Query => (
                                "/collections/load/query",
                                json!({"text": questions[i % questions.len()], "mode": "hybrid", "k": 10}),
                            ),
                            Op::Insert => {
                                let text = &texts[i % texts.len()];
                                let text = if short { first_words(text, 12) } else { text.clone() };
                                (
                                    "/collections/load/documents",
                                    json!({"documents": [{"id": format!("{level}-{t}-{i}"), "text": text}]}),
                                )
                            }
                            Op::Answer => (
                                "/collections/load/answer",
                                json!({"question": questions[i % questions.len()], "mode": "rag", "max_tokens": tokens}),
                            ),
                        };
                        let sent = Instant::now();
                        let status = match agent.post(&format!("{base}{path}")).send_json(body) {
                            Ok(r) => r.status(),
                            Err(ureq::Error::Status(code, _)) => code,
                            Err(_) => 0,
                        };
                        let ms = sent.elapsed().as_secs_f64() * 1e3;
                        samples.lock().unwrap().push(Sample { op, ms, status });
                        if status == 429 {
                            // What a well-behaved client does with Retry-After, shortened.
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }));
            }
        };
        spawn(Op::Query, queries, &mut threads);
        spawn(Op::Insert, inserts, &mut threads);
        spawn(Op::Answer, answers, &mut threads);
        let level_start = Instant::now();
        let mut rss = Vec::new();
        while level_start.elapsed() < Duration::from_secs(args.seconds) {
            let mb = rss_mb(args.pid);
            rss.push(mb);
            rss_log
                .lock()
                .unwrap()
                .push((started.elapsed().as_secs_f64(), name.clone(), mb));
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().ok();
        }
        let samples = samples.lock().unwrap();
        let rss_max = rss.iter().cloned().fold(0.0, f64::max);
        for op in [Op::Query, Op::Insert, Op::Answer] {
            let mut ok: Vec<f64> = samples
                .iter()
                .filter(|s| s.op == op && s.status == 200)
                .map(|s| s.ms)
                .collect();
            let busy = samples
                .iter()
                .filter(|s| s.op == op && s.status == 429)
                .count();
            let mut errors: Vec<u16> = samples
                .iter()
                .filter(|s| s.op == op && s.status != 200 && s.status != 429)
                .map(|s| s.status)
                .collect();
            errors.sort();
            if ok.is_empty() && busy == 0 && errors.is_empty() {
                continue;
            }
            ok.sort_by(f64::total_cmp);
            println!(
                "{:<10}{:<8}{:>8}{:>10.1}{:>10.1}{:>8}{:>8}{:>10.0}{:>10.0}",
                name,
                format!("{op:?}").to_lowercase(),
                ok.len(),
                percentile(&ok, 0.5),
                percentile(&ok, 0.99),
                busy,
                errors.len(),
                rss.first().copied().unwrap_or(0.0),
                rss_max
            );
            if !errors.is_empty() {
                // 0: no response within the level's time (a given-up answer).
                println!("{:<10}  statuses of the errors: {errors:?}", "");
            }
        }
        // Let the cancelled generations of this level leave before the next one.
        let drained = Instant::now();
        while drained.elapsed() < Duration::from_secs(30) && generating(&agent, &args.url) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!("\nRSS over time (s, level, MB), every 5 s:");
    for (t, level, mb) in rss_log.lock().unwrap().iter().step_by(10) {
        println!("{t:>7.1}  {level:<10} {mb:>7.0}");
    }
    Ok(())
}

/// Whether the server still runs or queues generations (its /metrics).
fn generating(agent: &ureq::Agent, url: &str) -> bool {
    let Some(text) = agent
        .get(&format!("{url}/metrics"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
    else {
        return false;
    };
    text.lines()
        .filter(|l| {
            l.starts_with("engram_generation_running ")
                || l.starts_with("engram_generation_waiting ")
        })
        .any(|l| !l.ends_with(" 0"))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The resident set of process `pid` in MB (0 if it cannot be read).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
