//! Answer scoring as reading-comprehension benchmarks do it (SQuAD's normalisation):
//! lowercase, drop punctuation and the articles a/an/the, split on whitespace; a
//! prediction is scored against each gold answer and the best score counts.

/// The normalised words of a text.
pub fn normalize(text: &str) -> Vec<String> {
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

/// 1 when the prediction equals a gold answer after normalisation.
pub fn exact_match(prediction: &str, gold: &[String]) -> f64 {
    let p = normalize(prediction);
    let hit = gold.iter().any(|g| normalize(g) == p);
    f64::from(u8::from(hit))
}

/// Token F1: the harmonic mean of the precision and recall of the prediction's words
/// (as a multiset) against a gold answer's, best over the gold answers.
pub fn token_f1(prediction: &str, gold: &[String]) -> f64 {
    let p = normalize(prediction);
    gold.iter()
        .map(|g| f1_words(&p, &normalize(g)))
        .fold(0.0, f64::max)
}

fn f1_words(prediction: &[String], gold: &[String]) -> f64 {
    if prediction.is_empty() || gold.is_empty() {
        return f64::from(u8::from(prediction == gold));
    }
    let mut left: Vec<&String> = gold.iter().collect();
    let mut common = 0usize;
    for w in prediction {
        if let Some(i) = left.iter().position(|g| *g == w) {
            left.swap_remove(i);
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / prediction.len() as f64;
    let recall = common as f64 / gold.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// 1 when a gold answer's words appear, in order and contiguous, in the prediction:
/// credit for a right answer wrapped in a sentence, which small chat models write
/// however firmly they are asked for the bare answer.
pub fn contains_answer(prediction: &str, gold: &[String]) -> f64 {
    let p = normalize(prediction);
    let hit = gold.iter().any(|g| {
        let g = normalize(g);
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
        assert_eq!(normalize("The Cat, sat!"), vec!["cat", "sat"]);
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
