//! The project's own PII benchmark: texts with planted secrets (full names, e-mail
//! addresses, phone and account numbers; `inverter/data/pii_eval.jsonl`, written
//! before any tuning) and how many of them the attack reads back from the vectors.
//!
//! Its measured result (`inverter/results/pii_benchmark.json`, written by `engram
//! eval inversion --pii`) is compiled in: every audit report states it next to the
//! published anchor, and the grade uses it so that an audit whose attack is weak
//! cannot read as "safe" (see `audit/grade.rs`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secrets::{SecretFinding, SecretKind};
use crate::text::words;

/// The published anchor every report quotes next to this attack's own strength.
pub const ANCHOR: &str = "vec2text recovers 89% of full names (94% of first names) \
from embeddings of clinical notes";
/// Share of full names the anchor attack recovers.
pub const ANCHOR_FULL_NAMES: f64 = 0.89;

/// One secret planted in a benchmark text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planted {
    pub kind: SecretKind,
    pub value: String,
}

/// One benchmark text and the secrets planted in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlantedText {
    pub id: String,
    pub text: String,
    pub secrets: Vec<Planted>,
}

/// Parses a benchmark file's JSON lines (blank lines skipped); every secret must be
/// a substring of its text.
pub fn parse(jsonl: &str) -> Result<Vec<PlantedText>> {
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let t: PlantedText = serde_json::from_str(line)
            .map_err(|e| Error::invalid("pii", format!("line {}: {e}", i + 1)))?;
        if let Some(s) = t.secrets.iter().find(|s| !t.text.contains(&s.value)) {
            return Err(Error::invalid(
                "pii",
                format!("line {}: secret {:?} is not in the text", i + 1, s.value),
            ));
        }
        out.push(t);
    }
    Ok(out)
}

pub fn load(path: &Path) -> Result<Vec<PlantedText>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid("pii", format!("cannot read {}: {e}", path.display())))?;
    parse(&text)
}

