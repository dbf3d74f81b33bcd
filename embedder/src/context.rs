//! A collection's corpus context: what stage two of the contextual encoder knows
//! about the corpus, computed once from stage-one (MiniLM) passes over a sample of it.
//!
//! Why: a general-purpose encoder squeezes a niche corpus into a small cone of the
//! space, where everything looks alike to cosine similarity. The context records that
//! cone (the mean and covariance of the corpus's vectors), which tokens are common in
//! this corpus (document frequencies), and its main topics (k-means centroids), so
//! stage two can subtract what all documents share and stretch what separates them.
//! It is serialised (safetensors: tensors plus string metadata) and stored with the
//! collection, and versioned so every vector can say which context made it.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::encoder::{Chunking, TextEncoder};
use crate::error::{Error, Result};
use crate::minilm::MiniLm;
use crate::self_check::SelfCheck;
use crate::spectrum::{spectral_map, STRETCH_POWER, STRETCH_SHRINKAGE};

/// Bumped when the stored layout or its meaning changes; older contexts are rebuilt,
/// never misread. (2: idf pooling weights shrink with the sample size.)
const FORMAT: u32 = 2;
/// Texts of prior evidence for idf weighting (see [`CorpusContext::token_weights`]).
const IDF_PRIOR_TEXTS: f32 = 100.0;

/// How stage two turns a corpus-blind MiniLM pass into a corpus-aware vector
/// (training-free variants: no parameters are learned, only corpus statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Subtract the corpus mean vector before normalising.
    Center,
    /// Centre, then whiten with the (shrunk) corpus covariance.
    Whiten,
    /// Pool token states weighted by the token's inverse document frequency in the corpus.
    Idf,
    /// Idf pooling, then centre.
    IdfCenter,
    /// Idf pooling, then centre and whiten.
    IdfWhiten,
    /// The learned stage two ([`crate::stage_two`]): gated idf pooling over token
    /// states, whitening, a learned correction and attention over the centroids.
    Learned,
    /// Stage one unchanged (plain mean, no centring or whitening): what a collection's
    /// context is when its self-check ([`crate::self_check`]) found no variant that
    /// beats MiniLM. Not in [`Variant::ALL`] and not a name a collection can ask for.
    StageOne,
    /// Centre, then stretch the corpus's main directions: each principal direction of
    /// the (shrunk) covariance scaled by its eigenvalue to [`STRETCH_POWER`] (whitening's
    /// opposite, see [`crate::spectrum`]). Not a self-check candidate: its pseudo-queries
    /// do not track its real gains (README, "Contextual embeddings").
    Stretch,
}

impl Variant {
    /// Every variant, in the order reports list them.
    pub const ALL: [Variant; 7] = [
        Variant::Center,
        Variant::Whiten,
        Variant::Idf,
        Variant::IdfCenter,
        Variant::IdfWhiten,
        Variant::Learned,
        Variant::Stretch,
    ];

    /// The name used in collection configs and reports (`contextual-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Center => "center",
            Variant::Whiten => "whiten",
            Variant::Idf => "idf",
            Variant::IdfCenter => "idf-center",
            Variant::IdfWhiten => "idf-whiten",
            Variant::Learned => "learned",
            Variant::StageOne => "stage-one",
            Variant::Stretch => "stretch",
        }
    }

    /// Parses a variant name; the error lists the valid ones.
    pub fn parse(name: &str) -> Result<Variant> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == name)
            .ok_or_else(|| Error::UnsupportedModel(format!("contextual-{name}")))
    }

    /// Whether stage two pools token states by corpus idf (else a plain mean).
    pub fn idf_pooling(self) -> bool {
        matches!(
            self,
            Variant::Idf | Variant::IdfCenter | Variant::IdfWhiten | Variant::Learned
        )
    }

    fn centers(self) -> bool {
        !matches!(self, Variant::Idf | Variant::StageOne)
    }

    /// Whether the context whitens (needs the sample's covariance).
    pub fn whitens(self) -> bool {
        matches!(
            self,
            Variant::Whiten | Variant::IdfWhiten | Variant::Learned
        )
    }

    /// The power of the covariance's eigenvalues the context's matrix scales each
    /// principal direction by (-1/2 whitens), for the variants that have such a matrix.
    fn spectral_power(self) -> Option<f64> {
        match self {
            Variant::Stretch => Some(STRETCH_POWER),
            v if v.whitens() => Some(-0.5),
            _ => None,
        }
    }
}

