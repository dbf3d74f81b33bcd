//! all-MiniLM-L6-v2 on candle (CPU, F32): Engram's default [`TextEncoder`].
//!
//! Why this model: 22.7M parameters and 384 dimensions make it fast enough on two CPU
//! cores to embed documents at insert time, and it is the encoder most peers use, so
//! results compare directly. It runs candle-transformers' stock `BertModel`; pooling is
//! sentence-transformers' (mean over real tokens, then L2 normalisation), so vectors
//! match the reference implementation. The forward pass is Engram's own ([`crate::bert`]),
//! tuned for the CPU; a unit test checks it against candle-transformers' `BertModel`.
//!
//! Long documents are not truncated: the text is tokenized once (keeping byte offsets),
//! cut into overlapping windows (the caller's `Chunking`, at most 256 tokens), and every window is wrapped
//! in `[CLS] ... [SEP]` and embedded. Windows of all texts in a call are sorted by length
//! and run in batches (up to 32 short ones, 8 full windows), so padding (which must not
//! and does not change a vector) costs little.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use engram_models::ModelId;
use tokenizers::{Encoding, Tokenizer};

use crate::bert::{Bert, Config};
use crate::encoder::{Chunk, Chunking, TextEncoder};
use crate::error::{Error, Result};

/// The name under which this encoder is stored in collection configs.
pub const NAME: &str = "minilm";
/// Longest window, special tokens included (all-MiniLM-L6-v2 was trained at 256).
const MAX_TOKENS: usize = 256;
/// Most sequences per forward pass: enough to keep both cores busy on short texts.
const MAX_BATCH: usize = 32;
/// Most padded tokens per forward pass, which bounds memory: attention scores are
/// batch x 12 heads x len x len floats, 25 MB for 8 full windows (100 MB for 32).
const BATCH_TOKENS: usize = 8 * MAX_TOKENS;

/// The all-MiniLM-L6-v2 sentence encoder.
pub struct MiniLm {
    model: Bert,
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
    pad: u32,
    dim: usize,
    /// Longest window including `[CLS]`/`[SEP]`.
    max_tokens: usize,
}

/// A pooling weight per token id (e.g. its inverse document frequency in a corpus).
pub type TokenWeights<'a> = dyn Fn(u32) -> f32 + Sync + 'a;

/// One window of a text: the text it comes from, its token ids (`[CLS]`/`[SEP]`
/// included) and the byte span of the text it covers.
#[derive(Debug, Clone)]
pub struct Window {
    pub text: usize,
    pub ids: Vec<u32>,
    pub start: usize,
    pub end: usize,
}

