//! Context distillation: teach the model *without* the documents to answer as the
//! model *with* them does (the Cartridges recipe's training signal).
//!
//! Why: a collection has no gold answers, and templated synthetic pairs teach an
//! adapter to answer every question alike (one promotion's adapter answered the
//! company's name to every question). The base model with the rag passages in its
//! prompt (the teacher) already answers questions about the documents; the adapter
//! (the student: base + LoRA, closed-book prompt) learns the teacher's whole
//! next-token distribution at every answer position, which carries far more than one
//! sampled answer string.
//!
//! Per training question the teacher samples one answer (seeded) with the serving
//! model, then one forward pass of the trainable model over the teacher prompt and
//! that answer yields its top-k logits at every answer position; they are kept with
//! the student's sequence ([`SoftTargets`]), so the teacher runs once per example and
//! training never needs it again. The loss ([`kl_loss`]) is KL(teacher top-k,
//! renormalised || student); [`DistillLoss::NextToken`] trains the same tokens with
//! cross-entropy instead (the A/B), and [`DistillLoss::KlNextToken`] adds the two (soft
//! and hard targets, as Hinton et al. train a distilled student).

use std::sync::Arc;

use candle_core::{Tensor, D};
use engram_generator::{
    ChatMessage, GenerationOptions, GenerationRequest, KvCache, LanguageModel, Llama, LoraAdapter,
};
use serde::{Deserialize, Serialize};

use crate::data::{Sequence, TrainableModel};
use crate::error::{Error, Result};
use crate::token_weights::{context_gain, weighted_mean, TokenWeights};
use crate::util::mix;

/// The loss a distilled example is trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistillLoss {
    /// KL divergence to the teacher's renormalised top-k distribution per position.
    #[default]
    Kl,
    /// Cross-entropy on the teacher's sampled tokens (plain fine-tuning on them).
    NextToken,
    /// Both: the KL term plus the cross-entropy of the sampled tokens. Why: KL alone
    /// spreads the student over the teacher's alternatives at every position, and on
    /// long passages (Quoref) the student learned the teacher's sentence but not the
    /// name in it; the hard term puts the weight on the token the teacher chose.
    KlNextToken,
}

impl DistillLoss {
    /// Parses `kl`, `next-token` or `next_token`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "kl" => Some(Self::Kl),
            "next-token" | "next_token" => Some(Self::NextToken),
            "kl+next-token" | "kl+next_token" => Some(Self::KlNextToken),
            _ => None,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kl => "kl",
            Self::NextToken => "next-token",
            Self::KlNextToken => "kl+next-token",
        }
    }
}

/// How to distill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillConfig {
    /// The training loss.
    pub loss: DistillLoss,
    /// Teacher logits kept per answer position.
    pub top_k: usize,
    /// Answers the teacher samples per question.
    pub samples: usize,
    /// The teacher's sampling temperature (0: greedy).
    pub temperature: f64,
    /// Longest teacher answer, in tokens.
    pub max_answer_tokens: usize,
    /// How the loss weighs the answer's tokens (needs a KL loss: the weights ride
    /// with the teacher's targets).
    pub token_weights: TokenWeights,
}

impl Default for DistillConfig {
    /// The loss: KL plus next-token, chosen on the fictional tuning base (README
    /// "The loss, chosen on the tuning base") and ahead of KL on every held-out base.
    fn default() -> Self {
        Self {
            loss: DistillLoss::KlNextToken,
            top_k: 20,
            samples: 1,
            temperature: 0.3,
            max_answer_tokens: 48,
            token_weights: TokenWeights::Uniform,
        }
    }
}

impl DistillConfig {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=256).contains(&self.top_k) || !(1..=8).contains(&self.samples) {
            return Err(Error::InvalidConfig(format!(
                "distillation top_k must be in 1..=256 and samples in 1..=8, got {} and {}",
                self.top_k, self.samples
            )));
        }
        if self.max_answer_tokens == 0 || !(0.0..=2.0).contains(&self.temperature) {
            return Err(Error::InvalidConfig(
                "distillation needs max_answer_tokens >= 1 and temperature in [0, 2]".into(),
            ));
        }
        if self.loss == DistillLoss::NextToken && self.token_weights != TokenWeights::Uniform {
            return Err(Error::InvalidConfig(
                "token weights other than uniform need the kl or kl+next-token loss".into(),
            ));
        }
        Ok(())
    }
}

