//! Prometheus metrics: request counts and latency per route and status, kept
//! in a small map behind a mutex (requests are milliseconds; the lock is
//! nanoseconds), rendered in the text exposition format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use std::sync::Arc;

use super::AppState;

#[derive(Default)]
struct RouteStats {
    count: u64,
    seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String, u16), RouteStats>>,
    started: Option<Instant>,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            routes: Mutex::default(),
            started: Some(Instant::now()),
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut routes = self.routes.lock().expect("lock");
        let s = routes
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        s.count += 1;
        s.seconds += took.as_secs_f64();
    }

    /// The text exposition format, with the store's gauges appended by the caller.
    pub fn render(&self, gauges: &[(&str, &str, String, f64)]) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP engram_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE engram_http_requests_total counter\n");
        let routes = self.routes.lock().expect("lock");
        for ((m, r, s), st) in routes.iter() {
            out.push_str(&format!(
                "engram_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {}\n",
                st.count
            ));
        }
        out.push_str("# HELP engram_http_request_seconds_total Time spent serving requests.\n");
        out.push_str("# TYPE engram_http_request_seconds_total counter\n");
        for ((m, r, s), st) in routes.iter() {
            out.push_str(&format!(
                "engram_http_request_seconds_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {:.6}\n",
                st.seconds
            ));
        }
        drop(routes);
        out.push_str("# HELP engram_uptime_seconds Seconds since the server started.\n");
        out.push_str("# TYPE engram_uptime_seconds gauge\n");
        let up = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        out.push_str(&format!("engram_uptime_seconds {up:.3}\n"));
        let mut last = "";
        for (name, help, labels, value) in gauges {
            if *name != last {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
                last = name;
            }
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
        out
    }
}

/// The method label: the standard methods by name, anything else (HTTP lets
/// a client invent methods) as "OTHER", so the label set stays bounded.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .iter()
        .find(|k| **k == method.as_str())
        .copied()
        .unwrap_or("OTHER")
}

/// Middleware recording every request under its route template (not its raw
/// path, so collection names do not explode the label set; requests matching
/// no route are "unmatched") and a bounded method label.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    state
        .metrics
        .observe(method, &route, resp.status().as_u16(), started.elapsed());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        let m = Metrics::new();
        for name in ["FOO", "BAR", "BAZ"] {
            let method = Method::from_bytes(name.as_bytes()).unwrap();
            m.observe(method_label(&method), "unmatched", 405, Duration::ZERO);
        }
        m.observe(method_label(&Method::GET), "/healthz", 200, Duration::ZERO);
        assert_eq!(m.routes.lock().unwrap().len(), 2);
        let text = m.render(&[]);
        assert!(
            text.contains("method=\"OTHER\",route=\"unmatched\",status=\"405\"} 3"),
            "{text}"
        );
        assert!(!text.contains("FOO"));
    }
}
