//! Refuses what a web page in the operator's browser could send. With no keys
//! configured every local caller is admin, so a page that posts to
//! `http://127.0.0.1:6363` (a cross-site request), or that makes its own name
//! resolve to 127.0.0.1 (DNS rebinding), would otherwise drive the API. Three
//! checks, before any handler runs:
//! - Host: when bound to loopback, only loopback names (and `allowed_hosts`).
//! - Origin: a browser names the page's origin; only the server's own origin
//!   (and `allowed_origins`) may call.
//! - Content type: a state-changing request with a body must say
//!   `application/json`, which a page can only send after a CORS preflight
//!   that this server never grants; the "simple" types a form or a no-cors
//!   fetch sends (text/plain, urlencoded, multipart) are refused.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Where the server listens and what it accepts beyond its own names.
#[derive(Debug, Default)]
pub struct Guard {
    /// Bound to a loopback address: Host names are checked.
    loopback: bool,
    /// The port bound, when known: the server's own origins use it.
    port: Option<u16>,
    /// Extra Host values served on loopback ("name" or "name:port"), lowercase.
    allowed_hosts: Vec<String>,
    /// Extra origins allowed to call ("scheme://host[:port]"), lowercase.
    allowed_origins: Vec<String>,
}

impl Guard {
    /// `bound` is the listening address (`None` when not serving: then the
    /// server is taken to be on loopback at an unknown port).
    pub fn new(bound: Option<SocketAddr>, origins: &[String], hosts: &[String]) -> Self {
        let norm = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect()
        };
        Guard {
            loopback: bound.is_none_or(|a| a.ip().is_loopback()),
            port: bound.map(|a| a.port()),
            allowed_hosts: norm(hosts),
            allowed_origins: norm(origins),
        }
    }

    /// Refuses the request when any of the three checks fails.
    pub fn check(&self, method: &Method, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .map(str::to_ascii_lowercase);
        if let Some(host) = &host {
            self.check_host(host)?;
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            self.check_origin(origin.to_str().unwrap_or("(not text)"), host.as_deref())?;
        }
        check_content_type(method, headers)
    }

    fn check_host(&self, host: &str) -> Result<(), ApiError> {
        if !self.loopback || is_loopback_name(split_port(host).0) {
            return Ok(());
        }
        if self
            .allowed_hosts
            .iter()
            .any(|a| a == host || a == split_port(host).0)
        {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!(
                "this server listens on loopback and answers Host 127.0.0.1, localhost or [::1], not '{host}' \
                 (another name pointing here is how DNS rebinding reaches a local server); \
                 add the name to allowed_hosts in the config file to serve it"
            ),
        ))
    }

    fn check_origin(&self, origin: &str, host: Option<&str>) -> Result<(), ApiError> {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let own = authority.is_some_and(|a| {
            // The page came from this server under the name it was asked by...
            host == Some(a)
                // ...or under another of its loopback names, on its port.
                || (self.loopback && {
                    let (name, port) = split_port(a);
                    is_loopback_name(name)
                        && port.and_then(|p| p.parse().ok()).is_some_and(|p: u16| {
                            self.port.is_none_or(|own| own == p)
                        })
                })
        });
        if own || self.allowed_origins.contains(&origin) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "requests from pages at '{origin}' are refused (a page on another site must not call this API); \
                 call from a program without an Origin header, or add the origin to allowed_origins in the config file"
            ),
        ))
    }
}