/// A question to distill, with the passages the teacher reads to answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistillQuestion {
    /// The question as asked.
    pub question: String,
    /// Passages for the teacher's prompt (the rag passages, or the chunk it was
    /// written about).
    pub passages: Vec<String>,
}

/// Builds the chat messages for a question and passages: with passages the teacher's
/// (rag) prompt, with none the student's (closed-book) prompt. The database passes its
/// answer endpoint's own builder, so training sees exactly the prompts served.
pub type PromptBuilder<'a> = &'a (dyn Fn(&str, &[String]) -> Vec<ChatMessage> + Sync);

/// The teacher's top-k logits at each target position of a [`Sequence`]: row `i`
/// (`k` ids and logits) is the distribution of the token at `loss_from + i`.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftTargets {
    /// Entries per row.
    pub k: usize,
    /// Token ids, row-major `(rows, k)`.
    pub ids: Vec<u32>,
    /// Teacher logits of those ids, row-major `(rows, k)`; with `with_rest`, their
    /// log-probabilities under the teacher's whole distribution.
    pub logits: Vec<f32>,
    /// The loss also matches the teacher's probability outside its top `k` (what
    /// the log-probabilities leave to 1: [`SoftTargets::top_k_with_rest`]).
    pub with_rest: bool,
    /// Weight of the cross-entropy on the sequence's own tokens added to the KL term
    /// (0: KL alone).
    pub hard_weight: f32,
    /// Per-row weights of both terms (averaging 1; [`crate::token_weights`]); none:
    /// every row alike.
    pub row_weights: Option<Vec<f32>>,
}

impl SoftTargets {
    /// Rows (target positions).
    pub fn rows(&self) -> usize {
        self.ids.len() / self.k.max(1)
    }

    /// The `k` largest entries of every row of `logits` (`(rows, vocab)`).
    pub fn top_k(logits: &Tensor, k: usize) -> Result<Self> {
        let rows: Vec<Vec<f32>> = logits.to_vec2()?;
        let k = k.min(rows.first().map_or(k, Vec::len)).max(1);
        let (mut ids, mut out) = (Vec::new(), Vec::new());
        for row in rows {
            let mut idx: Vec<u32> = (0..row.len() as u32).collect();
            let by_logit = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]);
            if k < idx.len() {
                idx.select_nth_unstable_by(k - 1, by_logit);
                idx.truncate(k);
            }
            idx.sort_by(by_logit);
            out.extend(idx.iter().map(|&i| row[i as usize]));
            ids.extend(idx);
        }
        Ok(Self {
            k,
            ids,
            logits: out,
            with_rest: false,
            hard_weight: 0.0,
            row_weights: None,
        })
    }

    /// [`SoftTargets::top_k`] over the teacher's whole distribution: the `k` largest
    /// entries as log-probabilities, and the probability left to the other tokens, so
    /// that the loss matches the teacher on `k + 1` outcomes instead of its top `k`
    /// renormalised. Why: renormalised targets tell the student to move the tail's
    /// mass onto the top `k`, which raises its perplexity on text whose next token is
    /// in the tail; for replay, whose point is to leave the model as it was, that
    /// defeats the purpose.
    pub fn top_k_with_rest(logits: &Tensor, k: usize) -> Result<Self> {
        let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let mut soft = Self::top_k(&log_p, k)?;
        soft.with_rest = true;
        Ok(soft)
    }
}

