//! Metadata filters: equality, membership, numeric ranges, combined with
//! and / or / not. Parsed from JSON once per query, then evaluated against each
//! candidate's metadata inside the graph walk.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// A parsed filter. Keys address metadata fields, with dots for nesting
/// (`"author.name"`).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq { key: String, value: Value },
    In { key: String, values: Vec<Value> },
    Range { key: String, bounds: Range },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

/// Numeric bounds; any subset may be given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

const FILTER_HELP: &str = "a filter is {\"key\": K, \"eq\": V} | {\"key\": K, \"in\": [V, ...]} | \
{\"key\": K, \"range\": {\"gte\": N, \"lt\": N}} | {\"and\": [F, ...]} | {\"or\": [F, ...]} | {\"not\": F}";

/// Filters nest at most this deep, so a hostile request cannot blow the stack.
const MAX_DEPTH: usize = 32;

impl Filter {
    /// Parses the JSON form, with a message naming the offending part and the grammar.
    pub fn parse(value: &Value) -> Result<Filter> {
        Self::parse_at(value, 0)
    }

    fn parse_at(value: &Value, depth: usize) -> Result<Filter> {
        if depth > MAX_DEPTH {
            return Err(Error::InvalidFilter(format!(
                "filter nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let bad =
            |why: &str| Error::InvalidFilter(format!("invalid filter ({why}); {FILTER_HELP}"));
        let obj = value.as_object().ok_or_else(|| bad("expected an object"))?;
        let list = |v: &Value| -> Result<Vec<Filter>> {
            let items = v.as_array().ok_or_else(|| bad("and/or take a list"))?;
            items.iter().map(|f| Self::parse_at(f, depth + 1)).collect()
        };
        if obj.len() == 1 {
            let (op, arg) = obj.iter().next().expect("one entry");
            return match op.as_str() {
                "and" => Ok(Filter::And(list(arg)?)),
                "or" => Ok(Filter::Or(list(arg)?)),
                "not" => Ok(Filter::Not(Box::new(Self::parse_at(arg, depth + 1)?))),
                _ => Err(bad(&format!("unknown operator '{op}'"))),
            };
        }
        if obj.len() != 2 {
            return Err(bad("expected 'key' and one condition"));
        }
        let key = obj
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("'key' must be a string"))?
            .to_string();
        if key.is_empty() {
            return Err(bad("'key' is empty"));
        }
        let (op, arg) = obj
            .iter()
            .find(|(k, _)| k.as_str() != "key")
            .expect("two entries, one is key");
        match op.as_str() {
            "eq" => Ok(Filter::Eq {
                key,
                value: arg.clone(),
            }),
            "in" => {
                let values = arg
                    .as_array()
                    .ok_or_else(|| bad("'in' takes a list"))?
                    .clone();
                Ok(Filter::In { key, values })
            }
            "range" => {
                let bounds: Range =
                    serde_json::from_value(arg.clone()).map_err(|e| bad(&format!("range: {e}")))?;
                if bounds == Range::default() {
                    return Err(bad("range needs at least one of gt, gte, lt, lte"));
                }
                Ok(Filter::Range { key, bounds })
            }
            _ => Err(bad(&format!("unknown condition '{op}'"))),
        }
    }

    /// Whether a document's metadata satisfies the filter. Missing fields match
    /// nothing but `not`.
    pub fn matches(&self, metadata: &Value) -> bool {
        match self {
            Filter::Eq { key, value } => lookup(metadata, key).is_some_and(|v| json_eq(v, value)),
            Filter::In { key, values } => {
                lookup(metadata, key).is_some_and(|v| values.iter().any(|x| json_eq(v, x)))
            }
            Filter::Range { key, bounds } => lookup(metadata, key)
                .and_then(Value::as_f64)
                .is_some_and(|x| bounds.contains(x)),
            Filter::And(fs) => fs.iter().all(|f| f.matches(metadata)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(metadata)),
            Filter::Not(f) => !f.matches(metadata),
        }
    }
}

impl Range {
    fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

fn lookup<'a>(metadata: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(metadata, |v, part| v.get(part))
}

/// JSON equality where 1 and 1.0 are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: Value, metadata: Value) -> bool {
        Filter::parse(&filter).unwrap().matches(&metadata)
    }

    #[test]
    fn conditions() {
        let m = json!({"genre": "rock", "year": 1994, "tags": "x", "author": {"name": "Ann"}});
        assert!(check(json!({"key": "genre", "eq": "rock"}), m.clone()));
        assert!(!check(json!({"key": "genre", "eq": "pop"}), m.clone()));
        assert!(check(json!({"key": "year", "eq": 1994.0}), m.clone()));
        assert!(check(json!({"key": "year", "in": [1, 1994]}), m.clone()));
        assert!(check(
            json!({"key": "year", "range": {"gte": 1990, "lt": 2000}}),
            m.clone()
        ));
        assert!(!check(
            json!({"key": "year", "range": {"gt": 1994}}),
            m.clone()
        ));
        assert!(check(json!({"key": "author.name", "eq": "Ann"}), m.clone()));
        assert!(!check(json!({"key": "missing", "eq": 1}), m.clone()));
        assert!(check(
            json!({"not": {"key": "missing", "eq": 1}}),
            m.clone()
        ));
        assert!(check(
            json!({"and": [{"key": "genre", "eq": "rock"}, {"or": [{"key": "year", "eq": 1}, {"key": "tags", "in": ["x"]}]}]}),
            m
        ));
    }

    #[test]
    fn bad_filters_explain_the_grammar() {
        for bad in [
            json!(3),
            json!({"key": "a"}),
            json!({"key": "a", "like": "b"}),
            json!({"key": "a", "range": {}}),
            json!({"key": "a", "range": {"gte": "x"}}),
            json!({"and": {"key": "a", "eq": 1}}),
            json!({"xor": []}),
        ] {
            let err = Filter::parse(&bad).unwrap_err().to_string();
            assert!(err.contains("a filter is"), "{err}");
        }
        let mut deep = json!({"key": "a", "eq": 1});
        for _ in 0..40 {
            deep = json!({ "not": deep });
        }
        assert!(Filter::parse(&deep).is_err());
    }
}