impl MiniLm {
    /// Loads the model from the cache, fetching it first if needed (see
    /// [`engram_models::ensure`]).
    pub fn load_default() -> Result<Self> {
        Self::load(&engram_models::ensure(ModelId::MiniLmL6V2)?)
    }

    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidModel {
            dir: dir.to_path_buf(),
            reason,
        };
        let config_path = dir.join("config.json");
        let config = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::io("reading", &config_path, e))?;
        let config: Config =
            serde_json::from_str(&config).map_err(|e| invalid(format!("config.json: {e}")))?;
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| invalid(format!("tokenizer.json: {e}")))?;
        let device = Device::Cpu;
        // Read into memory (no mmap): the cache may be replaced while the server runs.
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &device)
            .map_err(|e| invalid(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model =
            Bert::load(vb, &config).map_err(|e| invalid(format!("model.safetensors: {e}")))?;
        Self::from_parts(model, tokenizer, &config).map_err(invalid)
    }

    /// Assembles an encoder from a loaded model and tokenizer (also used by tests with a
    /// tiny random BERT). Turns off the truncation and padding that tokenizer.json asks for:
    /// windows are cut and padded here. The error says what is wrong with the parts.
    pub(crate) fn from_parts(
        model: Bert,
        mut tokenizer: Tokenizer,
        config: &Config,
    ) -> std::result::Result<Self, String> {
        tokenizer
            .with_truncation(None)
            .map_err(|e| format!("tokenizer.json: {e}"))?;
        tokenizer.with_padding(None);
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| format!("tokenizer.json: the vocabulary has no {token} token"))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let max_tokens = MAX_TOKENS.min(config.max_position_embeddings);
        if max_tokens < 4 {
            return Err(format!(
                "config.json: max_position_embeddings {max_tokens} is too small"
            ));
        }
        Ok(Self {
            model,
            cls,
            sep,
            pad: config.pad_token_id as u32,
            dim: config.hidden_size,
            max_tokens,
            tokenizer,
        })
    }

    /// Content tokens (no special tokens) of a text, with their byte offsets.
    fn tokenize(&self, index: usize, text: &str) -> Result<Encoding> {
        if text.trim().is_empty() {
            return Err(Error::EmptyText { index });
        }
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("text {index}: {e}")))?;
        if enc.get_ids().is_empty() {
            return Err(Error::EmptyText { index });
        }
        Ok(enc)
    }

    /// Wraps content tokens `s..e` of `enc` in `[CLS] ... [SEP]` with the span they cover.
    fn window(&self, text: usize, enc: &Encoding, (s, e): (usize, usize)) -> Window {
        let mut w = Vec::with_capacity(e - s + 2);
        w.push(self.cls);
        w.extend_from_slice(&enc.get_ids()[s..e]);
        w.push(self.sep);
        let span = &enc.get_offsets()[s..e];
        Window {
            text,
            ids: w,
            start: span.iter().map(|o| o.0).min().unwrap_or(0),
            end: span.iter().map(|o| o.1).max().unwrap_or(0),
        }
    }

    /// Runs token-id sequences (each already wrapped) through BERT and hands each batch's
    /// states to `pooler`: sorts them by length, runs batches padded to the batch's
    /// longest (so padding is small), returns one output per sequence in input order.
    fn run<T: Default + Clone>(&self, seqs: &[&[u32]], pooler: &dyn Pooler<T>) -> Result<Vec<T>> {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut out = vec![T::default(); seqs.len()];
        let mut rest = order.as_slice();
        while !rest.is_empty() {
            // Sorted longest first, so the batch's first sequence sets its padded length.
            let size = (BATCH_TOKENS / seqs[rest[0]].len()).clamp(1, MAX_BATCH);
            let (batch, tail) = rest.split_at(size.min(rest.len()));
            let batch_seqs: Vec<&[u32]> = batch.iter().map(|&i| seqs[i]).collect();
            let states = self.forward_batch(&batch_seqs)?;
            for (&i, v) in batch.iter().zip(pooler.pool(&states, &batch_seqs)?) {
                out[i] = v;
            }
            rest = tail;
        }
        Ok(out)
    }

    /// One forward pass: pad, run BERT; the token states, `(batch, len, dim)`.
    fn forward_batch(&self, seqs: &[&[u32]]) -> Result<Tensor> {
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * len);
        let mut mask = Vec::with_capacity(seqs.len() * len);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(self.pad, len - s.len()));
            mask.extend(std::iter::repeat_n(1u32, s.len()));
            mask.extend(std::iter::repeat_n(0u32, len - s.len()));
        }
        let device = &self.model.device;
        let shape = (seqs.len(), len);
        let ids = Tensor::from_vec(ids, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        Ok(self.model.forward(&ids, &mask)?)
    }

    /// The tokenizer's content token ids of `text` (no `[CLS]`/`[SEP]`), e.g. for
    /// counting document frequencies over a corpus.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenize(0, text)?.get_ids().to_vec())
    }

    /// Id of `[CLS]` and `[SEP]`, which wrap every window.
    pub fn special_ids(&self) -> [u32; 2] {
        [self.cls, self.sep]
    }

    /// [`TextEncoder::embed`] with pooling weighted per token id (`None`: plain mean).
    pub fn embed_weighted(
        &self,
        texts: &[&str],
        weights: Option<&TokenWeights<'_>>,
    ) -> Result<Vec<Vec<f32>>> {
        self.embed_pooled(texts, &WeightedMean(weights))
    }

    /// [`TextEncoder::embed_chunked`] with pooling weighted per token id.
    pub fn embed_chunked_weighted(
        &self,
        texts: &[&str],
        chunking: Chunking,
        weights: Option<&TokenWeights<'_>>,
    ) -> Result<Vec<Vec<Chunk>>> {
        let windows = self.embed_chunked_pooled(texts, chunking, &WeightedMean(weights))?;
        Ok(into_chunks(texts.len(), windows))
    }

    /// One output of `pooler` per text: its first window (as [`TextEncoder::embed`] cuts).
    pub fn embed_pooled<T: Default + Clone>(
        &self,
        texts: &[&str],
        pooler: &dyn Pooler<T>,
    ) -> Result<Vec<T>> {
        let width = self.max_tokens - 2;
        let mut windows = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let enc = self.tokenize(i, text)?;
            windows.push(self.window(i, &enc, (0, enc.len().min(width))));
        }
        self.run(
            &windows.iter().map(|w| w.ids.as_slice()).collect::<Vec<_>>(),
            pooler,
        )
    }

    /// One output of `pooler` per window of every text, cut as `chunking` says, in text
    /// and window order, each with the window it comes from.
    pub fn embed_chunked_pooled<T: Default + Clone>(
        &self,
        texts: &[&str],
        chunking: Chunking,
        pooler: &dyn Pooler<T>,
    ) -> Result<Vec<(Window, T)>> {
        let width = chunking.tokens.clamp(4, self.max_tokens) - 2;
        let overlap = chunking.overlap.min(width / 2);
        let mut windows = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let enc = self.tokenize(i, text)?;
            for range in plan_windows(enc.len(), width, overlap) {
                windows.push(self.window(i, &enc, range));
            }
        }
        let seqs: Vec<&[u32]> = windows.iter().map(|w| w.ids.as_slice()).collect();
        let pooled = self.run(&seqs, pooler)?;
        Ok(windows.into_iter().zip(pooled).collect())
    }
}

