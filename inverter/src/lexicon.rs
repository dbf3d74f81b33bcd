//! Words the probe cannot propose: the encoder's own WordPiece pieces and a name
//! dictionary, ranked against the search's residual by their embeddings alone.
//!
//! The probe reads only its 20,000 training words, so a name like "Lindqvist" or a
//! number like "7955" can never enter a hypothesis through it. MiniLM's vocabulary
//! (30,522 WordPiece pieces) holds every whole-word piece the encoder knows as one
//! token, and the name dictionary (`inverter/data/names.txt`, Faker's person names
//! in 24 locales: what a real attacker would bring) holds first and last names whose
//! pieces MiniLM spells. Each word is embedded once, alone; a word whose embedding
//! points along the residual `target - embed(hypothesis)` is one the hypothesis
//! probably lacks (mean pooling makes a sentence's vector roughly the mean of its
//! tokens' contextual vectors). The embeddings are cached on disk, keyed by the
//! word list and the encoder.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use engram_embedder::TextEncoder;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::pieces::{self, PieceVocab};

/// The attacker's name dictionary (lowercased, one a line).
pub const NAMES: &str = include_str!("../data/names.txt");

/// Words embedded per encoder call while building.
const BATCH: usize = 256;

/// The e-mail domain dictionary (Faker's free-mail domains, one a line).
pub const DOMAINS: &str = include_str!("../data/domains.txt");

/// Words with their embeddings, ranked against a residual.
struct Table {
    words: Vec<String>,
    /// `words.len() x dim`, each row the word's unit embedding minus the mean row.
    vectors: Vec<f32>,
    dim: usize,
}

pub struct Lexicon {
    words: Table,
    /// E-mail domains, ranked the same way (an address is one of these or
    /// `WORD.com` for a lexicon word; see `candidates.rs`).
    domains: Table,
    names: HashSet<String>,
    /// The word list and the domains as sets, for membership tests.
    known_words: HashSet<String>,
    known_domains: HashSet<String>,
    /// Continuation pieces to spell words with (`pieces.rs`; absent: whole words only).
    pieces: Option<Pieces>,
    /// Words the search may not propose (see [`Lexicon::hide`]).
    hidden: HashSet<String>,
}

/// A WordPiece vocabulary and its continuation pieces, letters and digits apart
/// (a segment continues with its own kind).
struct Pieces {
    vocab: PieceVocab,
    letters: Table,
    digits: Table,
}