/// Knobs for [`CorpusContext::build`]; the defaults are what the evaluation chose.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ContextOptions {
    /// Weight of the isotropic part mixed into the covariance before whitening, in
    /// [0, 1]: 0 whitens fully, 1 only centres. Samples of fewer vectors than
    /// dimensions are shrunk more (at least `d / (d + n)`), since they cannot
    /// estimate every direction.
    pub shrinkage: f32,
    /// Number of k-means centroids kept as the corpus's topics (capped by the sample).
    pub centroids: usize,
    /// Seed of the k-means initialisation, so a context is reproducible.
    pub seed: u64,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            shrinkage: 0.3,
            centroids: 16,
            seed: 7,
        }
    }
}

/// The corpus statistics stage two conditions on (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusContext {
    /// Which context made a vector: assigned by the store, 0 until then.
    pub version: u64,
    pub variant: Variant,
    pub options: ContextOptions,
    /// Texts in the sample the statistics come from.
    pub texts: usize,
    /// Stage-one vectors (chunks of those texts) behind the mean and covariance.
    pub vectors: usize,
    /// What the collection's self-check measured and decided when it built this
    /// context (none for contexts built outside a collection).
    pub self_check: Option<SelfCheck>,
    dim: usize,
    /// In how many sampled texts each token id occurs.
    doc_freq: HashMap<u32, u32>,
    mean: Vec<f32>,
    /// Row-major `dim x dim` whitening matrix, for the variants that whiten (the
    /// stretch matrix for [`Variant::Stretch`]).
    whitening: Option<Vec<f32>>,
    /// Row-major `k x dim` unit centroids of the transformed sample vectors.
    centroids: Vec<f32>,
}

impl CorpusContext {
    /// Builds the context of a corpus from `texts` (a sample of its documents, at
    /// least two), embedding them with `base` cut as `chunking` says, the way the
    /// collection's documents will be.
    pub fn build(
        base: &MiniLm,
        texts: &[&str],
        chunking: Chunking,
        variant: Variant,
        options: ContextOptions,
    ) -> Result<CorpusContext> {
        let mut context = CorpusContext::count_tokens(base, texts, variant, options)?;
        let chunks = crate::contextual::pool_chunked(base, &context, texts, chunking)?;
        let vectors: Vec<f32> = chunks
            .iter()
            .flatten()
            .flat_map(|c| c.vector.clone())
            .collect();
        context.fit(&vectors)?;
        Ok(context)
    }

    /// First half of [`CorpusContext::build`]: document frequencies of the sample's
    /// tokens, enough for [`CorpusContext::token_weights`]. Exposed so an evaluation can
    /// embed a corpus once and [`CorpusContext::fit`] several variants on the vectors.
    pub fn count_tokens(
        base: &MiniLm,
        texts: &[&str],
        variant: Variant,
        options: ContextOptions,
    ) -> Result<CorpusContext> {
        if texts.len() < 2 {
            return Err(Error::InvalidContext(format!(
                "a corpus context needs at least 2 documents, got {}",
                texts.len()
            )));
        }
        let mut doc_freq: HashMap<u32, u32> = HashMap::new();
        for (i, text) in texts.iter().enumerate() {
            let ids: HashSet<u32> = match base.token_ids(text) {
                Err(Error::EmptyText { .. }) => return Err(Error::EmptyText { index: i }),
                other => other?.into_iter().collect(),
            };
            for id in ids {
                *doc_freq.entry(id).or_default() += 1;
            }
        }
        Ok(CorpusContext {
            version: 0,
            variant,
            options,
            texts: texts.len(),
            vectors: 0,
            self_check: None,
            dim: base.dim(),
            doc_freq,
            mean: vec![0.0; base.dim()],
            whitening: None,
            centroids: Vec::new(),
        })
    }

