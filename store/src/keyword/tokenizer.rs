//! Text to BM25 terms. Deliberately simple and language-agnostic: Unicode
//! lowercasing, splitting on anything that is not a letter or a digit (Unicode
//! character classes, so "Zürich", "Москва" and "東京" are words too), each CJK
//! ideograph or kana as a term of its own (those scripts write no spaces), and
//! a light English plural stemmer (Harman's S-stemmer).
//!
//! Why the S-stemmer and not Porter: it only folds plurals ("passages" ->
//! "passage", "cities" -> "city"), which almost never merges unrelated words,
//! and measured on the DROP passages (keyword mode, `engram eval retrieval`) it
//! was worth +0.6 points of nDCG@10 over no stemming (see README).

/// Longest term kept, in bytes; longer runs (base64, hashes) are cut so one
/// document cannot create huge storage keys.
const MAX_TERM_BYTES: usize = 64;

/// Splits `text` into lowercase, stemmed terms in text order (repeats kept).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_ideograph(c) {
            flush(&mut word, &mut terms);
            terms.extend(c.to_lowercase().map(String::from));
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word, &mut terms);
        }
    }
    flush(&mut word, &mut terms);
    terms
}

fn flush(word: &mut String, terms: &mut Vec<String>) {
    if word.is_empty() {
        return;
    }
    let mut term = stem(word);
    if term.len() > MAX_TERM_BYTES {
        let mut cut = MAX_TERM_BYTES;
        while !term.is_char_boundary(cut) {
            cut -= 1;
        }
        term.truncate(cut);
    }
    terms.push(term);
    word.clear();
}

/// Harman's S-stemmer ("How effective is suffixing?", JASIS 1991), applied to
/// words of four letters or more: -ies -> -y (not -eies, -aies), -es -> -e (not
/// -aes, -ees, -oes), -s -> "" (not -us, -ss). The second and third rules both
/// drop the final s, and every word the second one spares falls to the third
/// ("goes" -> "goe"), so they are one rule here.
fn stem(word: &str) -> String {
    if word.len() < 4 || !word.is_ascii() {
        return word.to_string();
    }
    let ends = |s: &str| word.ends_with(s);
    let cut = |n: usize| word[..word.len() - n].to_string();
    if ends("ies") && !ends("eies") && !ends("aies") {
        cut(3) + "y"
    } else if ends("s") && !ends("us") && !ends("ss") {
        cut(1)
    } else {
        word.to_string()
    }
}

/// Scripts written without spaces: each character is a term. Han ideographs
/// (CJK Unified, extension A, compatibility), hiragana and katakana.
fn is_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2A6DF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_non_alphanumerics_and_lowercases() {
        assert_eq!(
            tokenize("Hello, WORLD! It's 2024-01-05."),
            ["hello", "world", "it", "s", "2024", "01", "05"]
        );
        assert_eq!(tokenize("  \n\t!!! "), Vec::<String>::new());
    }

    #[test]
    fn unicode_letters_are_words() {
        assert_eq!(
            tokenize("Zürich ÉCOLE Straße"),
            ["zürich", "école", "straße"]
        );
        assert_eq!(tokenize("МОСКВА—город"), ["москва", "город"]);
        assert_eq!(
            tokenize("東京は大きい"),
            ["東", "京", "は", "大", "き", "い"]
        );
        assert_eq!(tokenize("x東y"), ["x", "東", "y"]);
    }

    #[test]
    fn plurals_fold_to_the_singular() {
        let stems: Vec<String> = [
            "cities", "passages", "cats", "glass", "corpus", "is", "his", "does", "goes", "plays",
        ]
        .iter()
        .map(|w| stem(w))
        .collect();
        assert_eq!(
            stems,
            ["city", "passage", "cat", "glass", "corpus", "is", "his", "doe", "goe", "play"]
        );
        assert_eq!(tokenize("Cities"), tokenize("city"));
    }

    #[test]
    fn long_runs_are_cut_on_a_char_boundary() {
        let t = tokenize(&"é".repeat(100));
        assert_eq!(t.len(), 1);
        assert_eq!(t[0], "é".repeat(32));
        assert_eq!(tokenize(&"a".repeat(200))[0].len(), MAX_TERM_BYTES);
    }
}
