//! Continuation pieces ranked together with their head: "harm" + `##sworth` is
//! scored as the embedding of "harmsworth", not of "sworth" alone.
//!
//! A piece's bare-text embedding is a poor stand-in for the piece in a word: alone,
//! "sworth" is tokenized as a word start (other tokens than `##sworth`), and nothing
//! of the head it continues is in it. Against the residual of "...deposit to harm
//! before..." for "...harmsworth...", the bare embeddings rank `##sworth` 135th of
//! 4,758 letter pieces and "55" of "7955" 19th of 76 digit pieces, outside the few
//! the search can try per step. So the standalone ranking only draws a shortlist;
//! each shortlisted piece is then appended to its head and the joined word embedded
//! (a few tokens: cheap next to the sentences the search embeds), and the joined
//! words are ranked by their dot product with the residual (the head is common to
//! all, so what differs is the piece in its head's context). Joined words are
//! cached for the whole inversion, since a word keeps its head for several steps,
//! and every call embeds at most `NEW_PER_CALL` new ones, so the cost stays bounded.

use std::cell::RefCell;
use std::collections::HashMap;

use engram_embedder::TextEncoder;

use crate::lexicon::Lexicon;

/// Letter pieces shortlisted by their bare embeddings for joint rescoring (the
/// residual example above puts the right piece 135th).
pub const LETTER_SHORTLIST: usize = 160;
/// Digit pieces rescored: all of MiniLM's 76.
pub const DIGIT_SHORTLIST: usize = 76;
/// New joined words embedded per call at most; runs past the budget fall back to
/// the bare ranking.
const NEW_PER_CALL: usize = 640;
/// Joined words kept in the cache (384 floats each: about 30 MB).
const CACHE_LIMIT: usize = 20_000;

/// One inversion's joint ranker (holds its cache of joined-word embeddings).
pub struct PieceRanker<'a> {
    encoder: &'a dyn TextEncoder,
    cache: RefCell<HashMap<String, Vec<f32>>>,
}

impl<'a> PieceRanker<'a> {
    pub fn new(encoder: &'a dyn TextEncoder) -> Self {
        PieceRanker {
            encoder,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// For each head of `heads` (a letter or digit run: `(text, digits)`), its
    /// shortlisted continuation pieces ranked by the joined word's dot product
    /// with `residual`, best first, `k` at most. A head whose joined words do not
    /// fit the call's budget (or whose embedding fails: the search's own scoring
    /// call reports encoder errors) keeps the bare ranking.
    pub fn rank<'l>(
        &self,
        lex: &'l Lexicon,
        heads: &[(&str, bool)],
        residual: &[f32],
        k: usize,
    ) -> Vec<Vec<&'l str>> {
        let shortlists: Vec<Vec<&'l str>> = heads
            .iter()
            .map(|&(_, digits)| {
                let n = if digits {
                    DIGIT_SHORTLIST
                } else {
                    LETTER_SHORTLIST
                };
                lex.top_pieces(residual, n, digits)
            })
            .collect();
        let mut budget = NEW_PER_CALL;
        let mut joint = vec![false; heads.len()];
        let mut missing: Vec<String> = Vec::new();
        {
            let cache = self.cache.borrow();
            for (i, (&(head, _), list)) in heads.iter().zip(&shortlists).enumerate() {
                let new: Vec<String> = list
                    .iter()
                    .map(|p| format!("{head}{p}"))
                    .filter(|w| !cache.contains_key(w) && !missing.contains(w))
                    .collect();
                if new.len() <= budget {
                    budget -= new.len();
                    missing.extend(new);
                    joint[i] = true;
                }
            }
        }
        if !missing.is_empty() && !self.embed(&missing) {
            joint.iter_mut().for_each(|j| *j = false);
        }
        let cache = self.cache.borrow();
        heads
            .iter()
            .zip(shortlists)
            .zip(joint)
            .map(|((&(head, _), mut list), joint)| {
                if joint {
                    let score = |p: &str| {
                        cache
                            .get(&format!("{head}{p}"))
                            .map_or(f32::NEG_INFINITY, |v| engram_kernels::dot(v, residual))
                    };
                    let mut scored: Vec<(f32, &'l str)> =
                        list.iter().map(|&p| (score(p), p)).collect();
                    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                    list = scored.into_iter().map(|(_, p)| p).collect();
                }
                list.truncate(k);
                list
            })
            .collect()
    }

    /// Embeds `words` into the cache; false if the encoder failed.
    fn embed(&self, words: &[String]) -> bool {
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let Ok(vectors) = self.encoder.embed(&refs) else {
            return false;
        };
        let mut cache = self.cache.borrow_mut();
        if cache.len() + words.len() > CACHE_LIMIT {
            cache.clear();
        }
        cache.extend(words.iter().cloned().zip(vectors));
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use engram_embedder::{Chunk, Chunking};

    use super::*;
    use crate::pieces::PieceVocab;

    /// A 4-dimensional encoder: "harmsworth" lies along the first axis, every other
    /// text (the bare "sworth" included) off it; counts the texts it embeds.
    struct Toy(AtomicUsize);

    impl TextEncoder for Toy {
        fn name(&self) -> &str {
            "toy"
        }
        fn dim(&self) -> usize {
            4
        }
        fn max_tokens(&self) -> usize {
            16
        }
        fn embed(&self, texts: &[&str]) -> engram_embedder::Result<Vec<Vec<f32>>> {
            self.0.fetch_add(texts.len(), Ordering::Relaxed);
            Ok(texts
                .iter()
                .map(|t| match *t {
                    "harmsworth" => vec![1.0, 0.0, 0.0, 0.0],
                    "sworth" => vec![-0.6, 0.8, 0.0, 0.0],
                    _ => {
                        let h = t.bytes().map(usize::from).sum::<usize>() % 2;
                        if h == 0 {
                            vec![0.0, 0.6, 0.8, 0.0]
                        } else {
                            vec![0.6, 0.0, 0.0, 0.8]
                        }
                    }
                })
                .collect())
        }
        fn embed_chunked(
            &self,
            _: &[&str],
            _: Chunking,
        ) -> engram_embedder::Result<Vec<Vec<Chunk>>> {
            unimplemented!("not used by the ranker")
        }
    }

    #[test]
    fn the_joined_word_decides_and_is_embedded_once() {
        let enc = Toy(AtomicUsize::new(0));
        let vocab = PieceVocab::from_pieces(
            [
                "harm", "##sworth", "##s", "##less", "##ony", "##ful", "##ed", "##55",
            ]
            .into_iter(),
        );
        let lex = Lexicon::build(vec!["harm".into()], vec!["a.com".into()], &enc, None)
            .unwrap()
            .with_pieces(vocab, &enc, None)
            .unwrap();
        let residual = [1.0, 0.0, 0.0, 0.0];
        let bare = lex.top_pieces(&residual, 6, false);
        assert_ne!(bare[0], "sworth", "alone, the piece points elsewhere");
        let ranker = PieceRanker::new(&enc);
        let before = enc.0.load(Ordering::Relaxed);
        let ranked = ranker.rank(&lex, &[("harm", false)], &residual, 3);
        assert_eq!(ranked[0][0], "sworth");
        assert_eq!(ranked[0].len(), 3);
        assert_eq!(enc.0.load(Ordering::Relaxed) - before, 6, "one per piece");
        ranker.rank(&lex, &[("harm", false)], &residual, 3);
        assert_eq!(enc.0.load(Ordering::Relaxed) - before, 6, "cached");
    }
}
