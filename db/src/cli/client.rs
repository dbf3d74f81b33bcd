//! A small blocking HTTP client for the CLI commands that talk to a running
//! server. Errors carry the server's own message.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub struct Client {
    base: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str, api_key: Option<String>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            api_key,
            agent: ureq::AgentBuilder::new()
                .timeout(std::time::Duration::from_secs(600))
                .build(),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = self
            .agent
            .request(method, &format!("{}{}", self.base, path));
        match &self.api_key {
            Some(k) => req.set("Authorization", &format!("Bearer {k}")),
            None => req,
        }
    }

    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let req = self.request(method, path);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match resp {
            Ok(r) if r.status() == 204 => Ok(serde_json::from_str("null")?),
            Ok(r) => Ok(r.into_json()?),
            Err(ureq::Error::Status(code, r)) => {
                let body: serde_json::Value = r.into_json().unwrap_or_default();
                let msg = body["error"]["message"].as_str().unwrap_or("no message");
                anyhow::bail!("server answered {code}: {msg}")
            }
            Err(e) => anyhow::bail!(
                "cannot reach the Engram server at {}: {e}; start it with `engram serve` or set --url / ENGRAM_URL",
                self.base
            ),
        }
    }
}
