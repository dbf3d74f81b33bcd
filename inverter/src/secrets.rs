//! Secrets a reviewer cares about: e-mail addresses, phone numbers, account and card
//! numbers, and personal names, found in an original text and checked against its
//! reconstruction. Hand-written scanners (no regex engine): the patterns are few and
//! the rules below are the whole definition.
//!
//! - email: `local@domain.tld` (local part `A-Z a-z 0-9 . _ % + -`).
//! - phone: a run of digits and `+ ( ) - .` / spaces with 7-15 digits and at least one
//!   separator, unless it is grouped like a card number.
//! - number: 8 or more digits without separators, card-like groups (13-19 digits in
//!   groups of 4), or an IBAN-like code (2 capitals, 2 digits, 11-30 more letters or
//!   digits, optionally in groups of 4).
//! - name: two or more consecutive capitalised words (`Ada Lovelace`), after dropping
//!   a leading function word (`The Texans` is not a name).
//!
//! A secret is *recovered* when every one of its words appears among the
//! reconstruction's words (the inverter emits lowercased words without punctuation, so
//! `ada.lovelace@example.com` counts when `ada`, `lovelace`, `example` and `com` all
//! appear): whoever reads the reconstruction has the secret, in whatever order.
//! Whether the words also came back adjacent and in order is reported on its own
//! (`in_order`), never as a reason to call a fully leaked secret safe.

use serde::{Deserialize, Serialize};

use crate::text::words;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretKind {
    Email,
    Phone,
    Number,
    Name,
}

impl SecretKind {
    pub const ALL: [SecretKind; 4] = [
        SecretKind::Email,
        SecretKind::Phone,
        SecretKind::Number,
        SecretKind::Name,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecretKind::Email => "email",
            SecretKind::Phone => "phone",
            SecretKind::Number => "number",
            SecretKind::Name => "name",
        }
    }
}

/// One secret of the original and what the reconstruction gave away of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretFinding {
    pub kind: SecretKind,
    pub value: String,
    /// Every one of its words is in the reconstruction.
    pub recovered: bool,
    /// Its words appear adjacent and in order in the reconstruction (reports stored
    /// before this field existed read as `false`).
    #[serde(default)]
    pub in_order: bool,
    /// Share of its words present anywhere in the reconstruction.
    pub partial: f64,
}

impl SecretFinding {
    /// What `reconstruction` gives away of the secret `value` of kind `kind`.
    pub fn check(kind: SecretKind, value: &str, reconstruction: &[String]) -> SecretFinding {
        let w = words(value);
        let present = w.iter().filter(|x| reconstruction.contains(x)).count();
        SecretFinding {
            kind,
            recovered: !w.is_empty() && present == w.len(),
            in_order: !w.is_empty() && reconstruction.windows(w.len()).any(|g| g == w.as_slice()),
            partial: present as f64 / w.len().max(1) as f64,
            value: value.to_string(),
        }
    }

    /// Leaked in part: some but not all of its words came back.
    pub fn partly(&self) -> bool {
        !self.recovered && self.partial > 0.0
    }
}

/// Every secret in `text`, in order of appearance (a span is reported once, under
/// the first kind that claims it: email, number, phone, name).
pub fn find(text: &str) -> Vec<(SecretKind, String)> {
    let mut found: Vec<(usize, usize, SecretKind)> = Vec::new();
    let claim = |start: usize, end: usize, kind: SecretKind, found: &mut Vec<_>| {
        if !found
            .iter()
            .any(|&(s, e, _): &(usize, usize, SecretKind)| start < e && s < end)
        {
            found.push((start, end, kind));
        }
    };
    for (s, e) in emails(text) {
        claim(s, e, SecretKind::Email, &mut found);
    }
    for (s, e) in ibans(text) {
        claim(s, e, SecretKind::Number, &mut found);
    }
    for (s, e, kind) in digit_runs(text) {
        claim(s, e, kind, &mut found);
    }
    for (s, e) in names(text) {
        claim(s, e, SecretKind::Name, &mut found);
    }
    found.sort_by_key(|f| f.0);
    found
        .into_iter()
        .map(|(s, e, k)| (k, text[s..e].to_string()))
        .collect()
}

