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

    /// POSTs `body` and reads the answer as server-sent events, calling `on_event`
    /// with each event's name ("message" when unnamed) and data.
    pub fn stream_events(
        &self,
        path: &str,
        body: &impl Serialize,
        mut on_event: impl FnMut(&str, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        use std::io::BufRead;
        let resp = self.request("POST", path).send_json(body);
        let resp = self.check(resp)?;
        let reader = std::io::BufReader::new(resp.into_reader());
        let (mut event, mut data) = (String::new(), String::new());
        for line in reader.lines() {
            let line = line?;
            if line.is_empty() {
                if !data.is_empty() {
                    let name = if event.is_empty() { "message" } else { &event };
                    on_event(name, &data)?;
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        Ok(())
    }

    /// The response, or the server's error message as an error.
    fn check(&self, resp: Result<ureq::Response, ureq::Error>) -> anyhow::Result<ureq::Response> {
        match resp {
            Ok(r) => Ok(r),
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
        let r = self.check(resp)?;
        if r.status() == 204 {
            return Ok(serde_json::from_str("null")?);
        }
        Ok(r.into_json()?)
    }
}
