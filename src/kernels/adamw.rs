//! One AdamW update of a parameter tensor in a single pass over θ, its gradient and moments.
//!
//! Composite candle ops take a dozen passes per tensor (one per op, each allocating); this op
//! reads θ, g, m and v once and writes θ′, m′ and v′ into one `[3, …]` buffer.

use super::cpu::{float_dispatch, guarded, multiversion, slice, Float};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
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

/// `CustomOp2(θ, g)` → `[3, …]`: θ′, m′, v′; the moments travel inside the op.
struct AdamWUpdate {
    hyper: Hyper,
    m: Tensor,
    v: Tensor,
}

multiversion! {
    /// The update of one chunk, as `AdamW::step`'s composite reference has it.
    #[allow(clippy::too_many_arguments)]
    fn update_chunk<T>(theta: &mut [T], m_out: &mut [T], v_out: &mut [T], th: &[T], g: &[T], m: &[T], v: &[T], h: Hyper) {
        let c = |x: f64| T::from_f64(x);
        let (b1, b2, bc2, eps, step, decay) = (c(h.beta1), c(h.beta2), c(h.bc2), c(h.eps), c(h.step), c(h.decay));
        let (one_b1, one_b2, scale) = (c(1.0 - h.beta1), c(1.0 - h.beta2), c(h.grad_scale));
        for i in 0..theta.len() {
            let gi = g[i] * scale;
            let mi = m[i] * b1 + gi * one_b1;
            let vi = v[i] * b2 + gi * gi * one_b2;
            m_out[i] = mi;
            v_out[i] = vi;
            theta[i] = th[i] * decay - mi * step / ((vi / bc2).sqrt() + eps);
        }
    }
}

impl AdamWUpdate {
    fn run<T: Float>(
        &self,
        th: &CpuStorage,
        thl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (mg, vg) = (self.m.storage_and_layout(), self.v.storage_and_layout());
        let (ml, vl) = (mg.1, vg.1);
        let (th, g, m, v) =
            (slice::<T>(th, thl, name)?, slice::<T>(g, gl, name)?, guarded::<T>(&mg, name)?, guarded::<T>(&vg, name)?);
        let n = th.len();
        if [gl.dims(), ml.dims(), vl.dims()].iter().any(|d| *d != thl.dims()) {
            return Err(candle_core::Error::Msg(format!(
                "{name}: θ {:?}, gradient {:?} and moments {:?}, {:?} differ in shape",
                thl.dims(),
                gl.dims(),
                ml.dims(),
                vl.dims()
            )));
        }
        let mut out = vec![T::zero(); 3 * n];
        let (theta, rest) = out.split_at_mut(n);
        let (m_out, v_out) = rest.split_at_mut(n);
        theta
            .par_chunks_mut(CHUNK)
            .zip(m_out.par_chunks_mut(CHUNK))
            .zip(v_out.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(k, ((t, mo), vo))| {
                let span = k * CHUNK..k * CHUNK + t.len();
                update_chunk(t, mo, vo, &th[span.clone()], &g[span.clone()], &m[span.clone()], &v[span], self.hyper);
            });
        let mut dims = vec![3];
        dims.extend_from_slice(thl.dims());
        Ok((T::to_cpu_storage_owned(out), Shape::from(dims)))
    }
}

impl CustomOp2 for AdamWUpdate {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(
        &self,
        th: &CpuStorage,
        thl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(th, self.name(), T => self.run::<T>(th, thl, g, gl))
    }
}

/// θ′, m′ and v′ of one AdamW update in one pass, or `None` where the fused kernels do not run
/// (then the caller takes the composite path).
pub(crate) fn update(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    hyper: Hyper,
) -> candle_core::Result<Option<(Tensor, Tensor, Tensor)>> {
    let cpu = [theta, g, m, v].iter().all(|t| t.device().is_cpu() && t.dtype() == theta.dtype());
    if !cpu || !super::cpu::supported(theta.dtype()) {
        return Ok(None);
    }
    let op = AdamWUpdate { hyper, m: m.contiguous()?, v: v.contiguous()? };
    let packed = theta.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &op)?;
    Ok(Some((packed.get(0)?, packed.get(1)?, packed.get(2)?)))
}
