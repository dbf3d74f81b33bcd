//! Pseudo-queries for a collection's self-check ([`crate::self_check`]): queries cut
//! from the collection's own documents, in several kinds, with no model and no labels.
//!
//! Why several kinds: one kind of pseudo-query rewards one kind of encoder. A first
//! sentence with words dropped shares its document's rarest tokens; a short span is
//! closer to what people type; another sentence of the same document is the nearest
//! thing to a paraphrase a document holds. The check asks a context to win on every
//! kind, not only on the sum, so a variant that games one kind does not go live.

use serde::{Deserialize, Serialize};

/// How a pseudo-query was cut from its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The first sentence (a title, often), at most 16 words, about a third dropped.
    Title,
    /// Another sentence (for a one-sentence text, its other half), at most 16 words,
    /// about a third dropped.
    Sentence,
    /// 3 to 6 consecutive words from anywhere in the text, none dropped.
    Span,
}

impl Kind {
    /// Every kind, in the order a document's queries are cut and reports list them.
    pub const ALL: [Kind; 3] = [Kind::Title, Kind::Sentence, Kind::Span];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Title => "title",
            Kind::Sentence => "sentence",
            Kind::Span => "span",
        }
    }
}

/// About a third of `words` kept out at random (all of them kept when fewer than two
/// would remain), joined by spaces.
fn drop_words(words: &[&str], rng: &mut engram_kernels::SplitMix) -> String {
    let kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|_| rng.unit() >= 1.0 / 3.0)
        .collect();
    if kept.len() >= 2 {
        kept
    } else {
        words.to_vec()
    }
    .join(" ")
}

/// At most `n` consecutive words of `words`, starting at random.
fn window<'a, 'w>(
    words: &'a [&'w str],
    n: usize,
    rng: &mut engram_kernels::SplitMix,
) -> &'a [&'w str] {
    let start = (rng.next_u64() as usize) % (words.len().saturating_sub(n) + 1);
    &words[start..(start + n).min(words.len())]
}

/// One pseudo-query of each kind from `text`, in [`Kind::ALL`]'s order; empty for a
/// text with no sentence of 4 words or more.
pub fn cut(text: &str, rng: &mut engram_kernels::SplitMix) -> Vec<(Kind, String)> {
    let sentences: Vec<Vec<&str>> = text
        .split_inclusive(['.', '?', '!', '\n'])
        .map(|s| s.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= 4)
        .collect();
    let Some(first) = sentences.first() else {
        return Vec::new();
    };
    let second: &[&str] = if sentences.len() > 1 {
        &sentences[1 + (rng.next_u64() as usize) % (sentences.len() - 1)]
    } else {
        let half = first.len().div_ceil(2);
        &first[first.len() - half..]
    };
    let all: Vec<&str> = text.split_whitespace().collect();
    let span_len = 3 + (rng.next_u64() as usize) % 4;
    vec![
        (Kind::Title, drop_words(window(first, 16, rng), rng)),
        (Kind::Sentence, drop_words(window(second, 16, rng), rng)),
        (Kind::Span, window(&all, span_len, rng).join(" ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_cut_from_the_document() {
        let mut rng = engram_kernels::SplitMix::new(1);
        let text = "Visa Secure confirms online purchases. A one-time code is sent to your phone by the bank. Fees vary.";
        let qs = cut(text, &mut rng);
        assert_eq!(
            qs.iter().map(|q| q.0).collect::<Vec<_>>(),
            Kind::ALL.to_vec()
        );
        let words: Vec<&str> = text.split_whitespace().collect();
        for (kind, q) in &qs {
            assert!(q.split(' ').count() >= 2, "{kind:?}: {q}");
            assert!(q.split(' ').all(|w| words.contains(&w)), "{kind:?}: {q}");
        }
        // The title comes from the first sentence; "Fees vary." is too short.
        assert!(
            qs[0].1.split(' ').all(|w| text[..38].contains(w)),
            "{}",
            qs[0].1
        );
        assert!(
            qs[1].1.split(' ').all(|w| text[38..].contains(w)),
            "{}",
            qs[1].1
        );
        // A span is consecutive words, none dropped.
        assert!(text.contains(&qs[2].1), "{}", qs[2].1);
        assert!((3..=6).contains(&qs[2].1.split(' ').count()));
        assert!(cut("too short", &mut rng).is_empty());
    }

    #[test]
    fn a_one_sentence_text_gives_its_second_half_as_the_sentence() {
        let mut rng = engram_kernels::SplitMix::new(2);
        let qs = cut("one two three four five six", &mut rng);
        assert_eq!(qs.len(), 3);
        assert!(qs[1]
            .1
            .split(' ')
            .all(|w| ["four", "five", "six"].contains(&w)));
    }
}
