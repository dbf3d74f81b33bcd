//! Edit proposals that can spell secrets: lexicon words (WordPiece pieces and names,
//! `lexicon.rs`) the residual points at, e-mail addresses built from the name words
//! a hypothesis already holds, and digit strings joined from its number pieces.
//!
//! The probe's proposals (`search.rs`) cover ordinary prose; these cover what the
//! audit scans for. E-mail local parts follow the forms people and companies use
//! (`first.last`, `firstlast`, `first_last`, `flast`); domains are the dictionary's
//! (`inverter/data/domains.txt`) the residual points at, and `WORD.com` / `WORD.org`
//! for the lexicon's best non-name words.

use engram_kernels::SplitMix;

use crate::lexicon::Lexicon;
use crate::pieces::segments;
use crate::spelling::{self, Speller};

/// Lexicon words tried as insertions per beam member.
const INSERTIONS: usize = 12;
/// Lexicon words tried in place of each of the worst positions.
const REPLACEMENTS: usize = 3;
/// Worst positions (by the probe's residual) the lexicon may replace.
const REPLACED_POSITIONS: usize = 3;
/// E-mail proposals per beam member.
const EMAILS: usize = 16;
/// Top-level domains an address in the hypothesis may switch to (its domain's
/// other labels are spelled piece by piece, `spelling.rs`).
pub(crate) const TLDS: [&str; 7] = ["com", "org", "net", "co", "io", "info", "biz"];
/// Dictionary domains (best by the residual) every e-mail guess tries.
const DICTIONARY_DOMAINS: usize = 4;
/// Lexicon words tried as `WORD.com` / `WORD.org` domains.
const DOMAIN_WORDS: usize = 2;
/// Name words of a hypothesis paired into local parts (the first ones).
const PAIRED_NAMES: usize = 4;

/// E-mail local parts from a first and a last name.
pub fn local_parts(first: &str, last: &str) -> Vec<String> {
    let initial: String = first.chars().take(1).collect();
    vec![
        format!("{first}.{last}"),
        format!("{first}{last}"),
        format!("{first}_{last}"),
        format!("{initial}{last}"),
    ]
}

/// Proposals for the hypothesis `words` whose residual (target minus its embedding)
/// is `residual`; `worst` are its positions the probe finds most superfluous.
pub fn proposals(
    sp: &Speller,
    words: &[String],
    residual: &[f32],
    worst: &[usize],
    max_words: usize,
    rng: &mut SplitMix,
) -> Vec<Vec<String>> {
    let (lex, open) = (sp.lex, sp.open);
    let n = words.len();
    let top = lex.top(residual, INSERTIONS, |w| words.iter().any(|x| x == w));
    let mut out = Vec::new();
    if n < max_words {
        for &k in &top {
            let mut c = words.to_vec();
            c.insert(rng.below(n + 1), lex.word(k).to_string());
            out.push(c);
        }
    }
    for &i in worst.iter().take(REPLACED_POSITIONS) {
        for &k in top.iter().take(REPLACEMENTS) {
            let mut c = words.to_vec();
            c[i] = lex.word(k).to_string();
            out.push(c);
        }
    }
    out.extend(emails(lex, words, residual, &top, max_words, open, rng));
    out.extend(joined_numbers(words));
    out.extend(spelling::proposals(sp, words, residual, rng));
    out
}

/// E-mail local parts from every ordered pair of the first `PAIRED_NAMES` name
/// words of `words` (dictionary names, then other letter words the probe cannot
/// propose: names spelled from pieces), in every form, each with the position of
/// the pair's later word.
pub(crate) fn name_locals(
    lex: &Lexicon,
    words: &[String],
    open: &dyn Fn(&str) -> bool,
) -> Vec<(String, usize)> {
    let names: Vec<usize> = (0..words.len())
        .filter(|&i| lex.is_name(&words[i]))
        .chain(
            (0..words.len())
                .filter(|&i| !lex.is_name(&words[i]) && is_name_word(lex, open, &words[i])),
        )
        .take(PAIRED_NAMES)
        .collect();
    let mut locals: Vec<(String, usize)> = Vec::new();
    for &a in &names {
        for &b in &names {
            if a != b {
                locals.extend(
                    local_parts(&words[a], &words[b])
                        .into_iter()
                        .map(|l| (l, a.max(b))),
                );
            }
        }
    }
    locals
}