/// The lexicon's words: every name of [`NAMES`], and the whole-word pieces of a
/// WordPiece vocabulary (`tokenizer.json`'s `model.vocab`) made of two or more
/// lowercase letters, or of digits. Sorted, without repeats.
pub fn words_from(tokenizer_json: &str) -> Result<Vec<String>> {
    let vocab = pieces::vocab_of(tokenizer_json)?;
    let piece = |w: &str| {
        (w.len() >= 2 && w.bytes().all(|b| b.is_ascii_lowercase()))
            || (!w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut out: Vec<String> = vocab.into_iter().filter(|w| piece(w)).collect();
    out.extend(NAMES.lines().filter(|l| !l.is_empty()).map(String::from));
    out.sort();
    out.dedup();
    Ok(out)
}

impl Table {
    /// Embeds every word of `words` alone (`cache`: a file to read the embeddings
    /// from, or to write them to, keyed by the words and the encoder's name).
    fn build(words: Vec<String>, encoder: &dyn TextEncoder, cache: Option<&Path>) -> Result<Table> {
        if words.is_empty() {
            return Err(Error::invalid("lexicon", "no words"));
        }
        let dim = encoder.dim();
        let key = cache_key(&words, encoder.name());
        let cached = cache.and_then(|p| read_cache(p, &key, words.len() * dim));
        let mut vectors = match cached {
            Some(v) => v,
            None => {
                let mut v = Vec::with_capacity(words.len() * dim);
                for chunk in words.chunks(BATCH) {
                    let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    for e in encoder.embed(&refs)? {
                        v.extend(e);
                    }
                }
                if let Some(p) = cache {
                    // A cache that cannot be written only costs the next start time.
                    let _ = write_cache(p, &key, &v);
                }
                v
            }
        };
        let n = words.len();
        let mut mean = vec![0.0f32; dim];
        for row in vectors.chunks(dim) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x / n as f32;
            }
        }
        for row in vectors.chunks_mut(dim) {
            for (x, m) in row.iter_mut().zip(&mean) {
                *x -= m;
            }
        }
        Ok(Table {
            words,
            vectors,
            dim,
        })
    }

    /// The `k` words whose embeddings point most along `residual`, best first,
    /// skipping those `skip` rejects.
    fn top(&self, residual: &[f32], k: usize, skip: impl Fn(&str) -> bool) -> Vec<usize> {
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .chunks(self.dim)
            .enumerate()
            .map(|(i, row)| (engram_kernels::dot(row, residual), i))
            .collect();
        let keep = (k * 4 + 16).min(scored.len());
        if keep > 0 && keep < scored.len() {
            scored.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(keep);
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .into_iter()
            .map(|(_, i)| i)
            .filter(|&i| !skip(&self.words[i]))
            .take(k)
            .collect()
    }
}

impl Lexicon {
    /// Embeds every word of `words` and `domains` alone (`cache`: a folder to read
    /// the embeddings from, or to write them to, keyed by the words and the encoder).
    pub fn build(
        words: Vec<String>,
        domains: Vec<String>,
        encoder: &dyn TextEncoder,
        cache: Option<&Path>,
    ) -> Result<Lexicon> {
        let known_words = words.iter().cloned().collect();
        let known_domains = domains.iter().cloned().collect();
        Ok(Lexicon {
            words: Table::build(
                words,
                encoder,
                cache.map(|c| c.join("lexicon.bin")).as_deref(),
            )?,
            domains: Table::build(
                domains,
                encoder,
                cache.map(|c| c.join("domains.bin")).as_deref(),
            )?,
            names: NAMES.lines().map(String::from).collect(),
            known_words,
            known_domains,
            pieces: None,
            hidden: HashSet::new(),
        })
    }

    /// Adds `vocab`'s continuation pieces, each embedded alone (`cache`: a folder as
    /// for [`Lexicon::build`]), so words can be spelled piece by piece.
    pub fn with_pieces(
        mut self,
        vocab: PieceVocab,
        encoder: &dyn TextEncoder,
        cache: Option<&Path>,
    ) -> Result<Lexicon> {
        let (digits, letters): (Vec<String>, Vec<String>) = vocab
            .continuations()
            .into_iter()
            .partition(|p| pieces::is_digits(p));
        let table = |words, file: &str| {
            Table::build(words, encoder, cache.map(|c| c.join(file)).as_deref())
        };
        self.pieces = Some(Pieces {
            letters: table(letters, "pieces.bin")?,
            digits: table(digits, "digit_pieces.bin")?,
            vocab,
        });
        Ok(self)
    }

    /// The lexicon without its pieces (whole words only: the ablation).
    pub fn without_pieces(mut self) -> Lexicon {
        self.pieces = None;
        self
    }

    /// Takes `words` (lowercase) out of what the search may propose: from the word
    /// list, the name dictionary and the domains. For tuning only: hiding a tuning
    /// set's own names and domains makes them as unreachable from the dictionaries
    /// as the held-out set's, so the spelling from pieces can be tuned honestly.
    pub fn hide(&mut self, words: impl IntoIterator<Item = String>) {
        self.hidden.extend(words);
    }

    /// The lexicon for MiniLM: its WordPiece vocabulary plus the name dictionary,
    /// embeddings cached under `~/.cache/engram/inverter/`.
    pub fn minilm(encoder: &dyn TextEncoder) -> Result<Lexicon> {
        let dir = engram_models::ensure(engram_models::ModelId::MiniLmL6V2)
            .map_err(|e| Error::invalid("lexicon", format!("MiniLM: {e}")))?;
        let path = dir.join("tokenizer.json");
        let json = std::fs::read_to_string(&path).map_err(|e| {
            Error::invalid("lexicon", format!("cannot read {}: {e}", path.display()))
        })?;
        let domains = DOMAINS.lines().filter(|l| !l.is_empty()).map(String::from);
        let cache = cache_dir();
        Self::build(words_from(&json)?, domains.collect(), encoder, Some(&cache))?.with_pieces(
            PieceVocab::from_tokenizer(&json)?,
            encoder,
            Some(&cache),
        )
    }

    /// [`Lexicon::minilm`] built once per process (the first call embeds ~35,000
    /// words unless the disk cache has them: minutes on 2 cores).
    pub fn shared_minilm(encoder: &dyn TextEncoder) -> Result<Arc<Lexicon>> {
        static SHARED: OnceLock<Arc<Lexicon>> = OnceLock::new();
        if let Some(l) = SHARED.get() {
            return Ok(l.clone());
        }
        let built = Arc::new(Self::minilm(encoder)?);
        Ok(SHARED.get_or_init(|| built).clone())
    }

    pub fn len(&self) -> usize {
        self.words.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.words.is_empty()
    }

    pub fn word(&self, i: usize) -> &str {
        &self.words.words[i]
    }

    /// In the name dictionary.
    pub fn is_name(&self, word: &str) -> bool {
        self.names.contains(word) && !self.hidden.contains(word)
    }

    /// In the word list (whole-word pieces and names) and not hidden.
    pub fn knows(&self, word: &str) -> bool {
        self.known_words.contains(word) && !self.hidden.contains(word)
    }

    /// In the e-mail domain dictionary and not hidden.
    pub fn knows_domain(&self, domain: &str) -> bool {
        self.known_domains.contains(domain) && !self.hidden.contains(domain)
    }

    /// One of the vocabulary's pieces (head or continuation); false without pieces.
    pub fn is_piece(&self, piece: &str) -> bool {
        self.pieces.as_ref().is_some_and(|p| p.vocab.knows(piece))
    }

    /// The `k` words whose embeddings point most along `residual`, best first,
    /// skipping those `skip` rejects.
    pub fn top(&self, residual: &[f32], k: usize, skip: impl Fn(&str) -> bool) -> Vec<usize> {
        self.words
            .top(residual, k, |w| self.hidden.contains(w) || skip(w))
    }

    /// The `k` continuation pieces (without `##`; digits or letters) that point
    /// most along `residual`, best first; none without pieces.
    pub fn top_pieces(&self, residual: &[f32], k: usize, digits: bool) -> Vec<&str> {
        let Some(p) = &self.pieces else {
            return Vec::new();
        };
        let table = if digits { &p.digits } else { &p.letters };
        table
            .top(residual, k, |_| false)
            .into_iter()
            .map(|i| table.words[i].as_str())
            .collect()
    }

    /// The vocabulary's split of a letters-or-digits segment into pieces.
    pub fn split<'a>(&self, segment: &'a str) -> Option<Vec<&'a str>> {
        self.pieces.as_ref()?.vocab.split(segment)
    }

    /// The `k` e-mail domains that point most along `residual`, best first.
    pub fn top_domains(&self, residual: &[f32], k: usize) -> Vec<&str> {
        self.domains
            .top(residual, k, |d| self.hidden.contains(d))
            .into_iter()
            .map(|i| self.domains.words[i].as_str())
            .collect()
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/engram/inverter")
}