/// Groups pooled windows (in text and window order) into each text's chunks.
pub fn into_chunks(texts: usize, windows: Vec<(Window, Vec<f32>)>) -> Vec<Vec<Chunk>> {
    let mut out: Vec<Vec<Chunk>> = vec![Vec::new(); texts];
    for (w, vector) in windows {
        let chunks = &mut out[w.text];
        chunks.push(Chunk {
            index: chunks.len(),
            start: w.start,
            end: w.end,
            vector,
        });
    }
    out
}

/// Turns a batch of BERT token states into one output per window: a pooled vector, or
/// (for stage-two training) the states themselves. Why a trait: the plain, idf and
/// learned poolings all read the same forward pass, which should exist once.
pub trait Pooler<T>: Sync {
    /// `states` is `(batch, len, dim)`, padded past each window's `seqs[i].len()` tokens.
    fn pool(&self, states: &Tensor, seqs: &[&[u32]]) -> Result<Vec<T>>;
}

/// The mean of the real tokens' states (weighted per token id when weights are given),
/// L2-normalised: sentence-transformers' pooling, or the idf variants'.
pub struct WeightedMean<'a>(pub Option<&'a TokenWeights<'a>>);

impl Pooler<Vec<f32>> for WeightedMean<'_> {
    fn pool(&self, states: &Tensor, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let pool = padded(seqs, states.dim(1)?, |t| self.0.map_or(1.0, |w| w(t)))?;
        Ok(Bert::weighted_pool(states, &pool)?.to_vec2::<f32>()?)
    }
}

/// A `(batch, len)` tensor of `value(token)` for each window's tokens, 0 past its end.
pub fn padded(seqs: &[&[u32]], len: usize, value: impl Fn(u32) -> f32) -> Result<Tensor> {
    let mut out = Vec::with_capacity(seqs.len() * len);
    for s in seqs {
        out.extend(s.iter().map(|&t| value(t)));
        out.extend(std::iter::repeat_n(0f32, len - s.len()));
    }
    Ok(Tensor::from_vec(out, (seqs.len(), len), &Device::Cpu)?)
}

/// Content-token ranges `[s, e)` of the windows over `n` tokens: at most `width` tokens
/// each, consecutive windows sharing `overlap` tokens, the last one ending at `n`.
fn plan_windows(n: usize, width: usize, overlap: usize) -> Vec<(usize, usize)> {
    let stride = width.saturating_sub(overlap).max(1);
    let mut out = Vec::with_capacity(n / stride + 1);
    let mut s = 0;
    loop {
        let e = (s + width).min(n);
        out.push((s, e));
        if e >= n {
            return out;
        }
        s += stride;
    }
}

impl TextEncoder for MiniLm {
    fn name(&self) -> &str {
        NAME
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_weighted(texts, None)
    }

