//! Rule-based fill-in-the-blank questions: no model, deterministic, always supported.
//!
//! Spans blanked, in order of preference: dates (`October 12, 2007`, `12 May 1990`,
//! `1911`), other numbers (`3,500`, `42.5`), and names (runs of capitalised words not
//! at the start of a sentence, or of two words or more anywhere). The question is the
//! sentence with the span replaced by `____`; the answer is the span.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::Content;

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

pub(super) const NOT_NAMES: [&str; 24] = [
    "the", "a", "an", "in", "on", "at", "he", "she", "it", "they", "his", "her", "their", "this",
    "that", "these", "those", "after", "before", "when", "while", "however", "but", "and",
];

/// A word with its byte range in the sentence.
#[derive(Debug, Clone, Copy)]
pub(super) struct Word<'a> {
    pub(super) text: &'a str,
    pub(super) start: usize,
    pub(super) end: usize,
}

pub(super) fn split_words(sentence: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in sentence.char_indices() {
        let inside = c.is_alphanumeric()
            || ((c == ',' || c == '.') && start.is_some() && {
                // Keep "3,500" and "42.5" together: a separator between two digits.
                let prev = sentence[..i]
                    .chars()
                    .last()
                    .is_some_and(|p| p.is_ascii_digit());
                let next = sentence[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_some_and(|n| n.is_ascii_digit());
                prev && next
            })
            || (c == '\'' && start.is_some());
        match (inside, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Word {
                    text: &sentence[s..i],
                    start: s,
                    end: i,
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Word {
            text: &sentence[s..],
            start: s,
            end: sentence.len(),
        });
    }
    out
}

/// Sentences: split after `.`, `!` or `?` followed by a space and an upper-case letter
/// or a quote.
pub(crate) fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for w in 0..chars.len() {
        let (i, c) = chars[w];
        if matches!(c, '.' | '!' | '?') {
            let space = chars.get(w + 1).is_some_and(|x| x.1 == ' ');
            let next_upper = chars
                .get(w + 2)
                .is_some_and(|x| x.1.is_uppercase() || x.1 == '"');
            // "Mt. St. Helens", "Dr. Smith", "J. R. R. Tolkien": a short capitalised word
            // before the full stop is an abbreviation, not a sentence end.
            let before: Vec<char> = text[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_alphabetic())
                .collect();
            let abbreviation = c == '.'
                && (1..=3).contains(&before.len())
                && before.last().is_some_and(|c| c.is_uppercase());
            if space && next_upper && !abbreviation {
                out.push(text[start..=i].trim());
                start = i + 1;
            }
        }
    }
    if start < text.len() {
        out.push(text[start..].trim());
    }
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Date,
    Number,
    Name,
}

fn is_year(w: &str) -> bool {
    w.len() == 4
        && w.chars().all(|c| c.is_ascii_digit())
        && matches!(&w[..2], "15" | "16" | "17" | "18" | "19" | "20")
}

fn is_number(w: &str) -> bool {
    w.chars().next().is_some_and(|c| c.is_ascii_digit())
        && w.chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '.')
}

fn is_month(w: &str) -> bool {
    MONTHS.contains(&w.to_lowercase().as_str())
}

fn is_capitalised(w: &str) -> bool {
    w.chars().next().is_some_and(|c| c.is_uppercase())
        && !NOT_NAMES.contains(&w.to_lowercase().as_str())
}

/// Candidate spans `(kind, start word, end word exclusive)` of one sentence.
fn spans(words: &[Word<'_>]) -> Vec<(Kind, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].text;
        // Month [day] [year] | day Month [year]
        if is_month(w) && i + 1 < words.len() && (is_number(words[i + 1].text)) {
            let mut j = i + 2;
            if j < words.len() && is_year(words[j].text) {
                j += 1;
            }
            out.push((Kind::Date, i, j));
            i = j;
            continue;
        }
        if is_number(w) && !is_year(w) && i + 1 < words.len() && is_month(words[i + 1].text) {
            let mut j = i + 2;
            if j < words.len() && is_year(words[j].text) {
                j += 1;
            }
            out.push((Kind::Date, i, j));
            i = j;
            continue;
        }
        if is_year(w) {
            out.push((Kind::Date, i, i + 1));
            i += 1;
            continue;
        }
        if is_number(w) {
            out.push((Kind::Number, i, i + 1));
            i += 1;
            continue;
        }
        if is_capitalised(w) && !is_month(w) {
            let mut j = i + 1;
            while j < words.len() && is_capitalised(words[j].text) && !is_month(words[j].text) {
                j += 1;
            }
            if i > 0 || j - i >= 2 {
                out.push((Kind::Name, i, j));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Up to `max` cloze questions over `text`, chosen by `seed` with dates and numbers
/// first, at most two per sentence.
pub fn cloze_questions(text: &str, max: usize, seed: u64) -> Vec<Content> {
    let mut candidates: Vec<(Kind, String, String)> = Vec::new();
    for sentence in sentences(text) {
        let words = split_words(sentence);
        if words.len() < 5 || words.len() > 60 {
            continue;
        }
        let mut found = spans(&words);
        found.sort_by_key(|s| s.0);
        for (kind, a, b) in found.into_iter().take(2) {
            let (start, end) = (words[a].start, words[b - 1].end);
            let answer = sentence[start..end].to_string();
            let question = format!(
                "Fill in the blank: {}____{}",
                &sentence[..start],
                &sentence[end..]
            );
            candidates.push((kind, question, answer));
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    candidates.shuffle(&mut rng);
    candidates.sort_by_key(|c| c.0);
    candidates
        .into_iter()
        .take(max)
        .map(|(_, question, answer)| Content::Qa { question, answer })
        .collect()
}
