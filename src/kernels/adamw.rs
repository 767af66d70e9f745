//! One AdamW update of a parameter tensor in place, in two passes: the moments (stored
//! together as `[2, …]`) from the gradient, then θ from the moments.
//!
//! Composite candle ops take a dozen passes per tensor (one per op, each allocating); here
//! nothing is allocated, and the optimiser state is exactly the two moments.

use super::cpu::{float_dispatch, multiversion, slice, slice_mut};
use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

/// Elements per task.
const CHUNK: usize = 16_384;

/// The scalars of one update (bias corrections and decay already folded in).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hyper {
    /// `lr / (1 − β1ᵗ)`.
    pub step: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// `1 − β2ᵗ`.
    pub bc2: f64,
    pub eps: f64,
    /// What θ is multiplied by first: `1 − lr·weight_decay`, or 1.
    pub decay: f64,
    /// What the gradient is multiplied by first (gradient clipping), or 1.
    pub grad_scale: f64,
}

multiversion! {
    /// `m ← β1·m + (1−β1)·s·g`, `v ← β2·v + (1−β2)·(s·g)²` over one chunk.
    fn moments_chunk<T>(m: &mut [T], v: &mut [T], g: &[T], h: Hyper) {
        let c = |x: f64| T::from_f64(x);
        let (b1, b2, one_b1, one_b2, scale) = (c(h.beta1), c(h.beta2), c(1.0 - h.beta1), c(1.0 - h.beta2), c(h.grad_scale));
        for ((m, v), &g) in m.iter_mut().zip(v.iter_mut()).zip(g) {
            let g = g * scale;
            *m = *m * b1 + g * one_b1;
            *v = *v * b2 + g * g * one_b2;
        }
    }
}

multiversion! {
    /// `θ ← decay·θ − step·m / (√(v / bc2) + ε)` over one chunk.
    fn theta_chunk<T>(theta: &mut [T], m: &[T], v: &[T], h: Hyper) {
        let c = |x: f64| T::from_f64(x);
        let (bc2, eps, step, decay) = (c(h.bc2), c(h.eps), c(h.step), c(h.decay));
        for ((t, &m), &v) in theta.iter_mut().zip(m).zip(v) {
            *t = *t * decay - m * step / ((v / bc2).sqrt() + eps);
        }
    }
}

/// The first pass, `InplaceOp2(mv, g)`: the moments `[2, …]` from the gradient.
struct MomentsUpdate(Hyper);

/// The second pass, `InplaceOp2(θ, mv)`: θ from the updated moments.
struct ThetaUpdate(Hyper);

/// Checks that `mv` holds two moments of `n` elements each.
fn halves<'a, T>(mv: &'a [T], n: usize, op: &str) -> candle_core::Result<(&'a [T], &'a [T])> {
    if mv.len() != 2 * n {
        return Err(candle_core::Error::Msg(format!("{op}: moments of {} elements for {n} parameters", mv.len())));
    }
    Ok(mv.split_at(n))
}

impl InplaceOp2 for MomentsUpdate {
    fn name(&self) -> &'static str {
        "fused-adamw-moments"
    }

    fn cpu_fwd(&self, mv: &mut CpuStorage, mvl: &Layout, g: &CpuStorage, gl: &Layout) -> candle_core::Result<()> {
        let name = InplaceOp2::name(self);
        float_dispatch!(g, name, T => {
            let g = slice::<T>(g, gl, name)?;
            let mv = slice_mut::<T>(mv, mvl, name)?;
            halves(mv, g.len(), name)?;
            let (m, v) = mv.split_at_mut(g.len());
            m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)).zip(g.par_chunks(CHUNK))
                .for_each(|((m, v), g)| moments_chunk(m, v, g, self.0));
            Ok(())
        })
    }
}

