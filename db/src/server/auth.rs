//! API keys and scopes. `read` queries, `write` also inserts and deletes and
//! sees raw vectors, `admin` also manages collections and backups. With no keys
//! configured every caller is admin, and the server only binds to loopback.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::AppState;

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

/// An API key as configured: the secret and the one scope it grants (scopes
/// are ordered, so `admin` includes `write` includes `read`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKey {
    pub key: String,
    pub scope: Scope,
}

/// Parses `KEY:SCOPE,KEY:SCOPE` (the `ENGRAM_API_KEYS` form).
pub fn parse_keys(spec: &str) -> Result<Vec<ApiKey>, String> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (key, scope) = item
                .trim()
                .rsplit_once(':')
                .ok_or_else(|| format!("API key entry '{item}' must be KEY:SCOPE"))?;
            if key.len() < 8 {
                return Err("API keys must be at least 8 characters".to_string());
            }
            Ok(ApiKey {
                key: key.to_string(),
                scope: scope.parse()?,
            })
        })
        .collect()
}

/// The configured keys, looked up by the presented secret.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: HashMap<String, Scope>,
}

impl KeyRing {
    pub fn new(keys: &[ApiKey]) -> Self {
        KeyRing {
            keys: keys.iter().map(|k| (k.key.clone(), k.scope)).collect(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    fn scope_of(&self, key: &str) -> Option<Scope> {
        self.keys.get(key).copied()
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub scope: Scope,
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
        if state.keys.is_open() {
            return Ok(Caller {
                scope: Scope::Admin,
            });
        }
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
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
        match state.keys.scope_of(key.trim()) {
            Some(scope) => Ok(Caller { scope }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown API key",
            )),
        }
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
    }
}
