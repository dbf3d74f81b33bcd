//! Slot beams (`slot_beam.rs`) over the structured words of one hypothesis: its
//! e-mail address and a digit string, every filling scored by the cosine of the
//! whole sentence it makes.
//!
//! Successors of an address: the other top-level domains, its domain's label
//! lengthened by the continuation pieces ranked with it (`piece_rank.rs`) or cut by
//! its last piece, the dictionary domains and `WORD.com` the residual points at,
//! and local parts from the hypothesis's name words in every form
//! (`candidates.rs`). Successors of a digit string: the string lengthened by its
//! best pieces ranked with it, or cut by its last piece. The beam changes one part per
//! level but keeps `width` fillings, so a domain whose right next piece is not the
//! best alone, or an address that needs its local part and its domain changed
//! together, stays reachable.

use crate::address_prior::plausible_address;
use crate::candidates::{domain_guesses, is_name_word, name_locals, TLDS};
use crate::lexicon::Lexicon;
use crate::pieces::{extend, is_digits, respell, segments};
use crate::slot_beam;
use crate::spelling::Speller;

/// Digit strings (besides the address) given a slot beam per step.
const DIGIT_SLOTS: usize = 1;
/// Pieces (ranked with their head) a spelled run is lengthened by per expansion.
const PIECES: usize = 12;
/// Lexicon words (by the residual) tried as domain labels.
const LABEL_WORDS: usize = 12;

/// The slot beams' settings for one step.
pub struct Slots<'a> {
    pub sp: &'a Speller<'a>,
    /// Fillings each slot beam keeps.
    pub width: usize,
    /// Sentences scored per call of [`Slots::run`] at most, over all its slots.
    pub budget: usize,
}

impl Slots<'_> {
    /// Runs the slot beams on `words` (its score `base`, its residual `residual`),
    /// one slot after another; `score` embeds a batch of sentences and returns each
    /// one's score (the caller keeps what it embedded). `order`: the hypothesis's
    /// positions in the order spelled words are picked.
    pub fn run<E>(
        &self,
        words: &[String],
        base: f32,
        residual: &[f32],
        order: &[usize],
        score: &mut dyn FnMut(Vec<Vec<String>>) -> Result<Vec<f32>, E>,
    ) -> Result<(), E> {
        let sp = self.sp;
        let address = words.iter().position(|w| w.contains('@'));
        let mut slots: Vec<usize> = address.into_iter().collect();
        // Digit strings only among the other words: letter words given a beam
        // grew junk pieces that raise the cosine ("ansel" -> "anselcappidtip",
        // "email" -> "emailpinpy" on the real MiniLM), which the one-piece-a-step
        // spelling (`spelling.rs`) already does less of.
        slots.extend(
            order
                .iter()
                .copied()
                .filter(|&i| Some(i) != address && is_digits(&words[i]))
                .take(DIGIT_SLOTS),
        );
        let share = self.budget / slots.len().max(1);
        let names = name_words(sp, words);
        for &slot in &slots {
            let expand = |filling: &str| {
                if Some(slot) == address {
                    plausible_successors(sp, &names, words, residual, filling)
                } else {
                    word_successors(sp, residual, filling)
                }
            };
            let fill = |batch: &[String]| {
                let sentences = batch
                    .iter()
                    .map(|f| {
                        let mut c = words.to_vec();
                        c[slot] = f.clone();
                        c
                    })
                    .collect();
                score(sentences)
            };
            let seed = [(words[slot].clone(), base)];
            slot_beam::search(&seed, self.width, share, expand, fill)?;
        }
        Ok(())
    }
}

/// The words of `words` that may be names (what a local part is built from).
fn name_words<'w>(sp: &Speller, words: &'w [String]) -> Vec<&'w str> {
    words
        .iter()
        .map(String::as_str)
        .filter(|w| is_name_word(sp.lex, sp.open, w))
        .collect()
}

/// The successors of `address` (see [`address_successors`]) that the address
/// prior allows (`address_prior.rs`): a local part built from `names`, a
/// registrable domain. Without it the cosine alone grew domains no one registers.
fn plausible_successors(
    sp: &Speller,
    names: &[&str],
    words: &[String],
    residual: &[f32],
    address: &str,
) -> Vec<String> {
    address_successors(sp, words, residual, address)
        .into_iter()
        .filter(|a| plausible_address(sp.lex, names, a))
        .collect()
}

/// `word` lengthened by its last run's best pieces (ranked with the run), then cut
/// by that run's last piece.
fn word_successors(sp: &Speller, residual: &[f32], word: &str) -> Vec<String> {
    let Some(&(s, e)) = segments(word).last() else {
        return Vec::new();
    };
    let run = &word[s..e];
    let digits = is_digits(run);
    let mut out: Vec<String> = sp
        .ranker
        .rank(sp.lex, &[(run, digits)], residual, PIECES * 2)
        .into_iter()
        .flatten()
        .filter(|p| digits || p.len() < 3 || !(sp.lacking)(p))
        .take(PIECES)
        .map(|p| extend(word, e, p))
        .collect();
    out.extend(cut(sp.lex, word, (s, e)));
    out
}

/// `word` with the run `(s, e)` cut by its last piece (none for a one-piece run).
fn cut(lex: &Lexicon, word: &str, (s, e): (usize, usize)) -> Option<String> {
    let split = lex.split(&word[s..e]).filter(|p| p.len() >= 2)?;
    let last = split[split.len() - 1];
    Some(respell(word, (s, e), &word[s..e - last.len()]))
}

/// Neighbours of the address `address`, one part changed, the kinds interleaved
/// (so a short budget samples each): top-level domains, the label lengthened or
/// cut, other domains, other local parts.
fn address_successors(
    sp: &Speller,
    words: &[String],
    residual: &[f32],
    address: &str,
) -> Vec<String> {
    let Some((local, domain)) = address.split_once('@') else {
        return Vec::new();
    };
    let (label, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    let at = |d: &str| format!("{local}@{d}");
    let tlds: Vec<String> = TLDS
        .iter()
        .filter(|t| **t != tld)
        .map(|t| at(&format!("{label}.{t}")))
        .collect();
    let mut labels: Vec<String> = Vec::new();
    if let Some(&(s, e)) = segments(label).last() {
        labels = word_successors(sp, residual, label)
            .into_iter()
            .map(|l| at(&format!("{l}.{tld}")))
            .collect();
        labels.extend(cut(sp.lex, label, (s, e)).map(|l| at(&format!("{l}.{tld}"))));
    }
    let top = sp
        .lex
        .top(residual, LABEL_WORDS, |w| words.iter().any(|x| x == w));
    let mut domains: Vec<String> = domain_guesses(sp.lex, residual, &top)
        .into_iter()
        .filter(|d| d != domain)
        .map(|d| at(&d))
        .collect();
    domains.extend(
        top.iter()
            .map(|&k| at(&format!("{}.{tld}", sp.lex.word(k)))),
    );
    let locals: Vec<String> = name_locals(sp.lex, words, sp.open)
        .into_iter()
        .filter(|(l, _)| l != local)
        .map(|(l, _)| format!("{l}@{domain}"))
        .collect();
    interleave(vec![tlds, labels, domains, locals])
}

/// The lists' first items, then their second items, and so on.
fn interleave(lists: Vec<Vec<String>>) -> Vec<String> {
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for k in 0..longest {
        out.extend(lists.iter().filter_map(|l| l.get(k).cloned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn interleaving_takes_each_list_in_turn() {
        assert_eq!(
            interleave(vec![ws("a b c"), ws("x"), ws("1 2")]),
            ws("a x 1 b 2 c")
        );
    }
}
