//! The tokenizer, built from a GGUF file's metadata (no tokenizer.json ships with it).
//!
//! SmolLM2 uses GPT-2 style byte-level BPE (`tokenizer.ggml.model = "gpt2"`,
//! `tokenizer.ggml.pre = "smollm"`): text is split into digits one by one, then by the
//! GPT-2 regex, each piece is mapped byte by byte to printable characters and merged
//! with the GGUF's merge list. Tokens of type 3 ("control": `<|im_start|>`,
//! `<|im_end|>`, `<|endoftext|>` ...) are special: they never come out of ordinary text.
//!
//! Besides the `tokenizers` pipeline, every token's raw bytes are kept, so generated
//! tokens can be streamed byte-exactly ([`crate::stream`]).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::error::{Error, Result};

/// llama.cpp's token type for control tokens (`LLAMA_TOKEN_TYPE_CONTROL`).
const TOKEN_TYPE_CONTROL: i64 = 3;

/// A byte-level BPE tokenizer with its special tokens and every token's bytes.
pub struct GgufTokenizer {
    /// Text with special tokens matched as plain text (what user content goes through).
    plain: Tokenizer,
    /// Raw bytes of every token id (special tokens: their literal text).
    bytes: Vec<Vec<u8>>,
    specials: HashMap<String, u32>,
}

impl GgufTokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata. Errors are plain strings
    /// that the caller wraps with the file they came from.
    pub fn from_metadata(metadata: &HashMap<String, Value>) -> std::result::Result<Self, String> {
        let get = |key: &str| {
            metadata
                .get(key)
                .ok_or_else(|| format!("metadata key {key} is missing"))
        };
        let model = get("tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| e.to_string())?;
        if model != "gpt2" {
            return Err(format!(
                "tokenizer.ggml.model is '{model}', only byte-level BPE ('gpt2') is supported"
            ));
        }
        let strings = |key: &str| -> std::result::Result<Vec<String>, String> {
            get(key)?
                .to_vec()
                .map_err(|e| format!("{key}: {e}"))?
                .iter()
                .map(|v| v.to_string().cloned().map_err(|e| format!("{key}: {e}")))
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| format!("merge '{m}' is not two tokens"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let types: Vec<i64> = get("tokenizer.ggml.token_type")?
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.to_i32().map(i64::from).map_err(|e| e.to_string()))
            .collect::<std::result::Result<_, _>>()?;
        if types.len() != tokens.len() {
            return Err(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            ));
        }

        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| format!("building BPE: {e}"))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let pre: Vec<PreTokenizerWrapper> = vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ];
        tokenizer.with_pre_tokenizer(Some(Sequence::new(pre)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

        let mut specials = HashMap::new();
        let mut added = Vec::new();
        for (id, (token, ty)) in tokens.iter().zip(&types).enumerate() {
            if *ty == TOKEN_TYPE_CONTROL {
                specials.insert(token.clone(), id as u32);
                added.push(AddedToken::from(token.clone(), true));
            }
        }
        tokenizer
            .add_special_tokens(added)
            .map_err(|e| format!("adding special tokens: {e}"))?;
        // User text must never turn into control tokens: specials are matched as text.
        tokenizer.set_encode_special_tokens(true);

        let char_bytes = char_to_byte();
        let bytes = tokens
            .iter()
            .zip(&types)
            .map(|(token, ty)| match *ty == TOKEN_TYPE_CONTROL {
                true => token.as_bytes().to_vec(),
                false => token
                    .chars()
                    .map(|c| char_bytes.get(&c).copied().unwrap_or(b'?'))
                    .collect(),
            })
            .collect();
        Ok(Self {
            plain: tokenizer,
            bytes,
            specials,
        })
    }

    /// Token ids of `text`, with any special-token text in it encoded as ordinary text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .plain
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The id of a special token such as `<|im_end|>`.
    pub fn special(&self, token: &str) -> Option<u32> {
        self.specials.get(token).copied()
    }

    /// The raw bytes of a token (what it contributes to the output text).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The text of `ids` (special tokens as their literal text); invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.bytes.len()
    }
}

/// GPT-2's byte-to-character table, inverted: printable ASCII and Latin-1 map to
/// themselves, the 68 other bytes to U+0100 onwards, in byte order.
fn char_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut next = 0u32;
    for b in 0..=255u8 {
        let keeps = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if keeps {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(255 + next).unwrap_or('?')
        };
        map.insert(c, b);
    }
    map
}
