//! The retrieval datasets: passages with the questions they answer, as
//! `scripts/extract_quoref.py` writes them (one JSON object per line:
//! `{"id", "text", "questions": [{"question", ...}, ...]}`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A dataset `engram eval retrieval` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// 2,942 Wikipedia passages, 6,500 questions about who did what.
    Quoref,
    /// 3,507 passages, 6,500 questions needing counting and arithmetic.
    Drop,
}

impl Dataset {
    /// The name in file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Quoref => "quoref",
            Dataset::Drop => "drop",
        }
    }

    /// Where the extraction script puts it: `$ENGRAM_CACHE/data/NAME.jsonl`,
    /// `~/.cache/engram/data/NAME.jsonl` by default (the script's own rule).
    pub fn default_path(self) -> PathBuf {
        let root = std::env::var_os("ENGRAM_CACHE")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
                home.map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".cache")
                    .join("engram")
            });
        root.join("data").join(format!("{}.jsonl", self.name()))
    }

    /// The file a command reads: the one given; else the full extract; else, for
    /// Quoref, the committed first 300 passages (with a note on stderr, since figures
    /// from 300 passages are not the README's). The extracts' only source package is
    /// no longer served, so a fresh machine has none: the error says what to do.
    pub fn locate(self, given: Option<&Path>) -> Result<PathBuf> {
        self.locate_with(given, self.default_path())
    }

    fn locate_with(self, given: Option<&Path>, full: PathBuf) -> Result<PathBuf> {
        if let Some(path) = given {
            return Ok(path.to_path_buf());
        }
        if full.is_file() {
            return Ok(full);
        }
        let committed = committed_quoref();
        if self == Dataset::Quoref && committed.is_file() {
            eprintln!(
                "note: {} is missing; using the committed first 300 Quoref passages ({}); figures from them are not comparable with the README's full-Quoref ones",
                full.display(),
                committed.display()
            );
            return Ok(committed);
        }
        Err(Error::invalid(
            "dataset",
            format!("{} does not exist. {MISSING_EXTRACT_HELP}", full.display()),
        ))
    }
}

/// What to do when an extract is missing, for every command that reads one.
pub const MISSING_EXTRACT_HELP: &str = "The Quoref and DROP extracts come from PyPI's \
bigbench==1.0.0, which PyPI no longer serves (only 0.0.1, without task data). If you have \
bigbench-1.0.0.tar.gz, run `python3 scripts/extract_quoref.py --sdist PATH`; otherwise pass \
the committed first 300 Quoref passages, tests/data/quoref_300.jsonl, as the data file \
(DROP has no committed subset). See benches/README.md, \"Data\".";

/// The committed Quoref subset in this checkout.
pub fn committed_quoref() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/quoref_300.jsonl")
}

/// One passage and the questions whose answer it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub id: String,
    pub text: String,
    pub questions: Vec<String>,
    /// Gold answers of each question, aligned with `questions` (a question may have
    /// several spans; any one counts as right). Empty lists where a file has none.
    pub answers: Vec<Vec<String>>,
}

#[derive(Deserialize)]
struct Line {
    id: String,
    text: String,
    questions: Vec<Question>,
}

#[derive(Deserialize)]
struct Question {
    question: String,
    #[serde(default)]
    answers: Vec<String>,
    #[serde(default)]
    answer: Option<String>,
}

impl Question {
    fn gold(&self) -> Vec<String> {
        match (&self.answers[..], &self.answer) {
            ([], Some(a)) => vec![a.clone()],
            (many, _) => many.to_vec(),
        }
    }
}

/// Reads a dataset file; a missing file is an error that says how to make it.
pub fn load(path: &Path) -> Result<Vec<Passage>> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            format!("does not exist. {MISSING_EXTRACT_HELP}")
        } else {
            e.to_string()
        };
        Error::invalid("dataset", format!("{}: {why}", path.display()))
    })?;
    let mut passages = Vec::new();
    for (n, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line).map_err(|e| {
            Error::invalid(
                "dataset",
                format!(
                    "{}:{}: {e}; expected {{\"id\", \"text\", \"questions\": [{{\"question\"}}]}}",
                    path.display(),
                    n + 1
                ),
            )
        })?;
        passages.push(Passage {
            id: l.id,
            text: l.text,
            answers: l.questions.iter().map(Question::gold).collect(),
            questions: l.questions.into_iter().map(|q| q.question).collect(),
        });
    }
    if passages.is_empty() {
        return Err(Error::invalid(
            "dataset",
            format!("{} holds no passages", path.display()),
        ));
    }
    Ok(passages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_committed_extract_and_explains_a_missing_file() {
        let passages = load(&committed_quoref()).unwrap();
        assert_eq!(passages.len(), 300);
        assert_eq!(passages[0].id, "q-0");
        let questions: usize = passages.iter().map(|p| p.questions.len()).sum();
        assert_eq!(questions, 951);
        assert_eq!(passages[0].answers[0], vec!["Catherine".to_string()]);

        let err = load(Path::new("/nonexistent/quoref.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tests/data/quoref_300.jsonl"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"id\": \"x\"}\n").unwrap();
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:1"), "{err}");
    }

    #[test]
    fn locate_falls_back_to_the_committed_quoref_passages_only() {
        let cache = tempfile::tempdir().unwrap();
        let quoref = cache.path().join("quoref.jsonl");
        let drop = cache.path().join("drop.jsonl");
        let given = Path::new("/some/file.jsonl");
        let locate = |d: Dataset, given, full: &Path| d.locate_with(given, full.to_path_buf());
        assert_eq!(locate(Dataset::Drop, Some(given), &drop).unwrap(), given);
        assert_eq!(
            locate(Dataset::Quoref, None, &quoref).unwrap(),
            committed_quoref()
        );
        let err = locate(Dataset::Drop, None, &drop).unwrap_err().to_string();
        assert!(err.contains("drop.jsonl does not exist"), "{err}");
        assert!(err.contains("extract_quoref.py --sdist"), "{err}");
        std::fs::write(&drop, "").unwrap();
        assert_eq!(locate(Dataset::Drop, None, &drop).unwrap(), drop);
    }
}