/// The secrets of `original` and whether `reconstruction` recovered each.
pub fn audit(original: &str, reconstruction: &str) -> Vec<SecretFinding> {
    let rec = words(reconstruction);
    find(original)
        .into_iter()
        .map(|(kind, value)| SecretFinding::check(kind, &value, &rec))
        .collect()
}

fn emails(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let local = |c: u8| c.is_ascii_alphanumeric() || b"._%+-".contains(&c);
    let domain = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
    let mut out = Vec::new();
    for (at, _) in text.match_indices('@') {
        let mut s = at;
        while s > 0 && local(b[s - 1]) {
            s -= 1;
        }
        let mut e = at + 1;
        while e < b.len() && domain(b[e]) {
            e += 1;
        }
        while e > at + 1 && b[e - 1] == b'.' {
            e -= 1;
        }
        let dom = &text[at + 1..e];
        if s < at && dom.contains('.') && !dom.starts_with('.') {
            out.push((s, e));
        }
    }
    out
}

fn ibans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let starts_word = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if starts_word
            && b[i].is_ascii_uppercase()
            && b[i + 1].is_ascii_uppercase()
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit()
        {
            // Alphanumerics, allowing single spaces between groups.
            let (mut e, mut chars, mut last_good) = (i, 0, i);
            while e < b.len() {
                if b[e].is_ascii_uppercase() || b[e].is_ascii_digit() {
                    chars += 1;
                    e += 1;
                    last_good = e;
                } else if b[e] == b' ' && e + 1 < b.len() && b[e + 1].is_ascii_alphanumeric() {
                    e += 1;
                } else {
                    break;
                }
            }
            let ends_word = last_good == b.len() || !b[last_good].is_ascii_alphanumeric();
            if (15..=34).contains(&chars) && ends_word {
                out.push((i, last_good));
                i = last_good;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Phone numbers and long numbers: maximal runs of digits and separators.
fn digit_runs(text: &str) -> Vec<(usize, usize, SecretKind)> {
    let b = text.as_bytes();
    let sep = |c: u8| b" +()-.".contains(&c);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = (b[i].is_ascii_digit() || b[i] == b'+' || b[i] == b'(')
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if !starts {
            i += 1;
            continue;
        }
        let mut e = i;
        while e < b.len() && (b[e].is_ascii_digit() || sep(b[e])) {
            e += 1;
        }
        // Trim trailing separators (a sentence's full stop, a space).
        while e > i && !b[e - 1].is_ascii_digit() {
            e -= 1;
        }
        if e < b.len() && b[e].is_ascii_alphabetic() || e <= i {
            i = e.max(i + 1);
            continue;
        }
        let run = &text[i..e];
        let digits = run.bytes().filter(u8::is_ascii_digit).count();
        let groups: Vec<&str> = run
            .split(|c: char| !c.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .collect();
        let card = (13..=19).contains(&digits)
            && groups.len() >= 3
            && groups[..groups.len() - 1].iter().all(|g| g.len() == 4);
        let kind = if groups.len() == 1 && digits >= 8 || card {
            Some(SecretKind::Number)
        } else if groups.len() >= 2 && (7..=15).contains(&digits) {
            Some(SecretKind::Phone)
        } else {
            None
        };
        if let Some(kind) = kind {
            out.push((i, e, kind));
        }
        i = e.max(i + 1);
    }
    out
}

/// Words that start a capitalised run without being part of a name.
const NOT_NAMES: &[&str] = &[
    "The", "A", "An", "In", "On", "At", "Of", "And", "But", "For", "When", "After", "Before",
    "His", "Her", "Their", "This", "That", "It", "He", "She", "They", "As", "By", "With", "From",
    "To", "If", "While", "During", "Mr", "Mrs", "Ms", "Dr",
];

fn names(text: &str) -> Vec<(usize, usize)> {
    let capitalised = |w: &str| {
        let mut c = w.chars();
        c.next().is_some_and(char::is_uppercase)
            && w.chars().count() >= 2
            && c.all(|ch| ch.is_lowercase() || ch == '\'' || ch == '-')
    };
    let mut tokens: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, ch) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        let part = ch.is_alphanumeric() || ch == '\'' || ch == '-';
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                tokens.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut run: Vec<(usize, usize)> = Vec::new();
    let flush = |run: &mut Vec<(usize, usize)>, out: &mut Vec<(usize, usize)>| {
        while run
            .first()
            .is_some_and(|&(s, e)| NOT_NAMES.contains(&&text[s..e]))
        {
            run.remove(0);
        }
        if run.len() >= 2 {
            out.push((run[0].0, run[run.len() - 1].1));
        }
        run.clear();
    };
    for (k, &(s, e)) in tokens.iter().enumerate() {
        // Only a space may separate the words of one name.
        let adjacent = k > 0 && text[tokens[k - 1].1..s] == *" ";
        if !adjacent {
            flush(&mut run, &mut out);
        }
        if capitalised(&text[s..e]) {
            run.push((s, e));
        } else {
            flush(&mut run, &mut out);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(SecretKind, String)> {
        find(text)
    }

    #[test]
    fn finds_each_kind() {
        let text = "Write to ada.lovelace@example.com or call +44 20 7946 0958. \
                    The Texans paid 4111 1111 1111 1111 into DE89 3704 0044 0532 0130 00, \
                    account 12345678; Ada Lovelace scored 21 - 17 in 1999.";
        let got = kinds(text);
        assert_eq!(
            got,
            vec![
                (SecretKind::Email, "ada.lovelace@example.com".into()),
                (SecretKind::Phone, "+44 20 7946 0958".into()),
                (SecretKind::Number, "4111 1111 1111 1111".into()),
                (SecretKind::Number, "DE89 3704 0044 0532 0130 00".into()),
                (SecretKind::Number, "12345678".into()),
                (SecretKind::Name, "Ada Lovelace".into()),
            ]
        );
    }

    #[test]
    fn ignores_ordinary_numbers_and_sentence_starts() {
        assert_eq!(
            kinds("In 1990 they won 3 games, scoring 24 points. The Big Game."),
            vec![(SecretKind::Name, "Big Game".into())]
        );
        assert!(kinds("no secrets here at all").is_empty());
        assert!(kinds("user@localhost and @ alone").is_empty());
    }

    #[test]
    fn every_word_back_is_recovered_whatever_the_order() {
        let rec = words("park yellowstone the national");
        let f = SecretFinding::check(SecretKind::Name, "Yellowstone National Park", &rec);
        assert!(f.recovered, "all three words came back");
        assert!(!f.in_order);
        assert!(!f.partly());
        let f = SecretFinding::check(SecretKind::Name, "Chase Carter", &words("chase carter x"));
        assert!(f.recovered && f.in_order);
        let f = SecretFinding::check(SecretKind::Name, "Dead Rising", &words("rising"));
        assert!(!f.recovered && f.partly());
        assert!((f.partial - 0.5).abs() < 1e-9);
    }

    #[test]
    fn recovery_needs_all_words() {
        let original = "Mail ada.lovelace@example.com today, Charles Babbage said.";
        let f = audit(original, "mail ada lovelace example com today babbage");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].kind, SecretKind::Email);
        assert!(f[0].recovered && f[0].in_order);
        assert!((f[0].partial - 1.0).abs() < 1e-9);
        assert_eq!(f[1].kind, SecretKind::Name);
        assert!(!f[1].recovered, "only babbage came back");
        assert!((f[1].partial - 0.5).abs() < 1e-9);
        let none = audit(original, "nothing");
        assert!(none.iter().all(|s| !s.recovered && s.partial == 0.0));
    }
}
