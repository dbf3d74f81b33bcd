//! Answer scoring as reading-comprehension benchmarks do it (SQuAD's normalisation):
//! lowercase, drop punctuation and the articles a/an/the, split on whitespace; a
//! prediction is scored against each gold answer and the best score counts. The
//! database's answer evaluation and the trainer's gate both score with these, so
//! their accuracies are the same measure.

use crate::token_f1::word_f1;

/// An answer's words under SQuAD's normalisation: lowercased, every character that is
/// neither alphanumeric nor white space made a space, the articles a/an/the dropped.
/// (Reconstructions are scored on other words; [`crate::token_f1`] says why.)
pub fn answer_words(text: &str) -> Vec<String> {
    let lowered: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect();
    lowered
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(str::to_string)
        .collect()
}

/// 1 when the prediction equals a gold answer after normalisation ([`answer_words`]).
pub fn exact_match(prediction: &str, gold: &[String]) -> f64 {
    let p = answer_words(prediction);
    let hit = gold.iter().any(|g| answer_words(g) == p);
    f64::from(u8::from(hit))
}

/// Token F1: the harmonic mean of the precision and recall of the prediction's words
/// (as a multiset) against a gold answer's, best over the gold answers.
pub fn token_f1(prediction: &str, gold: &[String]) -> f64 {
    let p = answer_words(prediction);
    gold.iter()
        .map(|g| word_f1(&p, &answer_words(g)))
        .fold(0.0, f64::max)
}

/// 1 when a gold answer's words appear, in order and contiguous, in the prediction:
/// credit for a right answer wrapped in a sentence, which small chat models write
/// however firmly they are asked for the bare answer.
pub fn contains_answer(prediction: &str, gold: &[String]) -> f64 {
    let p = answer_words(prediction);
    let hit = gold.iter().any(|g| {
        let g = answer_words(g);
        !g.is_empty() && p.windows(g.len()).any(|w| w == g.as_slice())
    });
    f64::from(u8::from(hit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gold(answers: &[&str]) -> Vec<String> {
        answers.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scores_match_hand_computed_values() {
        assert_eq!(answer_words("The Cat, sat!"), vec!["cat", "sat"]);
        assert_eq!(exact_match("the Catherine.", &gold(&["Catherine"])), 1.0);
        assert_eq!(exact_match("Catherine Hickson", &gold(&["Catherine"])), 0.0);
        // prediction {catherine, hickson}, gold {catherine}: P = 1/2, R = 1, F1 = 2/3.
        let f1 = token_f1("Catherine Hickson", &gold(&["Catherine"]));
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12, "{f1}");
        // The best gold answer counts.
        assert_eq!(token_f1("John", &gold(&["Catherine", "John"])), 1.0);
        // Repeated words count once each: pred {a1 a1 b}, gold {a1 c}: common 1, P 1/3, R 1/2, F1 0.4.
        let f1 = token_f1("x x y", &gold(&["x z"]));
        assert!((f1 - 0.4).abs() < 1e-12, "{f1}");
        assert_eq!(token_f1("", &gold(&["x"])), 0.0);
        // Articles and punctuation are not part of an answer.
        assert_eq!(token_f1("The Eiffel Tower!", &gold(&["eiffel tower"])), 1.0);
        assert_eq!(token_f1("x", &[]), 0.0);
        assert_eq!(
            contains_answer(
                "Her name is Catherine Hickson.",
                &gold(&["catherine hickson"])
            ),
            1.0
        );
        assert_eq!(
            contains_answer("Hickson Catherine", &gold(&["Catherine Hickson"])),
            0.0
        );
    }
}