/// Mean over rows of KL(p || q), where p is the softmax of the teacher's top-k logits
/// (renormalised over those k) and q the student's full-vocabulary distribution read at
/// the same ids. Zero exactly when the student puts the teacher's probabilities on
/// those ids; its gradient pulls the student's logits of likely teacher tokens up.
/// With `soft.with_rest`, p is the teacher's own top-k probabilities and the mass
/// left to the other tokens as one more outcome (no renormalising).
pub fn kl_loss(student_logits: &Tensor, soft: &SoftTargets) -> Result<Tensor> {
    let (rows, dev) = (student_logits.dim(0)?, student_logits.device());
    if rows != soft.rows() {
        return Err(Error::InvalidConfig(format!(
            "{rows} student positions but {} teacher rows",
            soft.rows()
        )));
    }
    let ids = Tensor::from_vec(soft.ids.clone(), (rows, soft.k), dev)?;
    let teacher = Tensor::from_vec(soft.logits.clone(), (rows, soft.k), dev)?;
    let log_q = candle_nn::ops::log_softmax(student_logits, D::Minus1)?.gather(&ids, 1)?;
    if !soft.with_rest {
        let log_p = candle_nn::ops::log_softmax(&teacher, D::Minus1)?;
        let kl = (log_p.exp()? * (log_p - log_q)?)?.sum(1)?;
        return weighted_mean(&kl, soft.row_weights.as_deref());
    }
    // Over k + 1 outcomes: the top k (log-probabilities already) and the rest.
    let log_p = teacher;
    let top = (log_p.exp()? * (&log_p - &log_q)?)?.sum(1)?;
    let p_rest = (1.0 - log_p.exp()?.sum(1)?)?.clamp(1e-12, 1.0)?;
    let q_rest = (1.0 - log_q.exp()?.sum(1)?)?.clamp(1e-12, 1.0)?;
    let tail = (&p_rest * (p_rest.log()? - q_rest.log()?)?)?;
    weighted_mean(&(top + tail)?, soft.row_weights.as_deref())
}

/// The KL loss of a distilled sequence under `llama` with `adapter` (`seq.soft` set).
pub fn sequence_kl(
    llama: &Llama,
    seq: &Sequence,
    soft: &SoftTargets,
    adapter: Option<&LoraAdapter>,
) -> Result<Tensor> {
    let from = seq.loss_from.max(1);
    let mut cache = KvCache::new(llama.config(), seq.tokens.len());
    let rows = llama.forward_from(
        &seq.tokens[..seq.tokens.len() - 1],
        &mut cache,
        adapter,
        from - 1,
    )?;
    let kl = kl_loss(&rows, soft)?;
    if soft.hard_weight <= 0.0 {
        return Ok(kl);
    }
    let targets = Tensor::new(&seq.tokens[from..], rows.device())?.unsqueeze(1)?;
    let nll = candle_nn::ops::log_softmax(&rows, D::Minus1)?
        .gather(&targets, 1)?
        .squeeze(1)?
        .neg()?;
    let hard = weighted_mean(&nll, soft.row_weights.as_deref())?;
    Ok((kl + (hard * soft.hard_weight as f64)?)?)
}

/// The teacher's top-k logits for `answer` after `teacher_prompt`: one forward pass.
pub fn teacher_targets(
    llama: &Llama,
    teacher_prompt: &[u32],
    answer: &[u32],
    k: usize,
) -> Result<SoftTargets> {
    SoftTargets::top_k(&teacher_rows(llama, teacher_prompt, answer)?, k)
}

/// The base model's logits for every token of `answer` after `teacher_prompt`
/// (`(answer.len(), vocab)`, detached): one forward pass.
fn teacher_rows(llama: &Llama, teacher_prompt: &[u32], answer: &[u32]) -> Result<Tensor> {
    if teacher_prompt.is_empty() || answer.is_empty() {
        return Err(Error::NoData("an empty teacher prompt or answer".into()));
    }
    let mut tokens = teacher_prompt.to_vec();
    tokens.extend_from_slice(&answer[..answer.len() - 1]);
    let mut cache = KvCache::new(llama.config(), tokens.len());
    let rows = llama.forward_from(&tokens, &mut cache, None, teacher_prompt.len() - 1)?;
    Ok(rows.detach())
}

/// Turns replay windows into distilled ones whose teacher is the base model itself on
/// the same text: each window's targets become the base model's top-`k`
/// log-probabilities and the mass of the rest at every target position
/// ([`SoftTargets::top_k_with_rest`]), so training pulls the adapter's distributions on general
/// text back to the model's own instead of towards the windows' tokens. Why: a few
/// fixed passages replayed by cross-entropy are memorised (24 passages, each seen
/// about ten times in 150 steps at replay 0.4, while forgetting measured on other
/// passages rose to +73%); matching the base model's outputs on general text is
/// what not forgetting means, and there is nothing in it to memorise (the
/// distillation term of Li & Hoiem's Learning without Forgetting, 2016).
pub fn anchor_to_base(llama: &Llama, replay: &mut [Sequence], k: usize) -> Result<()> {
    for seq in replay.iter_mut() {
        let from = seq.loss_from.max(1);
        let rows = teacher_rows(llama, &seq.tokens[..from], &seq.tokens[from..])?;
        // With the tail's mass: matching the base model means its tail too.
        let soft = SoftTargets::top_k_with_rest(&rows, k)?;
        seq.soft = Some(std::sync::Arc::new(soft));
    }
    Ok(())
}

