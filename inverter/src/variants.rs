//! Inflectional variants within the probe's vocabulary ("feared" / "fears",
//! "region" / "regional", "member" / "members").
//!
//! Why the search needs them: variants of one word embed almost alike and the probe
//! scores them alike, so a hypothesis often carries the right stem in the wrong form,
//! and nothing in the residual-guided edits proposes the swap (the residual points at
//! the stem's whole family at once). Offering every word's variants as replacements
//! lets the cosine, which does tell them apart, pick the form.

use std::collections::HashMap;

/// Two words are variants when they share a prefix of at least this many characters
/// and of all but `MAX_TAIL` characters of the shorter one.
const MIN_STEM: usize = 4;
const MAX_TAIL: usize = 2;
/// Variants kept per word (the most frequent ones: the vocabulary is in count order).
const MAX_VARIANTS: usize = 6;

/// For every vocabulary index, the indices of its variants, most frequent first.
pub struct WordVariants {
    of: Vec<Vec<u32>>,
}

impl WordVariants {
    /// `vocab` in the probe's order (most frequent first).
    pub fn new(vocab: &[String]) -> Self {
        let chars: Vec<Vec<char>> = vocab.iter().map(|w| w.chars().collect()).collect();
        let mut groups: HashMap<&[char], Vec<usize>> = HashMap::new();
        for (k, c) in chars.iter().enumerate() {
            if c.len() >= MIN_STEM && c.iter().all(|ch| ch.is_alphabetic()) {
                groups.entry(&c[..MIN_STEM]).or_default().push(k);
            }
        }
        let mut of = vec![Vec::new(); vocab.len()];
        for members in groups.values() {
            for &a in members {
                for &b in members {
                    if a != b && of[a].len() < MAX_VARIANTS && related(&chars[a], &chars[b]) {
                        of[a].push(b as u32);
                    }
                }
            }
        }
        WordVariants { of }
    }

    /// Variants of vocabulary word `k` (empty for an unknown index).
    pub fn of(&self, k: usize) -> &[u32] {
        self.of.get(k).map_or(&[], Vec::as_slice)
    }
}

fn related(a: &[char], b: &[char]) -> bool {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    common >= MIN_STEM.max(a.len().min(b.len()).saturating_sub(MAX_TAIL))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn finds_inflections_not_lookalikes() {
        let v = vocab(&[
            "members",
            "member",
            "interest",
            "interview",
            "feared",
            "fears",
            "region",
            "regional",
            "the",
            "then",
            "1930",
            "1931",
        ]);
        let w = WordVariants::new(&v);
        let names =
            |k: usize| -> Vec<&str> { w.of(k).iter().map(|&j| v[j as usize].as_str()).collect() };
        assert_eq!(names(0), ["member"]);
        assert_eq!(names(1), ["members"]);
        assert!(names(2).is_empty(), "interest/interview share only 'inter'");
        assert_eq!(names(4), ["fears"]);
        assert_eq!(names(6), ["regional"]);
        assert!(names(8).is_empty(), "short words have no variants");
        assert!(names(10).is_empty(), "numbers are not inflected");
        assert!(w.of(99).is_empty());
    }

    #[test]
    fn keeps_the_most_frequent_variants() {
        let v: Vec<String> = (0..10).map(|i| format!("walk{}", "s".repeat(i))).collect();
        let w = WordVariants::new(&v);
        assert_eq!(w.of(0), [1, 2, 3, 4, 5, 6]);
        assert_eq!(w.of(9), [0, 1, 2, 3, 4, 5]);
    }
}
