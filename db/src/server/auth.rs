//! API keys and scopes. `read` queries, `write` also inserts and deletes and
//! sees raw vectors, `admin` also manages collections and backups. With no keys
//! configured every caller is admin, and the server only binds to loopback.
//! Presented keys are compared with every configured key in constant time, so
//! response timing says nothing about how much of a guess was right.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::scores::ScoreView;
use super::AppState;

/// The shortest key accepted, from the environment and the config file alike.
pub const MIN_KEY_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope '{other}': use read, write or admin")),
        }
    }
}

/// An API key as configured: the secret, the one scope it grants (scopes
/// are ordered, so `admin` includes `write` includes `read`), and how exact
/// the scores it sees are (see `ScoreView`; exact unless configured).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub key: String,
    pub scope: Scope,
    #[serde(default)]
    pub scores: ScoreView,
}

/// Parses `KEY:SCOPE[:SCORES],...` (the `ENGRAM_API_KEYS` form), e.g.
/// `reader-123:read:rounded,admin-4567:admin`.
pub fn parse_keys(spec: &str) -> Result<Vec<ApiKey>, String> {
    let keys = spec
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let item = item.trim();
            let malformed =
                || format!("API key entry '{item}' must be KEY:SCOPE or KEY:SCOPE:SCORES");
            let (rest, last) = item.rsplit_once(':').ok_or_else(malformed)?;
            let (key, scope, scores) = match last.parse::<ScoreView>() {
                Ok(scores) => {
                    let (key, scope) = rest.rsplit_once(':').ok_or_else(malformed)?;
                    (key, scope, scores)
                }
                Err(_) => (rest, last, ScoreView::default()),
            };
            Ok(ApiKey {
                key: key.to_string(),
                scope: scope.parse()?,
                scores,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    validate_keys(&keys)?;
    Ok(keys)
}

/// The rules every configured key follows, wherever it was configured: at
/// least `MIN_KEY_LEN` characters, no surrounding whitespace (presented keys
/// are trimmed), and no key configured twice.
pub fn validate_keys(keys: &[ApiKey]) -> Result<(), String> {
    for (i, k) in keys.iter().enumerate() {
        if k.key.chars().count() < MIN_KEY_LEN {
            return Err(format!(
                "API keys must be at least {MIN_KEY_LEN} characters"
            ));
        }
        if k.key.trim() != k.key || k.key.contains(',') {
            return Err("API keys must not contain commas or start or end with whitespace".into());
        }
        if keys[..i].iter().any(|o| o.key == k.key) {
            return Err("an API key is configured twice; give each key one entry".into());
        }
    }
    Ok(())
}

/// Whether `presented` equals `secret`, in time that depends only on the
/// length of `presented` (never on where the first difference is, nor on the
/// secret's length). `secret` is never empty (`validate_keys`).
fn constant_time_eq(presented: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != secret.len());
    for (i, p) in presented.iter().enumerate() {
        diff |= p ^ secret[i % secret.len()];
    }
    // Keep the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// What a configured key grants.
#[derive(Debug, Clone, Copy)]
struct Grant {
    scope: Scope,
    scores: ScoreView,
}

/// The configured keys, looked up by the presented secret.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<(Vec<u8>, Grant)>,
}

impl KeyRing {
    pub fn new(keys: &[ApiKey]) -> Self {
        KeyRing {
            keys: keys
                .iter()
                .map(|k| {
                    let grant = Grant {
                        scope: k.scope,
                        scores: k.scores,
                    };
                    (k.key.as_bytes().to_vec(), grant)
                })
                .collect(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// Compares with every key (no early exit), so the time taken does not
    /// say which key, if any, matched.
    fn grant_of(&self, key: &str) -> Option<Grant> {
        let mut found = None;
        for (secret, grant) in &self.keys {
            if constant_time_eq(key.as_bytes(), secret) {
                found = Some(*grant);
            }
        }
        found
    }

    /// The caller presenting `headers`: admin when no keys are configured, else
    /// the grant of the key in `Authorization: Bearer`, `api-key` or `x-api-key`.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller {
                scope: Scope::Admin,
                scores: ScoreView::Exact,
            });
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let presented = header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| header("api-key"))
            .or_else(|| header("x-api-key"));
        let Some(key) = presented else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing API key: send 'Authorization: Bearer <key>' or 'api-key: <key>'",
            ));
        };
        match self.grant_of(key.trim()) {
            Some(g) => Ok(Caller {
                scope: g.scope,
                scores: g.scores,
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown API key",
            )),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub scope: Scope,
    /// How exact the scores this caller sees are.
    pub scores: ScoreView,
}

impl Caller {
    /// Refuses the request unless the caller holds `needed` (or a higher scope).
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.scope >= needed {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this API key has the '{:?}' scope; this request needs '{:?}'",
                    self.scope, needed
                )
                .to_lowercase(),
            ))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        state.keys.caller(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs() {
        let keys = parse_keys("reader-123:read, admin-4567:admin").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].scope, Scope::Admin);
        assert!(parse_keys("short:read").is_err());
        assert!(parse_keys("longenough:root").is_err());
        assert!(parse_keys("nocolonatall").is_err());
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        assert_eq!(keys[0].scores, ScoreView::Exact);
        let keys = parse_keys("reader:123:read:rounded,other-key:write:none").unwrap();
        assert_eq!(keys[0].key, "reader:123");
        assert_eq!(keys[0].scores, ScoreView::Rounded);
        assert_eq!(keys[1].scores, ScoreView::None);
        assert!(parse_keys("same-key-1:read,same-key-1:admin").is_err());
        assert!(parse_keys("longenough:read:fuzzy").is_err());
    }

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"secret-key", b"secret-key"));
        assert!(!constant_time_eq(b"secret-kez", b"secret-key"));
        assert!(!constant_time_eq(b"secret-key-and-more", b"secret-key"));
        assert!(!constant_time_eq(b"secret", b"secret-key"));
        assert!(!constant_time_eq(b"", b"secret-key"));
        // A prefix repeated to the secret's length does not pass as the secret.
        assert!(!constant_time_eq(b"abcdabcd", b"abcd"));
        let ring = KeyRing::new(&parse_keys("reader-123:read:none,admin-4567:admin").unwrap());
        let mut headers = HeaderMap::new();
        headers.insert("api-key", "admin-4567".parse().unwrap());
        assert_eq!(ring.caller(&headers).unwrap().scope, Scope::Admin);
        headers.insert("api-key", "reader-123".parse().unwrap());
        let reader = ring.caller(&headers).unwrap();
        assert_eq!(
            (reader.scope, reader.scores),
            (Scope::Read, ScoreView::None)
        );
        headers.insert("api-key", "reader-12".parse().unwrap());
        assert_eq!(
            ring.caller(&headers).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }
}
