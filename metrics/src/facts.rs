//! How much of what rag answers with does a closed-book answer carry?
//!
//! Why: an adapter's gate has no gold answers, only the base model's rag answers to
//! held-out logged questions. Token F1 against those whole sentences rewards the
//! teacher's style ("Mobryl Works is a small business that employs ...") as much as
//! its facts: a distilled adapter reached F1 0.52 against the teacher while answering
//! 2 of 32 fictional-base questions right, where rag answered 28. The facts of a rag
//! answer are the words it took from its passages that the question did not already
//! hold (names, numbers, places), leaving out function words; a closed-book answer
//! is judged by the share of them it repeats. The teacher scores 1 by construction,
//! so the share reads as "how close to rag".

use crate::qa::answer_words;

/// Function words: in a passage and an answer alike without carrying a fact.
const FUNCTION_WORDS: &[&str] = &[
    "about", "after", "all", "also", "and", "any", "are", "as", "at", "be", "been", "before",
    "being", "but", "by", "can", "could", "did", "do", "does", "during", "each", "for", "from",
    "had", "has", "have", "he", "her", "here", "him", "his", "how", "i", "in", "into", "is", "it",
    "its", "more", "most", "no", "not", "of", "on", "one", "only", "or", "other", "our", "out",
    "over", "she", "so", "some", "such", "than", "that", "their", "them", "then", "there", "these",
    "they", "this", "those", "to", "today", "under", "up", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "whose", "why", "will", "with", "would", "you",
    "your",
];

/// The fact words of `answer` (SQuAD-normalised, distinct, in answer order): words
/// that occur in one of `passages`, not in `question`, and are no function word.
pub fn fact_words(answer: &str, question: &str, passages: &[String]) -> Vec<String> {
    let asked = answer_words(question);
    let read: std::collections::HashSet<String> =
        passages.iter().flat_map(|p| answer_words(p)).collect();
    let mut facts: Vec<String> = Vec::new();
    for w in answer_words(answer) {
        let keep = read.contains(&w)
            && !asked.contains(&w)
            && !FUNCTION_WORDS.contains(&w.as_str())
            && !facts.contains(&w);
        if keep {
            facts.push(w);
        }
    }
    facts
}

/// The share of `facts` that `prediction` contains (as normalised words); None when
/// there is no fact to recall.
pub fn fact_recall(prediction: &str, facts: &[String]) -> Option<f64> {
    if facts.is_empty() {
        return None;
    }
    let said: std::collections::HashSet<String> = answer_words(prediction).into_iter().collect();
    let hit = facts.iter().filter(|f| said.contains(*f)).count();
    Some(hit as f64 / facts.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_passage_words_the_question_did_not_hold() {
        let passage = vec!["Mobryl Works was founded in 1974 by Feskie Kaezoun in the town of Bruskouskholm. Today the firm employs 925 people.".to_string()];
        let facts = fact_words(
            "Mobryl Works is a small, family-owned business that employs 925 people.",
            "What is the size of the workforce at Mobryl Works?",
            &passage,
        );
        // "small", "family-owned", "business" are not in the passage; "mobryl",
        // "works" are in the question; "is"/"that" are function words.
        assert_eq!(facts, ["employs", "925", "people"]);
        assert_eq!(
            fact_recall("The workforce at Mobryl Works is 425 people.", &facts),
            Some(1.0 / 3.0)
        );
        assert_eq!(fact_recall("It employs 925 people", &facts), Some(1.0));
        assert_eq!(fact_recall("anything", &[]), None);
        let who = fact_words(
            "Mobryl Works was founded by Feskie Kaezoun in 1974.",
            "Which entrepreneur launched Mobryl Works?",
            &passage,
        );
        assert_eq!(who, ["founded", "feskie", "kaezoun", "1974"]);
        assert_eq!(
            fact_recall("Mobryl Works was founded by Thitrarford in 1972.", &who),
            Some(0.25)
        );
    }
}