    /// Second half of [`CorpusContext::build`]: mean, whitening and centroids from the
    /// sample's stage-one vectors (row-major, pooled the way the variant pools).
    pub fn fit(&mut self, vectors: &[f32]) -> Result<()> {
        let dim = self.dim;
        if vectors.len() < 2 * dim || !vectors.len().is_multiple_of(dim) {
            return Err(Error::InvalidContext(format!(
                "fitting needs at least 2 vectors of {dim} values, got {} values",
                vectors.len()
            )));
        }
        self.vectors = vectors.len() / dim;
        let (mean, covariance) = moments(vectors, dim)?;
        self.mean = if self.variant.centers() {
            mean.clone()
        } else {
            vec![0.0; dim]
        };
        self.whitening = None;
        if let Some(power) = self.variant.spectral_power() {
            // A sample of n vectors spans at most n - 1 directions: whitening a small one
            // would blow its few directions up to noise. Shrink at least by d / (d + n),
            // and at least as much as Ledoit and Wolf's estimate of the intensity that
            // best recovers the true covariance from this sample (it follows the sample
            // size and how spread its vectors are).
            let floor = dim as f32 / (dim + self.vectors) as f32;
            let lw = ledoit_wolf(vectors, &mean, &covariance, dim) as f32;
            let shrinkage = match self.variant {
                // A positive power shrinks small directions rather than blowing them
                // up; a fixed, stronger pull keeps the stretch gentle at every size.
                Variant::Stretch => STRETCH_SHRINKAGE,
                _ => self.options.shrinkage.max(floor).max(lw),
            };
            self.whitening = Some(spectral_map(&covariance, dim, shrinkage, power)?);
        }
        let transformed: Vec<f32> = vectors
            .chunks(dim)
            .flat_map(|v| self.transform(v.to_vec()))
            .collect();
        self.centroids =
            engram_kernels::kmeans(&transformed, dim, self.options.centroids, self.options.seed);
        Ok(())
    }

    /// The corpus mean subtracted before whitening (zeros for variants that do not centre).
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// The row-major, symmetric `dim x dim` whitening matrix, for variants that whiten.
    pub fn whitening(&self) -> Option<&[f32]> {
        self.whitening.as_deref()
    }

    /// Vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Distinct tokens seen in the sample.
    pub fn vocabulary(&self) -> usize {
        self.doc_freq.len()
    }

    /// The corpus's topics: unit centroids in the transformed space, one per row.
    pub fn centroids(&self) -> impl Iterator<Item = &[f32]> {
        self.centroids.chunks(self.dim)
    }

