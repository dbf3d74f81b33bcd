//! The questions a collection is asked, newest last: the text, the documents the
//! retrieval returned for it, and when.
//!
//! Why: a collection has no gold answers, but it has the questions its users really
//! ask and which documents answer them. They show which knowledge is in demand (the
//! hot clusters' sample questions) and are the training and gate questions a
//! promotion can learn from. Like the hit counts beside them (`crate::hot`) they are
//! statistics: kept in memory, bounded to the newest `question_log_size` entries,
//! written without a WAL sync at most every few seconds (`crate::flush`), stored in
//! the collection's meta range so they are deleted with it, and not kept at all when
//! the collection was created with `"log_questions": false`.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::flush::{FlushGate, FlushHold};
use crate::storage::Storage;

/// Questions kept per collection when its settings do not say.
pub const DEFAULT_KEEP: usize = 1_000;
/// Most questions a collection may keep (memory: about 12 KB per entry at worst).
pub const MAX_KEEP: usize = 10_000;
/// Bytes of a question kept; a longer one is cut at a character boundary.
pub const MAX_QUESTION_BYTES: usize = 2_000;
/// Document ids kept per question: the best-ranked ones.
pub const MAX_IDS: usize = 20;

/// One question as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoggedQuestion {
    pub question: String,
    /// The documents retrieved for it, best first (empty when the answer retrieved
    /// nothing, as in `weights` mode).
    pub ids: Vec<String>,
    /// Unix seconds when it was asked.
    pub at: u64,
}

#[derive(Default)]
struct Entries {
    /// (entry number, question), oldest first, at most `keep`.
    newest: VecDeque<(u64, LoggedQuestion)>,
    /// The number the next entry gets.
    next: u64,
    /// How many of the newest entries are not written yet.
    unwritten: usize,
    /// Whether entries were dropped since the last flush (their keys go then).
    evicted: bool,
}

/// A collection's question log.
pub struct QuestionLog {
    keep: usize,
    on: bool,
    entries: Mutex<Entries>,
    flushes: FlushGate,
}

impl QuestionLog {
    /// An empty log keeping the newest `keep` questions, or none when `on` is false.
    pub fn new(keep: usize, on: bool) -> QuestionLog {
        QuestionLog {
            keep,
            on,
            entries: Mutex::new(Entries::default()),
            flushes: FlushGate::default(),
        }
    }

    /// The stored log of `coll` (its newest `keep` entries).
    pub fn load(storage: &Storage, coll: &str, keep: usize, on: bool) -> Result<QuestionLog> {
        let log = QuestionLog::new(keep, on);
        {
            let mut e = log.entries.lock().expect("lock");
            storage.scan_questions(coll, |number, bytes| {
                if let Ok(q) = serde_json::from_slice::<LoggedQuestion>(bytes) {
                    e.newest.push_back((number, q));
                }
                e.next = number + 1;
                Ok(())
            })?;
            while e.newest.len() > keep {
                e.newest.pop_front();
                e.evicted = true;
            }
        }
        Ok(log)
    }

    /// Whether questions are kept.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Logs a question and the documents retrieved for it (best first), and writes
    /// the unwritten entries out when the last flush is old enough. The work is
    /// bounded: one entry of at most [`MAX_QUESTION_BYTES`] and [`MAX_IDS`] ids, and
    /// a flush writes at most `keep` entries.
    pub fn record(&self, storage: &Storage, coll: &str, question: &str, ids: &[&str]) {
        if !self.on || self.keep == 0 {
            return;
        }
        let entry = LoggedQuestion {
            question: cut(question.trim(), MAX_QUESTION_BYTES).to_string(),
            ids: ids.iter().take(MAX_IDS).map(|s| s.to_string()).collect(),
            at: crate::clock::unix_now(),
        };
        let mut e = self.entries.lock().expect("lock");
        let number = e.next;
        e.next += 1;
        e.newest.push_back((number, entry));
        e.unwritten += 1;
        while e.newest.len() > self.keep {
            e.newest.pop_front();
            e.evicted = true;
        }
        e.unwritten = e.unwritten.min(e.newest.len());
        if !self.flushes.due() {
            return;
        }
        let batch = self.unwritten_batch(storage, coll, &mut e);
        drop(e);
        self.flushes
            .commit(storage, coll, batch, "the question log");
    }

