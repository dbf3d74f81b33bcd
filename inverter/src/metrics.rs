//! How close a reconstruction is to the original: token F1, BLEU-4, exact match,
//! cosine. Words are [`crate::text::words`]: lowercased, punctuation ignored, every
//! word kept (not SQuAD's answer normalisation: `engram_metrics::token_f1` says why).
//! nDCG@k, the retrieval side of a defence, is `engram_metrics::ranking::ndcg_at`.

use std::collections::HashMap;

use engram_metrics::token_f1::word_f1;

use crate::text::words;

/// Token F1 over word multisets (SQuAD-style) on the inverter's words: overlap
/// counts each word at most as often as it occurs in both texts. 1.0 when both
/// texts are empty.
pub fn token_f1(original: &str, reconstruction: &str) -> f64 {
    word_f1(&words(reconstruction), &words(original))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn token_f1_keeps_articles_and_ignores_punctuation() {
        // overlap: one "the" (not two) + "cat" = 2; P = R = 2/3. Unlike answer
        // scoring, "the" is a word here.
        assert!(close(token_f1("The cat sat.", "the cat the"), 2.0 / 3.0));
        // "don't" is two words, as the search emits them.
        assert!(close(token_f1("Don't stop", "don t stop"), 1.0));
        assert!(close(token_f1(" ,. ", ""), 1.0));
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
}