    /// BM25's inverse document frequency of a token in the sample: near 0 for tokens
    /// in every document (and for `[CLS]`/`[SEP]`), largest for unseen ones.
    pub fn idf(&self, token: u32) -> f32 {
        let n = self.texts as f32;
        let df = self.doc_freq.get(&token).copied().unwrap_or(0) as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// The pooling weights idf variants use: the idf of content tokens raised to
    /// `n / (n + IDF_PRIOR_TEXTS)` for a sample of `n` texts, zero for the window
    /// markers (their states carry no corpus-specific content). Why the exponent: a
    /// small sample cannot tell a rare token from a chance one, and in a corpus of a
    /// few sub-domains the names that tell them apart are in half the documents, so
    /// raw idf would weight up the words they share. Small samples pool nearly
    /// evenly; at 3,000 texts the exponent is 0.97 (the whitening's shrinkage follows
    /// the same rule).
    pub fn token_weights<'a>(&'a self, base: &MiniLm) -> impl Fn(u32) -> f32 + Sync + 'a {
        let special = base.special_ids();
        let n = self.texts as f32;
        let exponent = n / (n + IDF_PRIOR_TEXTS);
        move |t| {
            if special.contains(&t) {
                0.0
            } else {
                self.idf(t).powf(exponent)
            }
        }
    }

    /// The training-free variants' vector transform: centre, whiten (per variant),
    /// L2-normalise. (The learned variant's is [`crate::contextual::transform_all`].)
    pub fn transform(&self, mut v: Vec<f32>) -> Vec<f32> {
        for (x, m) in v.iter_mut().zip(&self.mean) {
            *x -= m;
        }
        if let Some(w) = &self.whitening {
            v = w
                .chunks(self.dim)
                .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    /// Serialises the context as safetensors bytes (stored with the collection).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (mut tokens, mut counts): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
        let mut df: Vec<_> = self.doc_freq.iter().collect();
        df.sort();
        for (t, c) in df {
            tokens.push(*t);
            counts.push(*c);
        }
        let dev = Device::Cpu;
        let k = self.centroids.len() / self.dim;
        let mut tensors = vec![
            ("mean", Tensor::from_slice(&self.mean, self.dim, &dev)?),
            (
                "centroids",
                Tensor::from_slice(&self.centroids, (k, self.dim), &dev)?,
            ),
            (
                "df_tokens",
                Tensor::from_slice(&tokens, tokens.len(), &dev)?,
            ),
            (
                "df_counts",
                Tensor::from_slice(&counts, counts.len(), &dev)?,
            ),
        ];
        if let Some(w) = &self.whitening {
            tensors.push((
                "whitening",
                Tensor::from_slice(w, (self.dim, self.dim), &dev)?,
            ));
        }
        let meta = Meta {
            format: FORMAT,
            version: self.version,
            variant: self.variant,
            options: self.options,
            texts: self.texts,
            vectors: self.vectors,
            self_check: self.self_check.clone(),
        };
        let info = HashMap::from([(
            "engram_context".to_string(),
            serde_json::to_string(&meta).expect("plain struct serialises"),
        )]);
        safetensors::serialize(tensors, Some(info))
            .map_err(|e| Error::InvalidContext(format!("serialising: {e}")))
    }

    /// Reads a context written by [`CorpusContext::to_bytes`]; any damage or an older
    /// format is an `InvalidContext` error (the caller rebuilds), never a wrong context.
    pub fn from_bytes(bytes: &[u8]) -> Result<CorpusContext> {
        let bad = |why: String| Error::InvalidContext(why);
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a context: {e}")))?;
        let meta: Meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("engram_context"))
            .ok_or_else(|| bad("no engram_context metadata".into()))
            .and_then(|s| serde_json::from_str(s).map_err(|e| bad(format!("metadata: {e}"))))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "format {} (this build reads {FORMAT}); recontextualize the collection",
                meta.format
            )));
        }
        let mut tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| bad(format!("missing tensor {name}")))
        };
        let mean: Vec<f32> = take("mean")?.to_vec1()?;
        let dim = mean.len();
        let centroids = take("centroids")?.flatten_all()?.to_vec1()?;
        let tokens: Vec<u32> = take("df_tokens")?.to_vec1()?;
        let counts: Vec<u32> = take("df_counts")?.to_vec1()?;
        let whitening = match take("whitening") {
            Ok(w) => Some(w.flatten_all()?.to_vec1::<f32>()?),
            Err(_) => None,
        };
        if dim == 0
            || tokens.len() != counts.len()
            || whitening.as_ref().is_some_and(|w| w.len() != dim * dim)
            || !centroids.len().is_multiple_of(dim)
            || whitening.is_some() != meta.variant.spectral_power().is_some()
        {
            return Err(bad("inconsistent tensor shapes".into()));
        }
        Ok(CorpusContext {
            version: meta.version,
            variant: meta.variant,
            options: meta.options,
            texts: meta.texts,
            vectors: meta.vectors,
            self_check: meta.self_check,
            dim,
            doc_freq: tokens.into_iter().zip(counts).collect(),
            mean,
            whitening,
            centroids,
        })
    }
}

