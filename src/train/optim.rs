//! AdamW with decoupled weight decay, global-norm clipping and a warm-up + linear-decay schedule.

use crate::error::{Error, Result};
use crate::kernels::adamw::{self, Hyper};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters (PyTorch's `torch.optim.AdamW` semantics).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Exponential decay of the first moment.
    pub beta1: f64,
    /// Exponential decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// AdamW over a list of variables; state is kept per variable, and a variable that gets no
/// gradient in a step is left untouched (as PyTorch does for `grad is None`). The update
/// rewrites the moments in place: [`AdamW::try_clone`] makes an independent copy.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    state: Vec<Option<Moments>>,
}

/// First and second moments of one variable and how many updates it has had.
///
/// The moments live together in one `[2, …]` tensor that the update rewrites in place (on
/// the CPU); [`Moments::try_clone`] copies them.
#[derive(Debug)]
pub struct Moments {
    /// First and second moment, stacked.
    mv: Tensor,
    /// Number of updates so far (for bias correction).
    pub t: u64,
}

impl Moments {
    /// Moments `m` and `v` (of one shape) after `t` updates.
    pub fn new(m: &Tensor, v: &Tensor, t: u64) -> Result<Self> {
        if m.dims() != v.dims() {
            return Err(Error::Shape(format!("moments of shapes {:?} and {:?}", m.dims(), v.dims())));
        }
        Ok(Moments { mv: Tensor::stack(&[m, v], 0)?, t })
    }

    /// Zero moments for a variable like `like`.
    fn zeros_like(like: &Tensor) -> Result<Self> {
        let mut dims = vec![2];
        dims.extend_from_slice(like.dims());
        Ok(Moments { mv: Tensor::zeros(dims, like.dtype(), like.device())?, t: 0 })
    }

    /// The first moment.
    pub fn m(&self) -> Result<Tensor> {
        Ok(self.mv.get(0)?)
    }

    /// The second moment.
    pub fn v(&self) -> Result<Tensor> {
        Ok(self.mv.get(1)?)
    }
}

impl Moments {
    /// An independent copy (the moments are copied, not shared).
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Moments { mv: self.mv.copy()?, t: self.t })
    }
}

impl AdamW {
    /// An optimiser for `n` variables.
    pub fn new(config: AdamWConfig, n: usize) -> Self {
        AdamW { config, state: (0..n).map(|_| None).collect() }
    }

    /// An independent copy of the optimiser and its state (moments copied, not shared).
    pub fn try_clone(&self) -> Result<Self> {
        let state = self.state.iter().map(|s| s.as_ref().map(Moments::try_clone).transpose()).collect::<Result<_>>()?;
        Ok(AdamW { config: self.config, state })
    }

    /// The per-variable state (for checkpoints).
    pub fn state(&self) -> &[Option<Moments>] {
        &self.state
    }

    /// Restores per-variable state saved by a checkpoint.
    pub fn set_state(&mut self, state: Vec<Option<Moments>>) -> Result<()> {
        if state.len() != self.state.len() {
            return Err(Error::Shape(format!(
                "optimiser state for {} variables, expected {}",
                state.len(),
                self.state.len()
            )));
        }
        self.state = state;
        Ok(())
    }

    /// One update of `vars[i]` with `grads[i]` (skipped where `None`) at learning rate `lr`;
    /// `decay[i]` says whether weight decay applies.
    pub fn step(&mut self, vars: &[&Var], grads: &[Option<Tensor>], decay: &[bool], lr: f64) -> Result<()> {
        self.step_scaled(vars, grads, decay, lr, 1.0)
    }