/// What an attacker's dictionaries could hold of `texts`' secrets: the words of
/// every name, and every e-mail domain whole and label by label. Tuning hides these
/// from the lexicon (`Lexicon::hide`) so that the tuning set's names and domains
/// are as far out of the dictionaries as the evaluation set's.
pub fn dictionary_words(texts: &[PlantedText]) -> Vec<String> {
    let mut out = Vec::new();
    for s in texts.iter().flat_map(|t| &t.secrets) {
        match s.kind {
            SecretKind::Name => out.extend(words(&s.value)),
            SecretKind::Email => {
                if let Some((_, domain)) = s.value.to_lowercase().split_once('@') {
                    out.extend(words(domain));
                    out.push(domain.to_string());
                }
            }
            SecretKind::Phone | SecretKind::Number => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Secrets of one kind: how many, how many came back whole, how many in part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KindTally {
    pub total: usize,
    /// Every word of the secret came back.
    pub exact: usize,
    /// Some but not all of its words came back.
    pub partly: usize,
}

impl KindTally {
    fn add(&mut self, f: &SecretFinding) {
        self.total += 1;
        self.exact += f.recovered as usize;
        self.partly += f.partly() as usize;
    }

    /// Share recovered exactly (0 when there is none of the kind).
    pub fn share(&self) -> f64 {
        self.exact as f64 / self.total.max(1) as f64
    }

    pub fn partly_share(&self) -> f64 {
        self.partly as f64 / self.total.max(1) as f64
    }
}

/// The attack's result on the benchmark at one step budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiiRow {
    pub steps: usize,
    pub texts: usize,
    /// Full names.
    pub names: KindTally,
    /// The first word of each full name alone (the anchor's second figure).
    pub first_names: KindTally,
    pub emails: KindTally,
    /// Phone, account and card numbers.
    pub numbers: KindTally,
    pub seconds_per_text: f64,
}

impl PiiRow {
    /// Tallies `reconstructions[i]` (of `texts[i]`) at budget `steps`.
    pub fn tally(
        texts: &[PlantedText],
        reconstructions: &[&str],
        steps: usize,
        seconds_per_text: f64,
    ) -> PiiRow {
        let mut row = PiiRow {
            steps,
            texts: texts.len(),
            names: KindTally::default(),
            first_names: KindTally::default(),
            emails: KindTally::default(),
            numbers: KindTally::default(),
            seconds_per_text,
        };
        for (t, rec) in texts.iter().zip(reconstructions) {
            let rec = words(rec);
            for s in &t.secrets {
                let f = SecretFinding::check(s.kind, &s.value, &rec);
                match s.kind {
                    SecretKind::Name => {
                        row.names.add(&f);
                        let first = s.value.split_whitespace().next().unwrap_or("");
                        row.first_names
                            .add(&SecretFinding::check(s.kind, first, &rec));
                    }
                    SecretKind::Email => row.emails.add(&f),
                    SecretKind::Phone | SecretKind::Number => row.numbers.add(&f),
                }
            }
        }
        row
    }

    /// One sentence: what the attack recovers on the benchmark, and the anchor.
    pub fn sentence(&self) -> String {
        let pct = |t: &KindTally| format!("{:.0}%", 100.0 * t.share());
        format!(
            "On Engram's PII benchmark ({} texts, {} steps, {:.0} s per text) this attack \
             recovers {} of full names ({} of first names), {} of e-mail addresses and {} of \
             phone and account numbers exactly; for comparison, {ANCHOR}.",
            self.texts,
            self.steps,
            self.seconds_per_text,
            pct(&self.names),
            pct(&self.first_names),
            pct(&self.emails),
            pct(&self.numbers),
        )
    }
}

/// The attack's measured strength: one row per step budget of the committed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackStrength {
    /// The benchmark file it was measured on.
    pub benchmark: String,
    pub rows: Vec<PiiRow>,
}

impl AttackStrength {
    /// The strength measured for this build's attack (`inverter/results/
    /// pii_benchmark.json`, its `pii` entry); `None` if the file has none.
    pub fn measured() -> Option<AttackStrength> {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../results/pii_benchmark.json")).ok()?;
        serde_json::from_value(json.get("pii")?.clone()).ok()
    }

    /// The row an audit at `steps` should quote: the largest budget not above it
    /// (an audit with fewer steps than any measured budget gets the smallest, which
    /// overstates its strength if anything; the grade treats that row as an upper
    /// bound only when it is weak).
    pub fn at(&self, steps: usize) -> Option<&PiiRow> {
        self.rows
            .iter()
            .filter(|r| r.steps <= steps)
            .max_by_key(|r| r.steps)
            .or_else(|| self.rows.iter().min_by_key(|r| r.steps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"{"id": "a", "text": "Mail Ada Lovelace at ada.lovelace@example.com or 020 7946 0958.", "secrets": [{"kind": "name", "value": "Ada Lovelace"}, {"kind": "email", "value": "ada.lovelace@example.com"}, {"kind": "phone", "value": "020 7946 0958"}]}

{"id": "b", "text": "Account 12345678 of Charles Babbage.", "secrets": [{"kind": "number", "value": "12345678"}, {"kind": "name", "value": "Charles Babbage"}]}"#;

    #[test]
    fn dictionary_words_are_names_and_domains() {
        assert_eq!(
            dictionary_words(&parse(TWO).unwrap()),
            [
                "ada",
                "babbage",
                "charles",
                "com",
                "example",
                "example.com",
                "lovelace"
            ]
        );
    }

    #[test]
    fn tallies_each_kind_exactly_and_partly() {
        let texts = parse(TWO).unwrap();
        let row = PiiRow::tally(
            &texts,
            &["lovelace ada mail example 020", "babbage account 12345678"],
            10,
            1.5,
        );
        assert_eq!(
            row.names,
            KindTally {
                total: 2,
                exact: 1,
                partly: 1
            }
        );
        assert_eq!(
            row.first_names,
            KindTally {
                total: 2,
                exact: 1,
                partly: 0
            }
        );
        assert_eq!(
            row.emails,
            KindTally {
                total: 1,
                exact: 0,
                partly: 1
            }
        );
        assert_eq!(
            row.numbers,
            KindTally {
                total: 2,
                exact: 1,
                partly: 1
            }
        );
        assert!((row.names.share() - 0.5).abs() < 1e-12);
        let s = row.sentence();
        assert!(s.contains("50% of full names") && s.contains("89%"), "{s}");
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(parse("{\"id\": 1}").is_err());
        let missing = r#"{"id": "a", "text": "hello", "secrets": [{"kind": "name", "value": "Ada Lovelace"}]}"#;
        assert!(parse(missing).is_err());
        let kind = r#"{"id": "a", "text": "Ada Lovelace", "secrets": [{"kind": "dna", "value": "Ada Lovelace"}]}"#;
        assert!(parse(kind).is_err());
    }

    #[test]
    fn quotes_the_largest_budget_not_above_the_audit() {
        let row = |steps| PiiRow::tally(&[], &[], steps, 0.0);
        let s = AttackStrength {
            benchmark: "x".into(),
            rows: vec![row(10), row(40)],
        };
        assert_eq!(s.at(10).unwrap().steps, 10);
        assert_eq!(s.at(39).unwrap().steps, 10);
        assert_eq!(s.at(80).unwrap().steps, 40);
        assert_eq!(s.at(5).unwrap().steps, 10);
    }

    #[test]
    fn the_committed_benchmark_is_readable_and_is_the_eval_set() {
        let s = AttackStrength::measured().expect("pii_benchmark.json has a pii entry");
        assert!(s.benchmark.ends_with("pii_eval.jsonl"));
        assert!(!s.rows.is_empty());
        let set = parse(include_str!("../data/pii_eval.jsonl")).unwrap();
        assert!(s
            .rows
            .iter()
            .all(|r| r.texts <= set.len() && r.names.total > 0));
    }
}
