//! Training and evaluation text: windows cut from passages, the held-out rule, and
//! file fingerprints for the manifest.
//!
//! Held-out rule: a Quoref passage belongs to the evaluation set when the FNV-1a hash
//! of its id is 0 mod 10; its text never reaches the probe. Recorded in the manifest.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Whether a passage with this id is held out of training (about one in ten).
pub fn is_held_out(id: &str) -> bool {
    fnv1a(id.as_bytes()).is_multiple_of(10)
}

/// The rule [`is_held_out`] applies, in words, for manifests and reports.
pub const HELD_OUT_RULE: &str = "Quoref passages with fnv1a64(id) % 10 == 0 are held out for evaluation; DROP passages and the other Quoref passages train";

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Windows of `text`, each starting at a sentence start and growing word by word
/// while `tokens(window)` stays within `max_tokens` (`tokens` counts the encoder's
/// tokens of one word; the sum over words is the window's count without specials).
/// Windows do not overlap; the last, shorter one is kept when it has at least
/// `min_words` words.
pub fn windows(
    text: &str,
    max_tokens: usize,
    min_words: usize,
    tokens: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for sentence in sentences(text) {
        let mut cur: Vec<&str> = Vec::new();
        let mut used = 0;
        for w in sentence.split_whitespace() {
            let t = tokens(w).max(1);
            if used + t > max_tokens && !cur.is_empty() {
                out.push(cur.join(" "));
                cur.clear();
                used = 0;
            }
            cur.push(w);
            used += t;
        }
        if cur.len() >= min_words {
            out.push(cur.join(" "));
        }
    }
    out
}

/// The first window of exactly-filled length: sentences are joined until the window
/// is full, so evaluation texts are all close to `max_tokens` long.
pub fn first_full_window(
    text: &str,
    max_tokens: usize,
    tokens: &dyn Fn(&str) -> usize,
) -> Option<String> {
    let mut cur: Vec<&str> = Vec::new();
    let mut used = 0;
    for w in text.split_whitespace() {
        let t = tokens(w).max(1);
        if used + t > max_tokens {
            return (used * 10 >= max_tokens * 9).then(|| cur.join(" "));
        }
        cur.push(w);
        used += t;
    }
    None
}

/// Splits on `. `, `! `, `? ` (and line breaks) — enough for encyclopaedic prose.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    for i in 0..b.len() {
        let end = matches!(b[i], b'.' | b'!' | b'?')
            && (i + 1 == b.len() || b[i + 1].is_ascii_whitespace())
            || b[i] == b'\n';
        if end {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + 1;
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// SHA-256 (hex) and line count of a file, for the manifest.
pub fn fingerprint(path: &Path) -> Result<(String, usize)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    let digest = Sha256::digest(&bytes);
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), lines))
}

/// SHA-256 (hex) of a list of texts (each followed by a newline).
pub fn texts_digest(texts: &[String]) -> String {
    let mut h = Sha256::new();
    for t in texts {
        h.update(t.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_sentences_and_budget() {
        let one = |_: &str| 1;
        let w = windows("A b c d e. F g! H", 3, 2, &one);
        assert_eq!(w, ["A b c", "d e.", "F g!"]);
        assert_eq!(
            first_full_window("a b c d. e f", 4, &one).as_deref(),
            Some("a b c d.")
        );
        assert_eq!(first_full_window("a b", 4, &one), None);
    }

    #[test]
    fn held_out_rule_is_stable() {
        // fnv1a64("q-0") and friends: fixed values, so the split never drifts.
        let held: Vec<bool> = (0..40).map(|i| is_held_out(&format!("q-{i}"))).collect();
        let n = held.iter().filter(|&&h| h).count();
        assert!((1..=10).contains(&n), "about one in ten: {n}");
        assert_eq!(
            held,
            (0..40)
                .map(|i| is_held_out(&format!("q-{i}")))
                .collect::<Vec<_>>()
        );
    }
}
