//! How close a reconstruction is to the original: token F1, BLEU-4, exact match,
//! cosine, plus nDCG@k for the retrieval side of a defence. Words are
//! [`crate::text::words`]: lowercased, punctuation ignored.

use std::collections::HashMap;

use crate::text::words;

/// Token F1 over word multisets (SQuAD-style): overlap counts each word at most as
/// often as it occurs in both texts. 1.0 when both texts are empty.
pub fn token_f1(original: &str, reconstruction: &str) -> f64 {
    f1_of_words(&words(original), &words(reconstruction))
}

/// [`token_f1`] on already tokenised words.
pub fn f1_of_words(original: &[String], reconstruction: &[String]) -> f64 {
    if original.is_empty() && reconstruction.is_empty() {
        return 1.0;
    }
    let overlap = overlap(original, reconstruction);
    if overlap == 0 {
        return 0.0;
    }
    let p = overlap as f64 / reconstruction.len() as f64;
    let r = overlap as f64 / original.len() as f64;
    2.0 * p * r / (p + r)
}

/// Size of the multiset intersection of two word lists.
pub fn overlap(a: &[String], b: &[String]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in a {
        *counts.entry(w).or_default() += 1;
    }
    b.iter()
        .filter(|w| match counts.get_mut(w.as_str()) {
            Some(c) if *c > 0 => {
                *c -= 1;
                true
            }
            _ => false,
        })
        .count()
}

/// Sentence BLEU-4 on words, 0-100: geometric mean of modified 1- to 4-gram
/// precisions times the brevity penalty. Orders 2-4 are add-one smoothed (Lin & Och
/// 2004) so one missing 4-gram does not zero a sentence; unigrams are not.
pub fn bleu4(original: &str, reconstruction: &str) -> f64 {
    let (r, h) = (words(original), words(reconstruction));
    if h.is_empty() || r.is_empty() {
        return 0.0;
    }
    let mut log_sum = 0.0;
    for n in 1..=4 {
        let (matched, total) = ngram_matches(&r, &h, n);
        let (m, t) = if n == 1 {
            (matched as f64, total as f64)
        } else {
            (matched as f64 + 1.0, total as f64 + 1.0)
        };
        if m == 0.0 {
            return 0.0;
        }
        log_sum += (m / t).ln() / 4.0;
    }
    let (c, rl) = (h.len() as f64, r.len() as f64);
    let bp = if c < rl { (1.0 - rl / c).exp() } else { 1.0 };
    100.0 * bp * log_sum.exp()
}

/// Clipped n-gram matches of `hyp` against `reference`, and `hyp`'s n-gram count.
fn ngram_matches(reference: &[String], hyp: &[String], n: usize) -> (usize, usize) {
    let mut counts: HashMap<&[String], usize> = HashMap::new();
    for g in reference.windows(n) {
        *counts.entry(g).or_default() += 1;
    }
    let mut matched = 0;
    let total = hyp.len().saturating_sub(n - 1);
    for g in hyp.windows(n) {
        if let Some(c) = counts.get_mut(g) {
            if *c > 0 {
                *c -= 1;
                matched += 1;
            }
        }
    }
    (matched, total)
}

/// Whether the two texts have the same words in the same order.
pub fn exact_match(original: &str, reconstruction: &str) -> bool {
    words(original) == words(reconstruction)
}

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    engram_kernels::cosine_similarity(a, b)
}

/// nDCG@k: the discounted gain of the relevant documents in the top k,
/// sum of 1 / log2(rank + 1), divided by the best possible (all relevant
/// documents first). 0 when nothing is relevant. (The database's retrieval
/// evaluation re-exports this one.)
pub fn ndcg_at<T: PartialEq>(ranked: &[T], relevant: &[T], k: usize) -> f64 {
    let gain = |rank: usize| 1.0 / (rank as f64 + 1.0).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, id)| relevant.contains(id))
        .map(|(i, _)| gain(i + 1))
        .sum();
    let ideal: f64 = (1..=relevant.len().min(k)).map(gain).sum();
    if ideal > 0.0 {
        dcg / ideal
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn token_f1_counts_multisets() {
        // overlap: one "the" (not two) + "cat" = 2; P = R = 2/3.
        assert!(close(token_f1("The cat sat.", "the cat the"), 2.0 / 3.0));
        // P = 1/1, R = 1/4 -> 2 * 0.25 / 1.25 = 0.4
        assert!(close(token_f1("a b c d", "c"), 0.4));
        assert!(close(token_f1("a b", "c d"), 0.0));
        assert!(close(token_f1("", ""), 1.0));
        assert!(close(token_f1("a", ""), 0.0));
    }

    #[test]
    fn bleu_by_hand() {
        assert!(close(
            bleu4("the cat sat on the mat", "the cat sat on the mat"),
            100.0
        ));
        // p1 = 5/6, p2 = (3+1)/(5+1), p3 = (2+1)/(4+1), p4 = (1+1)/(3+1), BP = 1:
        // (5/6 * 4/6 * 3/5 * 2/4)^(1/4) = (1/6)^(1/4) = 0.638943
        assert!(close(
            bleu4("the cat sat on a mat", "the cat sat on the mat"),
            63.8943
        ));
        // Brevity: hyp "the cat" (2) vs 4 words: p1 = 1, p2 = 2/2, p3 = 1/1, p4 = 1/1,
        // BP = exp(1 - 4/2) = 0.367879
        assert!(close(bleu4("the cat sat down", "the cat"), 36.7879));
        assert!(close(bleu4("a b c", "x y z"), 0.0));
        assert!(close(bleu4("a b c", ""), 0.0));
    }

    #[test]
    fn exact_match_ignores_case_and_punctuation() {
        assert!(exact_match("Paris, France.", "paris france"));
        assert!(!exact_match("paris france", "france paris"));
    }

    #[test]
    fn cosine_by_hand() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn ndcg_by_hand() {
        // rank 2: 1 / log2(3) = 0.630930
        assert!(close(ndcg_at(&["a", "b"], &["b"], 10), 0.630_930));
        assert!(close(ndcg_at(&["a", "b"], &["z"], 10), 0.0));
    }
}