impl InplaceOp2 for ThetaUpdate {
    fn name(&self) -> &'static str {
        "fused-adamw-theta"
    }

    fn cpu_fwd(&self, th: &mut CpuStorage, thl: &Layout, mv: &CpuStorage, mvl: &Layout) -> candle_core::Result<()> {
        let name = InplaceOp2::name(self);
        float_dispatch!(mv, name, T => {
            let theta = slice_mut::<T>(th, thl, name)?;
            let (m, v) = halves(slice::<T>(mv, mvl, name)?, theta.len(), name)?;
            theta.par_chunks_mut(CHUNK).zip(m.par_chunks(CHUNK)).zip(v.par_chunks(CHUNK))
                .for_each(|((t, m), v)| theta_chunk(t, m, v, self.0));
            Ok(())
        })
    }
}

/// One AdamW update of `theta` and its moments `mv` (`[2, …]`: first, second) in place, or
/// `false` where the fused kernels do not run (then the caller takes the composite path).
pub(crate) fn update(theta: &Tensor, g: &Tensor, mv: &Tensor, hyper: Hyper) -> candle_core::Result<bool> {
    let fits = [theta, g, mv].iter().all(|t| t.device().is_cpu() && t.dtype() == theta.dtype() && t.is_contiguous());
    if !fits || !super::cpu::supported(theta.dtype()) {
        return Ok(false);
    }
    if g.dims() != theta.dims() || mv.dims().first() != Some(&2) || mv.dims()[1..] != *theta.dims() {
        return Err(candle_core::Error::Msg(format!(
            "fused-adamw: θ {:?}, gradient {:?} and moments {:?} do not fit",
            theta.dims(),
            g.dims(),
            mv.dims()
        )));
    }
    mv.inplace_op2(g, &MomentsUpdate(hyper))?;
    theta.inplace_op2(mv, &ThetaUpdate(hyper))?;
    Ok(true)
}

/// One tensor's AdamW update, for [`update_all`].
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) struct Job {
    pub theta: Tensor,
    pub g: Tensor,
    /// The moments `[2, …]`: first, second.
    pub mv: Tensor,
    pub hyper: Hyper,
}

/// Whether [`update_all`] takes an update of `theta` with gradient `g` and moments `mv`: f32
/// tensors, contiguous, on one CUDA device, of fitting shapes.
pub(crate) fn batched(theta: &Tensor, g: &Tensor, mv: &Tensor) -> bool {
    let fits = |t: &Tensor| super::cuda_f32(t) && t.device().same_device(theta.device()) && t.is_contiguous();
    [theta, g, mv].into_iter().all(fits)
        && g.dims() == theta.dims()
        && mv.dims().first() == Some(&2)
        && mv.dims()[1..] == *theta.dims()
}

/// The AdamW updates of `jobs` (each [`batched`]) in place: on CUDA one kernel launch for all
/// of them (a model's optimiser step is one launch, as PyTorch's multi-tensor AdamW).
pub(crate) fn update_all(jobs: &[Job]) -> candle_core::Result<()> {
    #[cfg(feature = "cuda")]
    {
        let guards: Vec<_> = jobs
            .iter()
            .map(|j| [j.theta.storage_and_layout(), j.g.storage_and_layout(), j.mv.storage_and_layout()])
            .collect();
        let cuda = |s, l| super::cuda::storage(s, l, "fused-adamw");
        let list = guards
            .iter()
            .zip(jobs)
            .map(|([t, g, mv], job)| {
                let h = job.hyper;
                let (b1, b2) = (h.beta1, h.beta2);
                let scalars =
                    [h.step, h.decay, h.bc2, h.grad_scale, b1, b2, 1.0 - b1, 1.0 - b2, h.eps].map(|x| x as f32);
                Ok(super::cuda::AdamWJob {
                    theta: cuda(&t.0, t.1)?,
                    g: cuda(&g.0, g.1)?,
                    mv: cuda(&mv.0, mv.1)?,
                    scalars,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        super::cuda::adamw_all(&list)
    }
    #[cfg(not(feature = "cuda"))]
    match jobs {
        [] => Ok(()),
        _ => Err(candle_core::Error::Msg("fused-adamw: batched updates need the cuda feature".into())),
    }
}