/// State-changing requests carry JSON or nothing.
fn check_content_type(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if !matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return Ok(());
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    match content_type {
        Some(ct) if is_json(ct) => Ok(()),
        None if !has_body => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the body as JSON with 'Content-Type: application/json' (or no body and no \
                 Content-Type where the endpoint needs none); got {}",
                content_type.map_or("a body without a Content-Type".to_string(), |c| format!(
                    "'{c}'"
                ))
            ),
        )),
    }
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `name[:port]` split at the port, for IPv6 literals in brackets too.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let at = if authority.starts_with('[') {
        authority.find("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match at {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    }
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost"
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The middleware applying `Guard::check` to every request.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match state.guard.check(req.method(), req.headers(), req.uri()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn status(g: &Guard, method: Method, pairs: &[(&'static str, &str)]) -> u16 {
        let uri: Uri = "/collections/x/audit".parse().unwrap();
        match g.check(&method, &headers(pairs), &uri) {
            Ok(()) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn hosts_on_loopback() {
        let g = Guard::new(
            Some("127.0.0.1:6363".parse().unwrap()),
            &[],
            &["engram.lan".into()],
        );
        for host in [
            "127.0.0.1:6363",
            "localhost",
            "LOCALHOST:8000",
            "[::1]:6363",
            "127.0.0.2",
            "engram.lan:6363",
        ] {
            assert_eq!(status(&g, Method::GET, &[("host", host)]), 200, "{host}");
        }
        for host in [
            "evil.example:6363",
            "127.0.0.1.evil.example",
            "localhost.evil",
            "[::2]:6363",
        ] {
            assert_eq!(status(&g, Method::GET, &[("host", host)]), 421, "{host}");
        }
        let open = Guard::new(Some("0.0.0.0:6363".parse().unwrap()), &[], &[]);
        assert_eq!(
            status(&open, Method::GET, &[("host", "db.example:6363")]),
            200
        );
    }

    #[test]
    fn origins() {
        let g = Guard::new(
            Some("127.0.0.1:6363".parse().unwrap()),
            &["https://app.example/".into()],
            &[],
        );
        let host = ("host", "127.0.0.1:6363");
        for origin in [
            "http://127.0.0.1:6363",
            "http://localhost:6363",
            "http://[::1]:6363",
            "https://app.example",
        ] {
            assert_eq!(
                status(&g, Method::POST, &[host, ("origin", origin)]),
                200,
                "{origin}"
            );
        }
        for origin in [
            "http://evil.example",
            "null",
            "http://localhost:8080",
            "http://localhost",
            "file://",
        ] {
            assert_eq!(
                status(&g, Method::GET, &[host, ("origin", origin)]),
                403,
                "{origin}"
            );
        }
        // Same origin as the Host asked for, on a server bound beyond loopback.
        let wide = Guard::new(Some("0.0.0.0:6363".parse().unwrap()), &[], &[]);
        let pairs = [
            ("host", "db.example:6363"),
            ("origin", "https://db.example:6363"),
        ];
        assert_eq!(status(&wide, Method::GET, &pairs), 200);
        let pairs = [
            ("host", "db.example:6363"),
            ("origin", "https://evil.example"),
        ];
        assert_eq!(status(&wide, Method::GET, &pairs), 403);
    }

    #[test]
    fn content_types() {
        let g = Guard::new(None, &[], &[]);
        let json = ("content-type", "application/json; charset=utf-8");
        assert_eq!(
            status(&g, Method::POST, &[json, ("content-length", "2")]),
            200
        );
        assert_eq!(status(&g, Method::POST, &[]), 200, "no body, no type");
        assert_eq!(status(&g, Method::DELETE, &[("content-length", "0")]), 200);
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let empty = [("content-type", ct), ("content-length", "0")];
            assert_eq!(status(&g, Method::POST, &empty), 415, "{ct}");
            assert_eq!(
                status(
                    &g,
                    Method::PUT,
                    &[("content-type", ct), ("content-length", "5")]
                ),
                415
            );
        }
        assert_eq!(
            status(&g, Method::POST, &[("content-length", "5")]),
            415,
            "body, no type"
        );
        assert_eq!(
            status(&g, Method::POST, &[("transfer-encoding", "chunked")]),
            415
        );
        assert_eq!(
            status(&g, Method::GET, &[("content-type", "text/plain")]),
            200
        );
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/json+plain"));
    }
}