fn cache_key(words: &[String], encoder: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(encoder.as_bytes());
    for w in words {
        h.update(w.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The cached embeddings if the file starts with `key` and holds `len` floats.
fn read_cache(path: &Path, key: &[u8; 32], len: usize) -> Option<Vec<f32>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() != 32 + 4 * len || bytes[..32] != key[..] {
        return None;
    }
    Some(
        bytes[32..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

fn write_cache(path: &Path, key: &[u8; 32], v: &[f32]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = key.to_vec();
    bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_whole_pieces_and_names() {
        let json = r###"{"model": {"vocab": {"[CLS]": 0, "the": 1, "##ing": 2, "a": 3, "415": 4, "lind": 5, "Caps": 6, "é": 7}}}"###;
        let w = words_from(json).unwrap();
        for want in ["the", "415", "lind", "ada"] {
            assert!(w.contains(&want.to_string()), "{want}");
        }
        assert!(
            NAMES.lines().any(|l| l == "ada"),
            "a name of the dictionary"
        );
        for not in ["[CLS]", "##ing", "a", "Caps", "é"] {
            assert!(!w.contains(&not.to_string()), "{not}");
        }
        assert!(w.windows(2).all(|p| p[0] < p[1]), "sorted, no repeats");
        assert!(words_from("{}").is_err());
    }

    #[test]
    fn cache_round_trips_and_rejects_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/lex.bin");
        let key = cache_key(&["a".into()], "enc");
        write_cache(&p, &key, &[1.0, -2.5]).unwrap();
        assert_eq!(read_cache(&p, &key, 2), Some(vec![1.0, -2.5]));
        assert_eq!(read_cache(&p, &key, 3), None);
        assert_eq!(read_cache(&p, &cache_key(&["b".into()], "enc"), 2), None);
    }
}