    fn embed_chunked(&self, texts: &[&str], chunking: Chunking) -> Result<Vec<Vec<Chunk>>> {
        self.embed_chunked_weighted(texts, chunking, None)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Mechanics on a tiny random BERT with a word-level vocabulary (fast, no model files).
    //! The real model is tested in tests/minilm.rs.
    use super::*;
    use candle_nn::VarMap;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;

    pub(crate) fn tiny() -> MiniLm {
        let words = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "alpha", "beta", "gamma", "delta", "eps",
        ];
        let vocab = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        let wordlevel = WordLevel::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let mut tokenizer = Tokenizer::new(wordlevel);
        tokenizer.with_pre_tokenizer(Some(Whitespace {}));
        let config = Config {
            vocab_size: words.len(),
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 12,
            ..Config::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Bert::load(vb, &config).unwrap();
        MiniLm::from_parts(model, tokenizer, &config).unwrap()
    }

    /// Engram's forward pass gives candle-transformers' `BertModel`'s token states on the
    /// same weights, padded or not.
    #[test]
    fn own_bert_matches_candle_bert() {
        use candle_transformers::models::bert::{self as theirs, BertModel};
        let config = Config {
            vocab_size: 30,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 24,
            max_position_embeddings: 20,
            ..Config::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        // The first load creates the variables; `Bert` copies weights, so load again below.
        Bert::load(vb.clone(), &config).unwrap();
        // Random layer-norm and bias values too, so a swapped tensor cannot hide.
        for var in varmap.all_vars() {
            let noise = var.randn_like(0.0, 0.5).unwrap();
            var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
        }
        let ours = Bert::load(vb.clone(), &config).unwrap();
        let their_config = theirs::Config {
            vocab_size: config.vocab_size,
            hidden_size: config.hidden_size,
            num_hidden_layers: config.num_hidden_layers,
            num_attention_heads: config.num_attention_heads,
            intermediate_size: config.intermediate_size,
            hidden_act: theirs::HiddenAct::Gelu,
            max_position_embeddings: config.max_position_embeddings,
            type_vocab_size: config.type_vocab_size,
            layer_norm_eps: config.layer_norm_eps,
            pad_token_id: config.pad_token_id,
            ..theirs::Config::default()
        };
        let theirs = BertModel::load(vb, &their_config).unwrap();
        let ids = Tensor::new(
            &[[2u32, 5, 9, 13, 3, 0, 0], [2, 7, 7, 1, 28, 4, 3]],
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::new(
            &[[1u32, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]],
            &Device::Cpu,
        )
        .unwrap();
        let a = ours.forward(&ids, &mask).unwrap();
        let b = theirs
            .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
            .unwrap();
        // Compare real tokens only: padded positions are meaningless in both.
        for (row, real) in [(0, 5), (1, 7)] {
            let a = a.get(row).unwrap().narrow(0, 0, real).unwrap();
            let b = b.get(row).unwrap().narrow(0, 0, real).unwrap();
            assert_close(
                &a.flatten_all().unwrap().to_vec1().unwrap(),
                &b.flatten_all().unwrap().to_vec1().unwrap(),
                1e-4,
            );
        }
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff <= tol, "max |diff| {diff} > {tol}");
    }

    #[test]
    fn windows_overlap_and_reach_the_end() {
        assert_eq!(plan_windows(3, 254, 32), [(0, 3)]);
        assert_eq!(plan_windows(254, 254, 32), [(0, 254)]);
        assert_eq!(plan_windows(255, 254, 32), [(0, 254), (222, 255)]);
        assert_eq!(plan_windows(10, 4, 1), [(0, 4), (3, 7), (6, 10)]);
        assert_eq!(
            plan_windows(5, 1, 1),
            [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
        );
    }

    #[test]
    fn chunks_have_spans_and_unit_vectors() {
        let enc = tiny();
        assert_eq!((enc.max_tokens(), enc.dim()), (12, 8));
        let text =
            "  alpha beta gamma delta eps alpha beta gamma delta eps alpha beta gamma delta eps ";
        let chunks = enc
            .embed_chunked(&[text, "beta"], Chunking::WIDEST)
            .unwrap();
        let long = &chunks[0];
        // 15 words, windows of 10 with an overlap of 5 (capped at half a window): [0,10) [5,15).
        assert_eq!(long.len(), 2);
        assert_eq!((long[0].start, long[1].end), (2, text.trim_end().len()));
        assert!(long[1].start > long[0].start && long[1].start < long[0].end);
        assert_eq!(
            long[1].start,
            text.match_indices("alpha").nth(1).unwrap().0,
            "word 5 starts chunk 1"
        );
        assert_eq!(chunks[1].len(), 1);
        for c in chunks.iter().flatten() {
            let norm: f32 = c.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
        assert_close(
            &chunks[1][0].vector,
            &enc.embed(&["beta"]).unwrap()[0],
            1e-6,
        );
    }

    #[test]
    fn padding_does_not_change_vectors() {
        let enc = tiny();
        let texts = ["alpha", "beta gamma delta eps alpha beta", "gamma delta"];
        let batch = enc.embed(&texts).unwrap();
        for (t, v) in texts.iter().zip(&batch) {
            assert_close(v, &enc.embed(&[t]).unwrap()[0], 1e-5);
        }
    }

    #[test]
    fn empty_text_is_an_error() {
        let enc = tiny();
        for bad in ["", "   \n\t"] {
            let err = enc.embed(&["alpha", bad]).unwrap_err();
            assert!(matches!(err, Error::EmptyText { index: 1 }), "{err}");
            assert!(matches!(
                enc.embed_chunked(&[bad], Chunking::WIDEST),
                Err(Error::EmptyText { index: 0 })
            ));
        }
    }
}
