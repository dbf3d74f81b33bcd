//! How exact the scores a caller sees are. Exact similarity scores let a
//! caller who may not read vectors rebuild them anyway: a query with the basis
//! vector e_i scores every stored vector by its i-th coordinate (over its norm,
//! under cosine), so `dimension` queries with k up to the limit recover each
//! vector in the top k, and a filter isolating one document aims the probe.
//! A key configured with `scores = "rounded"` sees two decimals (which only
//! coarsens each probe) and one with `scores = "none"` sees ranks without scores.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The decimals a `rounded` score keeps.
const ROUNDED_DECIMALS: i32 = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreView {
    /// Scores as computed (the default, and what a caller without keys sees).
    #[default]
    Exact,
    /// Scores rounded to two decimals.
    Rounded,
    /// No scores: the hits keep their order, and `score` is left out.
    None,
}

impl std::str::FromStr for ScoreView {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "exact" => Ok(ScoreView::Exact),
            "rounded" => Ok(ScoreView::Rounded),
            "none" => Ok(ScoreView::None),
            other => Err(format!(
                "unknown score view '{other}': use exact, rounded or none"
            )),
        }
    }
}

impl ScoreView {
    /// `body` as JSON, with the `score` of every item of its array `list`
    /// ("hits", "sources") shown as this view says.
    pub fn respond<T: Serialize>(self, body: T, list: &str) -> Response {
        if self == ScoreView::Exact {
            return Json(body).into_response();
        }
        let mut value = match serde_json::to_value(body) {
            Ok(v) => v,
            Err(e) => {
                return super::error::ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the response could not be encoded: {e}"),
                )
                .into_response()
            }
        };
        self.shape(&mut value, list);
        Json(value).into_response()
    }

    /// Shows the `score` of every item of `value`'s array `list` as this view says
    /// (for bodies built as JSON: an answer's stream events, a chat completion's
    /// `engram` part).
    pub fn shape(self, value: &mut Value, list: &str) {
        if let Some(items) = value.get_mut(list).and_then(Value::as_array_mut) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                self.apply(item);
            }
        }
    }

    fn apply(self, item: &mut serde_json::Map<String, Value>) {
        match self {
            ScoreView::Exact => {}
            ScoreView::None => {
                item.remove("score");
            }
            ScoreView::Rounded => {
                if let Some(score) = item.get("score").and_then(Value::as_f64) {
                    let scale = 10f64.powi(ROUNDED_DECIMALS);
                    item.insert("score".into(), Value::from((score * scale).round() / scale));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn shown(view: ScoreView) -> Value {
        let body = serde_json::json!({"hits": [{"id": "a", "score": 0.123_456}, {"id": "b", "score": -0.987_6}], "took_ms": 1.5});
        let resp = view.respond(body, "hits");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn views_round_and_withhold() {
        let exact = shown(ScoreView::Exact).await;
        assert_eq!(exact["hits"][0]["score"], 0.123_456);
        let rounded = shown(ScoreView::Rounded).await;
        assert_eq!(rounded["hits"][0]["score"], 0.12);
        assert_eq!(rounded["hits"][1]["score"], -0.99);
        assert_eq!(rounded["took_ms"], 1.5);
        let none = shown(ScoreView::None).await;
        assert!(none["hits"][0].get("score").is_none());
        assert_eq!(none["hits"][1]["id"], "b", "the order stays");
        assert!("fuzzy".parse::<ScoreView>().is_err());
    }
}