    /// As [`AdamW::step`] with every gradient multiplied by `scale` first (gradient clipping's
    /// factor, applied inside the update rather than as a separate pass).
    pub fn step_scaled(
        &mut self,
        vars: &[&Var],
        grads: &[Option<Tensor>],
        decay: &[bool],
        lr: f64,
        scale: f64,
    ) -> Result<()> {
        let c = self.config;
        let n = self.state.len();
        if vars.len() != n || grads.len() != n || decay.len() != n {
            return Err(Error::Shape(format!(
                "AdamW over {n} variables got {} variables, {} gradients and {} decay flags",
                vars.len(),
                grads.len(),
                decay.len()
            )));
        }
        let mut gpu_jobs = Vec::new();
        for (i, (var, grad)) in vars.iter().zip(grads).enumerate() {
            let Some(g) = grad else { continue };
            let g = g.detach();
            if self.state[i].is_none() {
                self.state[i] = Some(Moments::zeros_like(&g)?);
            }
            let Some(st) = self.state[i].as_mut() else { continue };
            st.t += 1;
            let bc1 = 1.0 - c.beta1.powi(st.t as i32);
            let bc2 = 1.0 - c.beta2.powi(st.t as i32);
            let decay_factor = if decay[i] { 1.0 - lr * c.weight_decay } else { 1.0 };
            let theta = var.as_tensor();
            let hyper = Hyper {
                step: lr / bc1,
                beta1: c.beta1,
                beta2: c.beta2,
                bc2,
                eps: c.eps,
                decay: decay_factor,
                grad_scale: scale,
            };
            if adamw::batched(theta, &g, &st.mv) {
                // On a GPU: all tensors in one launch, after the loop.
                gpu_jobs.push(adamw::Job { theta: theta.clone(), g, mv: st.mv.clone(), hyper });
                continue;
            }
            if adamw::update(theta, &g, &st.mv, hyper)? {
                // In place on the CPU (crate::kernels::adamw); the same arithmetic as below.
                continue;
            }
            let g = if scale == 1.0 { g } else { (g * scale)? };
            let m = ((st.m()? * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((st.v()? * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((&v / bc2)?.sqrt()? + c.eps)?;
            let update = ((&m * (lr / bc1))? / denom)?;
            let theta = if decay[i] { (theta * decay_factor)? } else { theta.clone() };
            var.set(&(theta - update)?)?;
            st.mv = Tensor::stack(&[&m, &v], 0)?;
        }
        adamw::update_all(&gpu_jobs)?;
        Ok(())
    }
}

/// Scales gradients so their global L2 norm is at most `max_norm` (no-op when `max_norm`
/// is 0) and returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    let scale = clip_scale(norm, max_norm);
    if scale != 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

/// The global L2 norm of `grads` (summed in f64; 0 for none).
pub fn global_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut elsewhere = Vec::new();
    let mut sum = 0.0;
    for g in grads.iter().flatten() {
        // On the CPU one pass per tensor (crate::kernels); on a GPU one kernel per tensor.
        match crate::kernels::gram::sum_squares(g)? {
            Some(s) => sum += s,
            None => elsewhere.push(g),
        }
    }
    if let Some(s) = crate::kernels::gram::sum_squares_on_device(&elsewhere)? {
        sum += s;
    } else if !elsewhere.is_empty() {
        let squares = elsewhere
            .iter()
            .map(|g| g.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        sum += Tensor::stack(&squares, 0)?.sum_all()?.to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}

/// The factor that scales gradients of global norm `norm` to at most `max_norm` (1 when they
/// are within it, or when `max_norm` is 0: no clipping).
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

/// Learning rate at 0-based `step`: linear warm-up over `warmup` steps to `peak`, then linear
/// decay to 0 at `total`.
///
/// ```
/// use interference::train::learning_rate;
/// assert_eq!(learning_rate(1.0, 0, 10, 110), 0.1);
/// assert_eq!(learning_rate(1.0, 9, 10, 110), 1.0);
/// assert!((learning_rate(1.0, 60, 10, 110) - 0.5).abs() < 1e-12);
/// ```
pub fn learning_rate(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let left = total.saturating_sub(step) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    peak * (left / span).clamp(0.0, 1.0)
}