    /// Writes the unwritten entries now (tests and shutdown).
    pub fn flush(&self, storage: &Storage, coll: &str) {
        let batch = {
            let mut e = self.entries.lock().expect("lock");
            self.unwritten_batch(storage, coll, &mut e)
        };
        self.flushes
            .commit(storage, coll, batch, "the question log");
    }

    fn unwritten_batch(
        &self,
        storage: &Storage,
        coll: &str,
        e: &mut Entries,
    ) -> crate::storage::Batch {
        let mut batch = storage.batch();
        if std::mem::take(&mut e.evicted) {
            let oldest = e.newest.front().map_or(e.next, |(n, _)| *n);
            storage.delete_questions_before(&mut batch, coll, oldest);
        }
        let skip = e.newest.len() - e.unwritten;
        for (number, q) in e.newest.iter().skip(skip) {
            let bytes = serde_json::to_vec(q).expect("plain struct serialises");
            storage.put_question(&mut batch, coll, *number, &bytes);
        }
        e.unwritten = 0;
        batch
    }

    /// Holds off flushes until the hold is dropped; its `close` stops them for good
    /// (a collection's delete, see `crate::flush`).
    pub fn hold_flushes(&self) -> FlushHold<'_> {
        self.flushes.hold()
    }

    /// The logged questions, newest first.
    pub fn newest_first(&self) -> Vec<LoggedQuestion> {
        let e = self.entries.lock().expect("lock");
        e.newest.iter().rev().map(|(_, q)| q.clone()).collect()
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(storage: &Storage, coll: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        storage
            .scan_questions(coll, |n, b| {
                let q: LoggedQuestion = serde_json::from_slice(b).unwrap();
                out.push((n, q.question));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn keeps_the_newest_n_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let log = QuestionLog::new(3, true);
        for i in 0..5 {
            log.record(&storage, "c", &format!("q{i}"), &[&format!("d{i}"), "x"]);
        }
        let got: Vec<String> = log.newest_first().into_iter().map(|q| q.question).collect();
        assert_eq!(got, ["q4", "q3", "q2"]);
        log.flush(&storage, "c");
        let numbers: Vec<u64> = stored(&storage, "c").iter().map(|s| s.0).collect();
        assert_eq!(numbers, [2, 3, 4]);
        for i in 5..9 {
            log.record(&storage, "c", &format!("q{i}"), &[]);
        }
        log.flush(&storage, "c");
        let on_disk: Vec<String> = stored(&storage, "c").into_iter().map(|s| s.1).collect();
        assert_eq!(on_disk, ["q6", "q7", "q8"], "evicted entries are deleted");
        assert!(stored(&storage, "other").is_empty());

        let again = QuestionLog::load(&storage, "c", 2, true).unwrap();
        let q = again.newest_first();
        assert_eq!(q.len(), 2, "a smaller bound keeps the newest");
        assert_eq!(q[0].question, "q8");
        again.record(&storage, "c", "q9", &["d"]);
        again.flush(&storage, "c");
        let on_disk: Vec<(u64, String)> = stored(&storage, "c");
        assert_eq!(
            on_disk,
            [(8, "q8".into()), (9, "q9".into())],
            "numbers go on"
        );
    }

    #[test]
    fn entries_are_bounded_and_an_off_log_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let log = QuestionLog::new(10, true);
        let long = "é".repeat(MAX_QUESTION_BYTES);
        let ids: Vec<String> = (0..50).map(|i| format!("d{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        log.record(&storage, "c", &long, &ids);
        let q = &log.newest_first()[0];
        assert!(q.question.len() <= MAX_QUESTION_BYTES && q.question.len() > 1000);
        assert_eq!(q.ids.len(), MAX_IDS);
        assert_eq!(q.ids[0], "d0", "the best-ranked ids are kept");
        assert!(q.at > 1_700_000_000);

        let off = QuestionLog::new(10, false);
        off.record(&storage, "d", "secret", &["x"]);
        off.flush(&storage, "d");
        assert!(off.newest_first().is_empty() && stored(&storage, "d").is_empty());
    }

    #[test]
    fn a_closed_log_writes_nothing_after_the_delete() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let log = QuestionLog::new(10, true);
        log.record(&storage, "c", "q", &[]);
        log.hold_flushes().close();
        log.flush(&storage, "c");
        assert!(stored(&storage, "c").is_empty());
    }
}
