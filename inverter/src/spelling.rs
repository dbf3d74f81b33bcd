//! Edit proposals that spell words piece by piece (see `pieces.rs`): lengthen a
//! word's last letter or digit run by a continuation piece the residual points at,
//! drop its last piece, or swap its last piece for another. Every part of an e-mail
//! address may grow, so a domain in no dictionary (`ada` -> `adatum`) and a surname
//! in no name list (`fair` -> `fairbanks`) are reachable, as are digit strings
//! (`79` -> `7955`).

use engram_kernels::SplitMix;

use crate::lexicon::Lexicon;
use crate::piece_rank::PieceRanker;
use crate::pieces::{extend, is_digits, respell, segments};

/// Words of a hypothesis spelled on per beam member and step, among those the probe
/// does not know (names, numbers, addresses: what pieces spell). Lengthening the
/// probe's own words too ("from" -> "fromtypic") raised the cosine with junk: on
/// 20 tuning texts with their names hidden from the dictionaries, full names
/// exact 10% -> 15%, first names 25% -> 40%, token F1 0.181 -> 0.255 once only
/// unknown words are spelled on.
const SPELLED_WORDS: usize = 8;
/// Letter pieces (best by the residual, ranked with their head: `piece_rank.rs`)
/// tried on each letter run.
const LETTER_PIECES: usize = 6;
/// Digit pieces tried on each digit run.
const DIGIT_PIECES: usize = 4;
/// Pieces (best by their bare embeddings) tried in place of a run's last piece.
const REENDS: usize = 3;

/// What the spelling needs besides the hypothesis: the lexicon, the inversion's
/// joint piece ranker, and two tests on words.
pub struct Speller<'a> {
    pub lex: &'a Lexicon,
    pub ranker: &'a PieceRanker<'a>,
    /// The probe cannot propose the word (it came from the lexicon or from pieces):
    /// only such words are spelled on.
    pub open: &'a dyn Fn(&str) -> bool,
    /// The probe says the hypothesis lacks this word. Such a word is not glued onto
    /// another as a piece: the residual points at it because it belongs in the text
    /// on its own ("linde" + `##wire` -> "lindewire" when the text says "wire").
    pub lacking: &'a dyn Fn(&str) -> bool,
}

/// Proposals for `words` whose residual is `residual`.
pub fn proposals(
    sp: &Speller,
    words: &[String],
    residual: &[f32],
    rng: &mut SplitMix,
) -> Vec<Vec<String>> {
    let lex = sp.lex;
    let bare_letters = lex.top_pieces(residual, REENDS, false);
    if bare_letters.is_empty() {
        return Vec::new();
    }
    let bare_digits = lex.top_pieces(residual, REENDS, true);
    let mut order: Vec<usize> = (0..words.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    // Every run to lengthen: (word, start, end), ranked in one batch below.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for &i in order
        .iter()
        .filter(|&&i| (sp.open)(&words[i]))
        .take(SPELLED_WORDS)
    {
        let word = &words[i];
        let mut segs = segments(word);
        if word.contains('@') {
            // The top-level domain switches whole (`candidates.rs`), not by pieces.
            if word.rsplit_once('@').is_some_and(|(_, d)| d.contains('.')) {
                segs.pop();
            }
        } else {
            segs = segs.split_off(segs.len().saturating_sub(1));
        }
        for (s, e) in segs {
            let run = &word[s..e];
            if is_digits(run) || run.bytes().all(|b| b.is_ascii_lowercase()) {
                runs.push((i, s, e));
            }
        }
    }
    let heads: Vec<(&str, bool)> = runs
        .iter()
        .map(|&(i, s, e)| (&words[i][s..e], is_digits(&words[i][s..e])))
        .collect();
    let ranked = sp
        .ranker
        .rank(lex, &heads, residual, LETTER_PIECES.max(DIGIT_PIECES) * 2);
    let mut out = Vec::new();
    for (&(i, s, e), pieces) in runs.iter().zip(ranked) {
        let word = &words[i];
        let run = &word[s..e];
        let digits = is_digits(run);
        let mut respelled = |w: String| {
            let mut c = words.to_vec();
            c[i] = w;
            out.push(c);
        };
        let (k, bare) = if digits {
            (DIGIT_PIECES, &bare_digits)
        } else {
            (LETTER_PIECES, &bare_letters)
        };
        for p in pieces
            .into_iter()
            .filter(|p| digits || p.len() < 3 || !(sp.lacking)(p))
            .take(k)
        {
            respelled(extend(word, e, p));
        }
        let Some(split) = lex.split(run).filter(|p| p.len() >= 2) else {
            continue;
        };
        let last = split[split.len() - 1];
        let stem = &run[..run.len() - last.len()];
        respelled(respell(word, (s, e), stem));
        for p in bare.iter().filter(|p| **p != last) {
            respelled(respell(word, (s, e), &format!("{stem}{p}")));
        }
    }
    out
}