/// The context's scalar fields, stored as JSON in the safetensors metadata.
#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    version: u64,
    variant: Variant,
    options: ContextOptions,
    texts: usize,
    vectors: usize,
    #[serde(default)]
    self_check: Option<SelfCheck>,
}

/// Mean and covariance (row-major `dim x dim`, f64) of row vectors `x`.
fn moments(x: &[f32], dim: usize) -> Result<(Vec<f32>, Vec<f64>)> {
    let n = x.len() / dim;
    let t = Tensor::from_slice(x, (n, dim), &Device::Cpu)?;
    let mean = t.mean(0)?;
    let centred = t.broadcast_sub(&mean)?;
    let cov = centred
        .t()?
        .matmul(&centred)?
        .to_dtype(DType::F64)?
        .affine(1.0 / n.max(1) as f64, 0.0)?
        .flatten_all()?
        .to_vec1()?;
    Ok((mean.to_vec1()?, cov))
}

/// Ledoit and Wolf's (2004) shrinkage intensity toward `mu I` for the sample
/// covariance `cov` of row vectors `x` (mean `mean`): the estimated variance of the
/// sample covariance over its distance from the scaled identity, in [0, 1]. Large for
/// few or widely spread vectors, near 0 for many.
fn ledoit_wolf(x: &[f32], mean: &[f32], cov: &[f64], dim: usize) -> f64 {
    let n = (x.len() / dim) as f64;
    let trace: f64 = (0..dim).map(|i| cov[i * dim + i]).sum();
    let mu = trace / dim as f64;
    let frob: f64 = cov.iter().map(|c| c * c).sum();
    // || S - mu I ||^2
    let distance = frob - dim as f64 * mu * mu;
    // (1/n^2) sum_k || x_k x_k^T - S ||^2 = (1/n^2) (sum_k |x_k|^4 - n || S ||^2)
    let fourth: f64 = x
        .chunks(dim)
        .map(|v| {
            let sq: f64 = v
                .iter()
                .zip(mean)
                .map(|(a, m)| ((a - m) as f64).powi(2))
                .sum();
            sq * sq
        })
        .sum();
    let spread = ((fourth - n * frob) / (n * n)).max(0.0);
    match distance > 0.0 {
        true => (spread.min(distance) / distance).clamp(0.0, 1.0),
        false => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledoit_wolf_shrinks_small_samples_more() {
        // Correlated 3-d data: many vectors estimate the covariance well, few do not.
        let mut rng = engram_kernels::SplitMix::new(3);
        let mut sample = |n: usize| -> Vec<f32> {
            (0..n)
                .flat_map(|_| {
                    let (a, b) = (rng.unit() - 0.5, rng.unit() - 0.5);
                    [a * 5.0, a * 4.0 + b * 0.5, b * 0.1]
                })
                .collect()
        };
        let intensity = |x: &[f32]| {
            let (mean, cov) = moments(x, 3).unwrap();
            ledoit_wolf(x, &mean, &cov, 3)
        };
        let (few, many) = (intensity(&sample(4)), intensity(&sample(5000)));
        assert!(many < 0.01 && few > 10.0 * many, "{few} vs {many}");
        // Isotropic data: the identity is the truth, shrink (nearly) all the way.
        let iso: Vec<f32> = (0..40 * 8).map(|_| rng.unit() - 0.5).collect();
        let (mean, cov) = moments(&iso, 8).unwrap();
        assert!(ledoit_wolf(&iso, &mean, &cov, 8) > 0.5);
    }

    #[test]
    fn damaged_bytes_are_an_error() {
        assert!(matches!(
            CorpusContext::from_bytes(b"not a context"),
            Err(Error::InvalidContext(_))
        ));
    }

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()).unwrap(), v);
        }
        let err = Variant::parse("nope").unwrap_err().to_string();
        assert!(err.contains("idf-whiten"), "{err}");
    }
}
