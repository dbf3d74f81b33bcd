//! Pseudo-queries for a collection's self-check ([`crate::self_check`]): queries cut
//! from the collection's own documents, in several kinds, with no model and no labels.
//!
//! Why several kinds: one kind of pseudo-query rewards one kind of encoder. A first
//! sentence with words dropped shares its document's rarest tokens; a short span is
//! closer to what people type; another sentence of the same document is the nearest
//! thing to a paraphrase a document holds. The check asks a context to win on every
//! kind, not only on the sum, so a variant that games one kind does not go live.
//!
//! Those three ask for one document, by its own words. Real queries on a templated
//! corpus name an entity and a topic and want every document about both; a fourth
//! kind, [`Kind::Pair`], imitates that: the document's most widespread entity-like
//! word and its rarest topic-like word, relevant wherever both occur ([`pairs`]). It
//! is a kind apart: the self-check weighs it alone, and for centring only (see
//! [`crate::self_check`] for why and on what evidence).

use std::collections::{HashMap, HashSet};

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
    /// Two words, entity-like and topic-like; every document holding both is relevant.
    Pair,
}

impl Kind {
    /// The kinds [`cut`] makes, in the order it makes them.
    pub const CUT: [Kind; 3] = [Kind::Title, Kind::Sentence, Kind::Span];
    /// Every kind, in the order reports list them.
    pub const ALL: [Kind; 4] = [Kind::Title, Kind::Sentence, Kind::Span, Kind::Pair];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Title => "title",
            Kind::Sentence => "sentence",
            Kind::Span => "span",
            Kind::Pair => "pair",
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

/// One pseudo-query of each kind from `text`, in [`Kind::CUT`]'s order; empty for a
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

/// Words too common in any text to name an entity or a topic.
const STOP: [&str; 27] = [
    "a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "is", "are", "be", "by", "with",
    "at", "from", "your", "you", "it", "its", "as", "this", "that", "can", "if", "not",
];

/// `text`'s words: runs of letters, digits and `'&.-`, trimmed to start and end with a
/// letter or digit.
fn words(text: &str) -> Vec<&str> {
    let inner = |c: char| c.is_ascii_alphanumeric() || "'&.-".contains(c);
    text.split(|c: char| !inner(c))
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect()
}

/// A [`Kind::Pair`] pseudo-query for each of `texts[d]`, `d` in `from`, with the indices
/// of `texts` holding both its words (its own among them); none for a text without
/// both kinds of word. The entity-like word: capitalised, not the text's first word,
/// in at least two texts, the one in most texts (an entity's name recurs across its
/// documents; a capitalised filler does not). The topic-like word: lower-case, longer
/// than 3 letters, in at least two texts, the one in fewest (the template word that
/// narrows the entity's documents to one kind). Words compare case-blind; ties go to
/// the earlier word. Deterministic: no words are dropped at random.
pub fn pairs(texts: &[&str], from: &[usize]) -> Vec<(String, Vec<usize>)> {
    let sets: Vec<HashSet<String>> = texts
        .iter()
        .map(|t| words(t).iter().map(|w| w.to_lowercase()).collect())
        .collect();
    let mut df: HashMap<&str, usize> = HashMap::new();
    for set in &sets {
        for w in set {
            *df.entry(w.as_str()).or_default() += 1;
        }
    }
    let freq = |w: &str| df.get(w.to_lowercase().as_str()).copied().unwrap_or(0);
    let content = |w: &str| freq(w) >= 2 && !STOP.contains(&w.to_lowercase().as_str());
    let first_char = |w: &str| w.chars().next().unwrap_or(' ');
    from.iter()
        .filter_map(|&d| {
            let ws = words(texts[d]);
            let entity = ws
                .iter()
                .skip(1)
                .filter(|w| first_char(w).is_uppercase() && content(w))
                .fold(None, |best: Option<&&str>, w| match best {
                    Some(b) if freq(b) >= freq(w) => best,
                    _ => Some(w),
                })?;
            let topic = ws
                .iter()
                .filter(|w| first_char(w).is_lowercase() && w.len() > 3 && content(w))
                .fold(None, |best: Option<&&str>, w| match best {
                    Some(b) if freq(b) <= freq(w) => best,
                    _ => Some(w),
                })?;
            let (e, t) = (entity.to_lowercase(), topic.to_lowercase());
            let relevant = (0..texts.len())
                .filter(|&j| sets[j].contains(&e) && sets[j].contains(&t))
                .collect();
            Some((format!("{entity} {topic}"), relevant))
        })
        .collect()
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
            Kind::CUT.to_vec()
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

    #[test]
    fn a_pair_is_the_most_widespread_entity_and_the_rarest_topic_word() {
        let texts = [
            "Cancel a Marriott booking for free until 48 hours before arrival.",
            "Transfer Marriott Bonvoy points to airline miles.",
            "Cancel a Hilton booking for free until 24 hours before arrival.",
            "Prepaid Marriott rates save 20 percent but cannot be refunded after booking.",
            "Your Hilton Honors points never expire.",
        ];
        assert_eq!(
            words("Fees: 2.5% (pet-friendly) IHG's app...")
                .into_iter()
                .collect::<Vec<_>>(),
            ["Fees", "2.5", "pet-friendly", "IHG's", "app"]
        );
        let got = pairs(&texts, &[0, 1, 4]);
        // "Marriott" (3 texts) over "Cancel" (first word); "booking" (3 texts) is more
        // widespread than "free", "until", "hours", "before", "arrival" (2 each): the
        // first of those, "free", is taken.
        assert_eq!(got[0], ("Marriott free".to_string(), vec![0]));
        // The first word is never the entity ("Transfer"); of "points", "airline" and
        // "miles" only "points" is in two texts.
        assert_eq!(got[1], ("Marriott points".to_string(), vec![1]));
        // "Hilton" is in two texts, "Honors" in one; "points" is the only topic word in
        // two; the other "Hilton" text has no "points".
        assert_eq!(got[2], ("Hilton points".to_string(), vec![4]));
        // No capitalised word after the first, or no topic word in two texts: no pair.
        assert!(pairs(
            &["Alpha beta gamma delta.", "Alpha beta gamma delta."],
            &[0]
        )
        .is_empty());
        let twice = ["Pay with Visa cards for rewards."; 2];
        assert_eq!(
            pairs(&twice, &[0, 1]),
            vec![("Visa cards".to_string(), vec![0, 1]); 2]
        );
    }
}
