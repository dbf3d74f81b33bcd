//! The word tokenizer shared by the probe's vocabulary, the metrics and the secrets
//! scan: lowercased runs of letters and digits. Punctuation carries almost nothing an
//! attacker wants and the search never emits it, so every score ignores it.

/// Lowercased word tokens of `text`, in order (`"Don't, 20-yard"` -> don t 20 yard).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_and_lowercases() {
        assert_eq!(
            super::words("Don't, 20-yard  Zürich!"),
            ["don", "t", "20", "yard", "zürich"]
        );
        assert!(super::words(" ,. ").is_empty());
    }
}
