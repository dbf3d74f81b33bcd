//! AdamW whose state can be saved and restored, and the learning-rate schedule.
//!
//! Why not `candle_nn::AdamW` itself: its moments are private, so a checkpoint could not
//! hold them and a resumed run would restart the moments from zero (different weights
//! than an uninterrupted run). This is the same algorithm with candle_nn's
//! [`ParamsAdamW`], implementing candle_nn's [`Optimizer`] trait, tested step for step
//! against `candle_nn::AdamW`; it also takes gradients as a plain list (accumulated over
//! micro-batches, which `GradStore` cannot be built for outside candle).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};

use crate::error::{Error, Result};

/// AdamW over a fixed list of variables, with exportable moments.
pub struct AdamW {
    vars: Vec<Var>,
    first: Vec<Var>,
    second: Vec<Var>,
    step_t: usize,
    params: ParamsAdamW,
}

impl AdamW {
    /// Zero moments for `vars`.
    pub fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<Self> {
        let zeros = |v: &Var| Var::zeros(v.shape(), v.dtype(), v.device());
        let first = vars.iter().map(zeros).collect::<candle_core::Result<_>>()?;
        let second = vars.iter().map(zeros).collect::<candle_core::Result<_>>()?;
        Ok(Self {
            vars,
            first,
            second,
            step_t: 0,
            params,
        })
    }

    /// One update with `grads[i]` the gradient of `vars[i]` (None: no update of it).
    pub fn step_with(&mut self, grads: &[Option<Tensor>]) -> Result<()> {
        if grads.len() != self.vars.len() {
            return Err(Error::InvalidConfig(format!(
                "{} gradients for {} variables",
                grads.len(),
                self.vars.len()
            )));
        }
        self.step_t += 1;
        let p = &self.params;
        let t = self.step_t as f64;
        let scale_m = 1.0 / (1.0 - p.beta1.powf(t));
        let scale_v = 1.0 / (1.0 - p.beta2.powf(t));
        for (i, grad) in grads.iter().enumerate() {
            let Some(g) = grad else { continue };
            let (theta, m, v) = (&self.vars[i], &self.first[i], &self.second[i]);
            let next_m = ((m.as_tensor() * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let next_v = ((v.as_tensor() * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let next_theta = (theta.as_tensor() * (1.0 - p.lr * p.weight_decay))?;
            let adjusted = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            let next_theta = (next_theta - (adjusted * p.lr)?)?;
            m.set(&next_m)?;
            v.set(&next_v)?;
            theta.set(&next_theta)?;
        }
        Ok(())
    }

    /// Sets the learning rate of the next updates (the schedule).
    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// Updates taken so far.
    pub fn step_count(&self) -> usize {
        self.step_t
    }

    /// The hyper-parameters.
    pub fn params(&self) -> &ParamsAdamW {
        &self.params
    }

    /// The moments `(first, second)` of every variable, in variable order (checkpoints).
    pub fn moments(&self) -> Vec<(Tensor, Tensor)> {
        self.first
            .iter()
            .zip(&self.second)
            .map(|(m, v)| (m.as_tensor().clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Restores moments and step count saved by [`AdamW::moments`] (resume).
    pub fn restore(&mut self, step_t: usize, moments: &[(Tensor, Tensor)]) -> Result<()> {
        if moments.len() != self.vars.len() {
            return Err(Error::InvalidConfig(format!(
                "{} saved moments for {} variables",
                moments.len(),
                self.vars.len()
            )));
        }
        for (i, (m, v)) in moments.iter().enumerate() {
            self.first[i].set(m)?;
            self.second[i].set(v)?;
        }
        self.step_t = step_t;
        Ok(())
    }
}

impl Optimizer for AdamW {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<Self> {
        AdamW::new(vars, params).map_err(candle_core::Error::wrap)
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let grads: Vec<Option<Tensor>> = self
            .vars
            .iter()
            .map(|v| grads.get(v.as_tensor()).cloned())
            .collect();
        self.step_with(&grads).map_err(candle_core::Error::wrap)
    }
}

/// Linear warm-up from 0 to `peak` over `warmup` steps, then cosine decay to
/// `peak * min_ratio` at `total` steps. `step` is 0-based (the update about to be taken).
pub fn learning_rate(step: usize, peak: f64, warmup: usize, total: usize, min_ratio: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup.min(step)) as f64 / decay_steps as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn matches_candle_nn_adamw_step_for_step_and_restores() {
        let dev = Device::Cpu;
        let init = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let target = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let params = ParamsAdamW {
            lr: 0.05,
            weight_decay: 0.01,
            ..Default::default()
        };
        let ours_var = Var::from_tensor(&init).unwrap();
        let theirs_var = Var::from_tensor(&init).unwrap();
        let mut ours = AdamW::new(vec![ours_var.clone()], params.clone()).unwrap();
        let mut theirs = candle_nn::AdamW::new(vec![theirs_var.clone()], params.clone()).unwrap();
        let loss = |v: &Var| {
            (v.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        };
        for _ in 0..5 {
            ours.step(&loss(&ours_var).backward().unwrap()).unwrap();
            theirs.step(&loss(&theirs_var).backward().unwrap()).unwrap();
        }
        let diff: f32 = crate::testing::max_diff(ours_var.as_tensor(), theirs_var.as_tensor());
        assert!(diff < 1e-6, "{diff}");
        let moved: f32 = crate::testing::max_diff(ours_var.as_tensor(), &init);
        assert!(moved > 0.1, "the optimizer moves the weights");

        // A copy restored from the moments continues exactly like the original.
        let copy_var = Var::from_tensor(ours_var.as_tensor()).unwrap();
        let mut copy = AdamW::new(vec![copy_var.clone()], params).unwrap();
        copy.restore(ours.step_count(), &ours.moments()).unwrap();
        ours.step(&loss(&ours_var).backward().unwrap()).unwrap();
        copy.step(&loss(&copy_var).backward().unwrap()).unwrap();
        let diff: f32 = crate::testing::max_diff(ours_var.as_tensor(), copy_var.as_tensor());
        assert_eq!(diff, 0.0);
        assert!(copy.restore(1, &[]).is_err());
    }

    #[test]
    fn schedule_warms_up_linearly_then_decays_by_cosine() {
        let lr = |s| learning_rate(s, 1e-3, 4, 20, 0.1);
        assert!((lr(0) - 2.5e-4).abs() < 1e-12);
        assert!((lr(3) - 1e-3).abs() < 1e-12);
        assert!((lr(4) - 1e-3).abs() < 1e-12, "peak right after warm-up");
        assert!((lr(12) - 1e-3 * (0.1 + 0.9 * 0.5)).abs() < 1e-9, "half way");
        assert!((lr(20) - 1e-4).abs() < 1e-12, "floor at the end");
        assert!((lr(50) - 1e-4).abs() < 1e-12, "stays at the floor");
        for s in 4..20 {
            assert!(lr(s + 1) <= lr(s), "monotone decay at {s}");
        }
        assert!((learning_rate(0, 1.0, 0, 10, 0.0) - 1.0).abs() < 1e-12);
    }
}
