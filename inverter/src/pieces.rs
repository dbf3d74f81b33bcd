//! Words spelled piece by piece: MiniLM's WordPiece continuation pieces (`##banks`,
//! `##tum`, `##55`), so the search can reach names, e-mail domains and digit strings
//! that are in no dictionary.
//!
//! WordPiece spells an unknown word as a head piece (a whole-word piece such as
//! `fair`) followed by `##` continuation pieces (`fair ##banks`). Mean pooling makes
//! a text's vector roughly the mean of its tokens' contextual vectors, so a
//! hypothesis that holds the head but lacks a continuation has a residual pointing
//! at that continuation. Each continuation is embedded once, as its bare text
//! (`banks`, `tum`, `55`: the pooled vector of a piece out of context is the cheap
//! stand-in available), and ranked by its dot product with the residual; the search
//! then embeds the extended words in context and keeps what raises the cosine, so a
//! word grows one piece per step (`ko` -> `kowal` -> `kowalcz` -> `kowalczyk`).

use std::collections::HashSet;

use crate::error::{Error, Result};

/// A WordPiece vocabulary's lowercase-ASCII pieces: heads (word starts) and
/// continuations (without their `##`).
pub struct PieceVocab {
    heads: HashSet<String>,
    continuations: HashSet<String>,
}

/// Every piece of a WordPiece vocabulary (`tokenizer.json`'s `model.vocab`).
pub fn vocab_of(tokenizer_json: &str) -> Result<Vec<String>> {
    let json: serde_json::Value = serde_json::from_str(tokenizer_json)
        .map_err(|e| Error::invalid("tokenizer", format!("tokenizer.json: {e}")))?;
    let vocab = json
        .pointer("/model/vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| Error::invalid("tokenizer", "tokenizer.json has no model.vocab"))?;
    Ok(vocab.keys().cloned().collect())
}

/// Letters and digits only: the pieces words, domains and numbers are spelled with.
fn spellable(p: &str) -> bool {
    !p.is_empty()
        && (p.bytes().all(|b| b.is_ascii_lowercase()) || p.bytes().all(|b| b.is_ascii_digit()))
}

impl PieceVocab {
    /// From `tokenizer.json`'s `model.vocab`.
    pub fn from_tokenizer(tokenizer_json: &str) -> Result<PieceVocab> {
        let vocab = vocab_of(tokenizer_json)?;
        Ok(Self::from_pieces(vocab.iter().map(String::as_str)))
    }

    pub fn from_pieces<'a>(pieces: impl Iterator<Item = &'a str>) -> PieceVocab {
        let (mut heads, mut continuations) = (HashSet::new(), HashSet::new());
        for p in pieces {
            match p.strip_prefix("##") {
                Some(c) if spellable(c) => {
                    continuations.insert(c.to_string());
                }
                Some(_) => {}
                None if spellable(p) => {
                    heads.insert(p.to_string());
                }
                None => {}
            }
        }
        PieceVocab {
            heads,
            continuations,
        }
    }

    /// The continuation pieces, sorted (what the lexicon embeds and ranks).
    pub fn continuations(&self) -> Vec<String> {
        let mut c: Vec<String> = self.continuations.iter().cloned().collect();
        c.sort();
        c
    }

    /// `piece` is one of the vocabulary's pieces, a head or a continuation (a unit
    /// the address prior, `address_prior.rs`, builds domain labels from).
    pub fn knows(&self, piece: &str) -> bool {
        self.heads.contains(piece) || self.continuations.contains(piece)
    }

    /// WordPiece's greedy longest-match split of a letters-or-digits segment
    /// (`fairbanks` -> `fair`, `banks`); `None` when the pieces cannot spell it.
    pub fn split<'a>(&self, segment: &'a str) -> Option<Vec<&'a str>> {
        let mut out = Vec::new();
        let mut rest = segment;
        while !rest.is_empty() {
            let set = if out.is_empty() {
                &self.heads
            } else {
                &self.continuations
            };
            let end = (1..=rest.len())
                .rev()
                .filter(|&e| rest.is_char_boundary(e))
                .find(|&e| set.contains(&rest[..e]))?;
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
        Some(out)
    }
}

/// Byte ranges of a word's letter and digit runs (`a.b@ada.co`: `a`, `b`, `ada`,
/// `co`): the parts of an e-mail address the search may lengthen one at a time.
pub fn segments(word: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in word.char_indices() {
        match (c.is_ascii_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, word.len()));
    }
    out
}

/// The piece kind a segment continues with: digits after digits, letters after
/// letters.
pub fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `word` with `piece` appended to its segment ending at byte `end`.
pub fn extend(word: &str, end: usize, piece: &str) -> String {
    format!("{}{piece}{}", &word[..end], &word[end..])
}

/// `word` with the segment `start..end` replaced by `by` (a shorter or re-ended
/// spelling).
pub fn respell(word: &str, (start, end): (usize, usize), by: &str) -> String {
    format!("{}{by}{}", &word[..start], &word[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> PieceVocab {
        PieceVocab::from_pieces(
            [
                "fair", "f", "ko", "##banks", "##bank", "##s", "##wal", "##cz", "##yk", "79",
                "##55", "##é", "[CLS]", "Caps",
            ]
            .into_iter(),
        )
    }

    #[test]
    fn splits_greedily_and_refuses_what_it_cannot_spell() {
        let v = vocab();
        assert_eq!(v.split("fairbanks"), Some(vec!["fair", "banks"]));
        assert_eq!(v.split("kowalczyk"), Some(vec!["ko", "wal", "cz", "yk"]));
        assert_eq!(v.split("7955"), Some(vec!["79", "55"]));
        assert_eq!(v.split("fairx"), None);
        assert!(v.knows("fair") && v.knows("banks") && !v.knows("##banks") && !v.knows("x"));
        assert_eq!(
            v.continuations(),
            ["55", "bank", "banks", "cz", "s", "wal", "yk"]
        );
    }

    #[test]
    fn segments_and_edits_keep_the_punctuation() {
        let w = "vasco.fair@ada.co";
        let s = segments(w);
        assert_eq!(s, [(0, 5), (6, 10), (11, 14), (15, 17)]);
        assert_eq!(extend(w, s[2].1, "tum"), "vasco.fair@adatum.co");
        assert_eq!(respell(w, s[1], "fairbanks"), "vasco.fairbanks@ada.co");
        assert_eq!(segments("7955"), [(0, 4)]);
        assert!(is_digits("7955") && !is_digits("79a") && !is_digits(""));
    }
}
