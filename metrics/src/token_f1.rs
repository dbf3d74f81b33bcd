//! Token F1 over word lists: the one implementation behind every token F1 Engram
//! prints (answer accuracy in `engram eval answers` and the trainer's gate, and the
//! leakage audit's reconstruction scores).
//!
//! The core, [`word_f1`], takes words already normalised, because the two callers
//! rightly normalise differently and must keep doing so for their figures to stay
//! comparable with what they were and with the benchmarks they follow:
//!
//! - answers ([`crate::qa::answer_words`]): SQuAD's answer normalisation (lowercase,
//!   punctuation out, the articles a/an/the dropped), because answer F1 is compared
//!   with reading-comprehension results that all score this way, and "the Eiffel
//!   Tower" against "Eiffel Tower" is a right answer;
//! - reconstructions (the inverter's `text::words`): lowercased runs of letters and
//!   digits with every word kept, articles included, because that is the vocabulary
//!   the inverter's probe and search produce, and a recovered "the" is recovered text.

use std::collections::HashMap;

/// Token F1 of `prediction` against `reference` as word multisets (SQuAD-style): a
/// word counts as shared at most as often as it occurs in both. Precision is over the
/// prediction's words, recall over the reference's; the harmonic mean is the same
/// either way round. 1 when both are empty, 0 when only one is.
pub fn word_f1(prediction: &[String], reference: &[String]) -> f64 {
    if prediction.is_empty() && reference.is_empty() {
        return 1.0;
    }
    let common = overlap(prediction, reference);
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / prediction.len() as f64;
    let recall = common as f64 / reference.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Size of the multiset intersection of two word lists.
fn overlap(a: &[String], b: &[String]) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    fn f1(prediction: &str, reference: &str) -> f64 {
        word_f1(&words(prediction), &words(reference))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn counts_words_as_multisets() {
        // Shared: one "the" (not two) and "cat" = 2; P = R = 2/3.
        assert!(close(f1("the cat the", "the cat sat"), 2.0 / 3.0));
        // pred {x x y}, reference {x z}: shared 1, P 1/3, R 1/2, F1 0.4.
        assert!(close(f1("x x y", "x z"), 0.4));
        // P = 1/1, R = 1/4: 2 * 0.25 / 1.25 = 0.4.
        assert!(close(f1("c", "a b c d"), 0.4));
        // pred {catherine, hickson}, reference {catherine}: P = 1/2, R = 1, F1 = 2/3.
        assert!(close(f1("catherine hickson", "catherine"), 2.0 / 3.0));
        assert!(close(f1("a b", "c d"), 0.0));
    }

    #[test]
    fn empty_lists() {
        assert_eq!(f1("", ""), 1.0);
        assert_eq!(f1("a", ""), 0.0);
        assert_eq!(f1("", "a"), 0.0);
    }

    #[test]
    fn symmetric_to_the_bit() {
        // The callers pass (prediction, reference) in different orders; the figure
        // must not depend on it.
        for (a, b) in [("a b c", "a"), ("x x y", "x z q r"), ("p q", "q p p")] {
            assert_eq!(f1(a, b).to_bits(), f1(b, a).to_bits());
        }
    }
}