/// What distillation made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistillCounts {
    /// Questions given.
    pub questions: usize,
    /// Training sequences made (teacher answers that fit).
    pub examples: usize,
    /// Answer tokens with teacher targets.
    pub answer_tokens: usize,
}

/// The models and prompts distillation runs: the serving model samples the teacher's
/// answers, the trainable model gives its logits and tokenizes.
#[derive(Clone, Copy)]
pub struct Teacher<'a> {
    /// The trainable (F32) model.
    pub trainable: &'a TrainableModel,
    /// The serving model.
    pub chat: &'a dyn LanguageModel,
    /// Teacher and student prompts.
    pub prompt: PromptBuilder<'a>,
}

/// Makes the student's training sequences for `questions`: the teacher (`chat` with
/// the rag prompt) samples answers, the trainable model's teacher pass gives the top-k
/// targets (kept unless the loss is next-token). Sequences longer than `max_len` and
/// empty answers are skipped. `progress(done, total)` after each question.
pub fn build_examples(
    teacher: Teacher<'_>,
    questions: &[DistillQuestion],
    cfg: &DistillConfig,
    seed: u64,
    max_len: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<Sequence>, DistillCounts)> {
    cfg.validate()?;
    let Teacher {
        trainable,
        chat,
        prompt,
    } = teacher;
    let tok = trainable.chat().tokenizer();
    let template = trainable.chat().template();
    let end = tok.special("<|im_end|>").unwrap_or(0);
    let mut counts = DistillCounts {
        questions: questions.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        let teacher_msgs = prompt(&q.question, &q.passages);
        let student = template.encode(&prompt(&q.question, &[]), tok)?;
        let teacher = template.encode(&teacher_msgs, tok)?;
        for s in 0..cfg.samples {
            let options = GenerationOptions {
                max_tokens: cfg.max_answer_tokens,
                temperature: cfg.temperature,
                top_p: 0.95,
                seed: mix(seed ^ crate::synth::hash_str(&q.question) ^ mix(s as u64)),
            };
            let reply = chat.complete(&GenerationRequest {
                messages: &teacher_msgs,
                options: &options,
                adapter: None,
                interrupt: None,
            })?;
            let mut answer = tok.encode(reply.text.trim())?;
            if answer.is_empty() {
                continue;
            }
            answer.push(end);
            if student.len() + answer.len() > max_len {
                continue;
            }
            let soft = match cfg.loss {
                DistillLoss::NextToken => None,
                loss => {
                    let llama = trainable.llama();
                    let rows = teacher_rows(llama, &teacher, &answer)?;
                    let mut soft = SoftTargets::top_k(&rows, cfg.top_k)?;
                    if loss == DistillLoss::KlNextToken {
                        soft.hard_weight = 1.0;
                    }
                    if cfg.token_weights == TokenWeights::ContextGain {
                        let closed_book = teacher_rows(llama, &student, &answer)?;
                        soft.row_weights = Some(context_gain(&rows, &closed_book, &answer)?);
                    }
                    Some(Arc::new(soft))
                }
            };
            counts.answer_tokens += answer.len();
            let mut tokens = student.clone();
            tokens.extend(&answer);
            out.push(Sequence {
                tokens,
                loss_from: student.len(),
                soft,
            });
        }
        progress(i + 1, questions.len());
    }
    counts.examples = out.len();
    Ok((out, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{tiny_examples, tiny_model};

    fn t(rows: &[&[f32]]) -> Tensor {
        let v: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(v, (rows.len(), rows[0].len()), &candle_core::Device::Cpu).unwrap()
    }

    fn scalar(x: &Tensor) -> f64 {
        x.to_scalar::<f32>().unwrap() as f64
    }

    #[test]
    fn kl_is_zero_when_the_student_equals_the_teacher_and_matches_a_scalar_reference() {
        let teacher = t(&[&[2.0, 0.5, -1.0, 0.0], &[0.1, 0.2, 3.0, -2.0]]);
        // k = vocabulary: the same logits give KL 0.
        let all = SoftTargets::top_k(&teacher, 4).unwrap();
        assert_eq!(all.rows(), 2);
        assert!(scalar(&kl_loss(&teacher, &all).unwrap()).abs() < 1e-6);
        // Top-2 per row, sorted by logit.
        let top = SoftTargets::top_k(&teacher, 2).unwrap();
        assert_eq!(top.ids, vec![0, 1, 2, 1]);
        // Reference by hand: p renormalised on the top 2; q the full softmax there.
        let student = t(&[&[0.0, 1.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 2.0]]);
        let (s, tl): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
            (student.to_vec2().unwrap(), teacher.to_vec2().unwrap());
        let mut want = 0.0;
        for r in 0..2 {
            let ids = &top.ids[r * 2..r * 2 + 2];
            let zt: f64 = ids.iter().map(|&i| (tl[r][i as usize] as f64).exp()).sum();
            let zs: f64 = s[r].iter().map(|&x| (x as f64).exp()).sum();
            for &i in ids {
                let p = (tl[r][i as usize] as f64).exp() / zt;
                let q = (s[r][i as usize] as f64).exp() / zs;
                want += p * (p / q).ln();
            }
        }
        want /= 2.0;
        let got = scalar(&kl_loss(&student, &top).unwrap());
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // Equal logits but k < vocabulary: KL = -log(student mass on the top k) >= 0.
        let own = scalar(&kl_loss(&teacher, &top).unwrap());
        assert!(own > 0.0 && own < got, "{own}");
        assert!(kl_loss(
            &teacher,
            &SoftTargets::top_k(&t(&[&[1.0, 2.0]]), 2).unwrap()
        )
        .is_err());
    }

    #[test]
    fn kl_gradient_raises_the_teachers_token_and_lowers_the_others() {
        let teacher = t(&[&[3.0, 0.0, 0.0]]);
        let soft = SoftTargets::top_k(&teacher, 3).unwrap();
        let var = candle_core::Var::from_tensor(&t(&[&[0.0, 0.0, 0.0]])).unwrap();
        let loss = kl_loss(var.as_tensor(), &soft).unwrap();
        let grad = loss.backward().unwrap();
        let g: Vec<Vec<f32>> = grad.get(var.as_tensor()).unwrap().to_vec2().unwrap();
        // d KL / d logit = q - p: negative for the teacher's favourite, positive elsewhere.
        assert!(g[0][0] < 0.0 && g[0][1] > 0.0 && g[0][2] > 0.0, "{g:?}");
        assert!((g[0].iter().sum::<f32>()).abs() < 1e-6);
    }

    #[test]
    fn kl_with_the_rest_is_zero_for_the_teacher_itself_and_matches_a_scalar_reference() {
        let teacher = t(&[&[2.0, 0.5, -1.0, 0.0], &[0.1, 0.2, 3.0, -2.0]]);
        let soft = SoftTargets::top_k_with_rest(&teacher, 2).unwrap();
        // The same distribution: zero, unlike renormalised top-k targets.
        assert!(scalar(&kl_loss(&teacher, &soft).unwrap()).abs() < 1e-6);
        let student = t(&[&[0.0, 1.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 2.0]]);
        let (s, tl): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
            (student.to_vec2().unwrap(), teacher.to_vec2().unwrap());
        let softmax = |row: &[f32]| -> Vec<f64> {
            let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
            row.iter().map(|&x| (x as f64).exp() / z).collect()
        };
        let mut want = 0.0;
        for r in 0..2 {
            let (p, q) = (softmax(&tl[r]), softmax(&s[r]));
            let ids = &soft.ids[r * 2..r * 2 + 2];
            let (mut p_rest, mut q_rest) = (1.0, 1.0);
            for &i in ids {
                let (pi, qi) = (p[i as usize], q[i as usize]);
                want += pi * (pi / qi).ln();
                p_rest -= pi;
                q_rest -= qi;
            }
            want += p_rest * (p_rest / q_rest).ln();
        }
        want /= 2.0;
        let got = scalar(&kl_loss(&student, &soft).unwrap());
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn replay_anchored_to_the_base_costs_the_base_nothing() {
        let model = tiny_model();
        let mut replay = crate::data::windows(&[3, 9, 4, 1, 7, 2, 8, 5, 6, 11], 6);
        anchor_to_base(&model, &mut replay, 4).unwrap();
        for seq in &replay {
            let soft = seq.soft.as_ref().expect("anchored");
            assert_eq!(soft.rows(), seq.target_count());
            // The base against its own distribution (top 4 and the rest): zero, below
            // the loss of the same model against another sequence's targets.
            let own = scalar(&sequence_kl(&model, seq, soft, None).unwrap());
            assert!(own.abs() < 1e-4, "{own}");
            let shifted = Sequence {
                tokens: seq.tokens.iter().map(|t| (t + 1) % 12).collect(),
                ..seq.clone()
            };
            let other = scalar(&sequence_kl(&model, &shifted, soft, None).unwrap());
            assert!(own < other, "{own} vs {other}");
        }
    }

    #[test]
    fn the_mixed_loss_is_kl_plus_the_weighted_cross_entropy_of_the_sampled_tokens() {
        let model = tiny_model();
        let seq = &tiny_examples()[0];
        let answer = &seq.tokens[seq.loss_from..];
        let mut teacher_prompt = vec![7, 8, 9];
        teacher_prompt.extend_from_slice(&seq.tokens[..seq.loss_from]);
        let mut soft = teacher_targets(&model, &teacher_prompt, answer, 8).unwrap();
        let kl = scalar(&sequence_kl(&model, seq, &soft, None).unwrap());
        let ce = scalar(
            &model
                .next_token_loss(&seq.tokens, seq.loss_from, None)
                .unwrap(),
        );
        soft.hard_weight = 0.5;
        let mixed = scalar(&sequence_kl(&model, seq, &soft, None).unwrap());
        assert!(kl > 0.0 && ce > 0.0, "{kl} {ce}");
        assert!(
            (mixed - (kl + 0.5 * ce)).abs() < 1e-4,
            "{mixed} vs {kl} + 0.5 * {ce}"
        );
        // Equal token weights change nothing; weight on one row changes both terms.
        let rows = soft.rows();
        soft.row_weights = Some(vec![1.0; rows]);
        let equal = scalar(&sequence_kl(&model, seq, &soft, None).unwrap());
        assert!((equal - mixed).abs() < 1e-5, "{equal} vs {mixed}");
        let mut skew = vec![0.0; rows];
        skew[0] = rows as f32;
        soft.row_weights = Some(skew);
        let first_only = scalar(&sequence_kl(&model, seq, &soft, None).unwrap());
        assert!((first_only - mixed).abs() > 1e-4, "{first_only} vs {mixed}");
    }

    #[test]
    fn a_tiny_student_trained_by_kl_moves_towards_its_teacher() {
        let model = tiny_model();
        let seq = &tiny_examples()[0];
        let prompt = &seq.tokens[..seq.loss_from];
        let answer = &seq.tokens[seq.loss_from..];
        // The teacher reads a longer prompt (context) before the same answer.
        let mut teacher_prompt = vec![7, 8, 9];
        teacher_prompt.extend_from_slice(prompt);
        let soft = teacher_targets(&model, &teacher_prompt, answer, 8).unwrap();
        assert_eq!(soft.rows(), answer.len());
        let seq = Sequence {
            soft: Some(Arc::new(soft)),
            ..seq.clone()
        };
        let cfg = crate::TrainConfig {
            lora: crate::LoraConfig {
                rank: 4,
                alpha: 8.0,
                dropout: 0.0,
                ..Default::default()
            },
            learning_rate: 1e-2,
            warmup_steps: 1,
            steps: 15,
            grad_accum: 1,
            replay_ratio: 0.0,
            ..Default::default()
        };
        let before = scalar(&sequence_kl(&model, &seq, seq.soft.as_ref().unwrap(), None).unwrap());
        let out = crate::train(
            &model,
            std::slice::from_ref(&seq),
            &[],
            &cfg,
            None,
            &mut |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap();
        let adapter = out.adapter("s").unwrap();
        let after =
            scalar(&sequence_kl(&model, &seq, seq.soft.as_ref().unwrap(), Some(&adapter)).unwrap());
        assert!(before > 0.0 && after < 0.5 * before, "{before} -> {after}");
        assert!(DistillLoss::parse("next-token") == Some(DistillLoss::NextToken));
        assert!(DistillLoss::parse("kl+next-token") == Some(DistillLoss::KlNextToken));
        assert!(DistillConfig {
            top_k: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
