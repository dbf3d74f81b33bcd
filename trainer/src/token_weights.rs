//! Which answer tokens a distilled example's loss weighs most.
//!
//! Why: a teacher's answer to "Who studied Celtic culture?" is a sentence ("The person
//! who studied Celtic culture and language is Phil."), and most of its tokens restate
//! the question: the model without the passage predicts them as well as the teacher
//! does. The knowledge the passage adds sits in a few tokens ("Phil"), where the
//! teacher's probability is far above the closed-book model's. With uniform weights
//! the student spends most of its loss on the restatement; the adapters it trained
//! learned the teacher's sentence and missed or misspelt the name in it (Quoref, and
//! near-misses such as "Bruskuskholm" on the fictional base). [`TokenWeights::ContextGain`]
//! weighs each answer token by how much the passage raised its log-probability (the
//! pointwise mutual information between passage and token under the base model).

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The largest gain (nats) one token's weight counts: a token the closed-book model
/// gave almost no chance would otherwise take nearly the whole sequence's weight.
const MAX_GAIN: f32 = 8.0;

/// How a distilled answer's positions are weighted in its loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenWeights {
    /// Every answer token alike.
    #[default]
    Uniform,
    /// Each token by `1 + max(0, log p_teacher - log p_closed_book)` (capped), scaled
    /// so the sequence's weights average 1: the loss's scale, and so the learning
    /// rate's meaning, stay those of the uniform weights.
    ContextGain,
}

impl TokenWeights {
    /// Parses `uniform` or `context-gain`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "uniform" => Some(Self::Uniform),
            "context-gain" | "context_gain" => Some(Self::ContextGain),
            _ => None,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::ContextGain => "context-gain",
        }
    }
}

/// The log-probability of each `answer` token under `rows` (`(answer.len(), vocab)`
/// logits, row `i` predicting `answer[i]`).
fn token_log_probs(rows: &Tensor, answer: &[u32]) -> Result<Vec<f32>> {
    if rows.dim(0)? != answer.len() {
        return Err(Error::InvalidConfig(format!(
            "{} rows of logits for {} answer tokens",
            rows.dim(0)?,
            answer.len()
        )));
    }
    let ids = Tensor::new(answer, rows.device())?.unsqueeze(1)?;
    let lp = candle_nn::ops::log_softmax(rows, D::Minus1)?.gather(&ids, 1)?;
    Ok(lp.squeeze(1)?.to_vec1()?)
}

/// Per-token weights of an answer (mean 1) from the teacher's logits (with the
/// passages) and the closed-book model's (without), both `(answer.len(), vocab)`.
pub fn context_gain(teacher: &Tensor, closed_book: &Tensor, answer: &[u32]) -> Result<Vec<f32>> {
    let with = token_log_probs(teacher, answer)?;
    let without = token_log_probs(closed_book, answer)?;
    let raw: Vec<f32> = with
        .iter()
        .zip(&without)
        .map(|(w, wo)| 1.0 + (w - wo).clamp(0.0, MAX_GAIN))
        .collect();
    let mean = raw.iter().sum::<f32>() / raw.len().max(1) as f32;
    Ok(raw.iter().map(|w| w / mean).collect())
}

/// The mean of `per_row` (`(rows,)`), weighted by `weights` when given (which average
/// 1, so the weighted mean is on the unweighted one's scale).
pub fn weighted_mean(per_row: &Tensor, weights: Option<&[f32]>) -> Result<Tensor> {
    let Some(w) = weights else {
        return Ok(per_row.mean_all()?);
    };
    if w.len() != per_row.dim(0)? {
        return Err(Error::InvalidConfig(format!(
            "{} token weights for {} positions",
            w.len(),
            per_row.dim(0)?
        )));
    }
    let w = Tensor::new(w, per_row.device())?;
    Ok(((per_row * w)?.sum_all()? / per_row.dim(0)? as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[f32]]) -> Tensor {
        let v: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(v, (rows.len(), rows[0].len()), &candle_core::Device::Cpu).unwrap()
    }

    #[test]
    fn the_token_the_passage_made_likely_weighs_most_and_the_weights_average_one() {
        // Row 0: both models predict token 0 alike (a restated word); row 1: only the
        // teacher puts its mass on token 2 (the name the passage gave); row 2: the
        // teacher is less sure than the closed-book model (no negative gain).
        let teacher = t(&[&[4.0, 0.0, 0.0], &[0.0, 0.0, 6.0], &[1.0, 0.0, 0.0]]);
        let closed = t(&[&[4.0, 0.0, 0.0], &[3.0, 3.0, 0.0], &[5.0, 0.0, 0.0]]);
        let w = context_gain(&teacher, &closed, &[0, 2, 0]).unwrap();
        let mean = w.iter().sum::<f32>() / 3.0;
        assert!((mean - 1.0).abs() < 1e-5, "{w:?}");
        assert!(w[1] > 2.0 * w[0] && (w[0] - w[2]).abs() < 1e-5, "{w:?}");
        // By hand: gain on row 1 = log p_t(2) - log p_c(2), capped at MAX_GAIN.
        let lse = |r: &[f32]| r.iter().map(|x| x.exp()).sum::<f32>().ln();
        let gain = (6.0 - lse(&[0.0, 0.0, 6.0])) - (0.0 - lse(&[3.0, 3.0, 0.0]));
        let raw = [1.0, 1.0 + gain.min(MAX_GAIN), 1.0];
        let m = raw.iter().sum::<f32>() / 3.0;
        assert!((w[1] - raw[1] / m).abs() < 1e-4, "{w:?} vs {raw:?}");
        assert!(context_gain(&teacher, &closed, &[0, 2]).is_err());
        assert_eq!(
            TokenWeights::parse("context-gain"),
            Some(TokenWeights::ContextGain)
        );
        assert_eq!(TokenWeights::ContextGain.name(), "context-gain");
    }

    #[test]
    fn a_weighted_mean_with_no_weights_or_equal_ones_is_the_mean() {
        let x = Tensor::new(&[1.0f32, 2.0, 6.0], &candle_core::Device::Cpu).unwrap();
        let plain = weighted_mean(&x, None).unwrap().to_scalar::<f32>().unwrap();
        let equal = weighted_mean(&x, Some(&[1.0, 1.0, 1.0]))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let skewed = weighted_mean(&x, Some(&[0.5, 0.5, 2.0]))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((plain - 3.0).abs() < 1e-6 && (equal - 3.0).abs() < 1e-6);
        assert!((skewed - (0.5 + 1.0 + 12.0) / 3.0).abs() < 1e-5, "{skewed}");
        assert!(weighted_mean(&x, Some(&[1.0])).is_err());
    }
}