/// A word that may be a name: in the name dictionary, or a lowercase word the probe
/// cannot propose (a name spelled from pieces).
pub(crate) fn is_name_word(lex: &Lexicon, open: &dyn Fn(&str) -> bool, w: &str) -> bool {
    lex.is_name(w) || (open(w) && !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Domains an e-mail guess tries: the dictionary's best by `residual`, then
/// `WORD.com` / `WORD.org` for the best non-name words of `top` (lexicon indices,
/// best first).
pub(crate) fn domain_guesses(lex: &Lexicon, residual: &[f32], top: &[usize]) -> Vec<String> {
    let mut domains: Vec<String> = lex
        .top_domains(residual, DICTIONARY_DOMAINS)
        .into_iter()
        .map(String::from)
        .collect();
    for &k in top
        .iter()
        .filter(|&&k| !lex.is_name(lex.word(k)))
        .take(DOMAIN_WORDS)
    {
        domains.push(format!("{}.com", lex.word(k)));
        domains.push(format!("{}.org", lex.word(k)));
    }
    domains
}

/// E-mail guesses. Without an address in the hypothesis: every ordered pair of its
/// first name words (dictionary names, then other letter words the probe cannot
/// propose: names spelled from pieces), in every local-part form, at the
/// residual's best domains, inserted after the pair. With one: the address with
/// another domain, another top-level domain, or another local part from the pairs,
/// so the search can fix one part at a time.
fn emails(
    lex: &Lexicon,
    words: &[String],
    residual: &[f32],
    top: &[usize],
    max_words: usize,
    open: &dyn Fn(&str) -> bool,
    rng: &mut SplitMix,
) -> Vec<Vec<String>> {
    let locals = name_locals(lex, words, open);
    let domains = domain_guesses(lex, residual, top);
    let mut guesses: Vec<Vec<String>> = Vec::new();
    match words.iter().position(|w| w.contains('@')) {
        Some(i) => {
            let (local, domain) = words[i].split_once('@').unwrap_or((&words[i], ""));
            for d in domains.iter().filter(|d| *d != domain) {
                let mut c = words.to_vec();
                c[i] = format!("{local}@{d}");
                guesses.push(c);
            }
            for (l, _) in locals.iter().filter(|(l, _)| l != local) {
                let mut c = words.to_vec();
                c[i] = format!("{l}@{domain}");
                guesses.push(c);
            }
            if let Some(&(s, e)) = segments(domain).last().filter(|_| domain.contains('.')) {
                for tld in TLDS.iter().filter(|t| **t != &domain[s..e]) {
                    let mut c = words.to_vec();
                    c[i] = format!("{local}@{}{tld}", &domain[..s]);
                    guesses.push(c);
                }
            }
        }
        None if words.len() < max_words => {
            for (l, at) in &locals {
                for d in &domains {
                    let mut c = words.to_vec();
                    c.insert(at + 1, format!("{l}@{d}"));
                    guesses.push(c);
                }
            }
        }
        None => {}
    }
    let mut out = Vec::new();
    for _ in 0..EMAILS.min(guesses.len()) {
        out.push(guesses.swap_remove(rng.below(guesses.len())));
    }
    out
}

/// Adjacent digit words joined into one (`4751 3627` -> `47513627`): account numbers
/// are single long digit strings, MiniLM's pieces are short.
fn joined_numbers(words: &[String]) -> Vec<Vec<String>> {
    let digits = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
    (1..words.len())
        .filter(|&i| digits(&words[i - 1]) && digits(&words[i]))
        .take(2)
        .map(|i| {
            let mut c = words.to_vec();
            let joined = format!("{}{}", c[i - 1], c[i]);
            c.splice(i - 1..=i, [joined]);
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn local_parts_cover_the_usual_forms() {
        assert_eq!(
            local_parts("dmitri", "lindqvist"),
            [
                "dmitri.lindqvist",
                "dmitrilindqvist",
                "dmitri_lindqvist",
                "dlindqvist"
            ]
        );
    }

    #[test]
    fn adjacent_digit_words_join() {
        assert_eq!(
            joined_numbers(&ws("account 4751 3627 of 12 ada")),
            [ws("account 47513627 of 12 ada")]
        );
        assert!(joined_numbers(&ws("one 2 three")).is_empty());
    }
}
