//! LayerNorm over the last dimension, optionally of a residual sum `x + r`, in one pass per row.
//!
//! The scale and shift travel as one `[2, d]` tensor (`wb`, built with `Tensor::stack`, whose
//! backward hands each half its gradient), so the op has at most three inputs.

use super::cpu::{
    assume_init, float_dispatch, guarded, multiversion, par_written, par_written_with, slice, sum_by, sum_zip,
    supported, Float,
};
use super::elementwise::combine_into;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use std::mem::MaybeUninit;

/// Rows per task (in the backward pass, each task also sums the scale and shift gradients).
const ROWS_PER_TASK: usize = 64;

/// Fused LayerNorm (biased variance, as PyTorch): `CustomOp2(x, wb)` or `CustomOp3(x, r, wb)`.
pub(crate) struct LayerNorm {
    pub eps: f64,
}

/// Mean and reciprocal standard deviation of one row.
#[inline(always)]
fn moments<T: Float>(row: &[T], eps: T) -> (T, T) {
    let n = T::from_f64(row.len() as f64);
    let mean = sum_by(row, |x| x) / n;
    let var = sum_by(row, |x| (x - mean) * (x - mean)) / n;
    (mean, T::one() / (var + eps).sqrt())
}

/// The rows and width of `x`, checked against the other inputs.
fn rows_and_width(xl: &Layout, others: &[&Layout], wbl: &Layout, op: &str) -> candle_core::Result<(usize, usize)> {
    let d = *xl.dims().last().unwrap_or(&0);
    let n = xl.shape().elem_count() / d.max(1);
    if others.iter().any(|l| l.dims() != xl.dims()) || wbl.dims() != [2, d] || d == 0 {
        return Err(candle_core::Error::Msg(format!(
            "{op}: inputs {:?} and scale/shift {:?} do not fit",
            std::iter::once(xl).chain(others.iter().copied()).map(|l| l.dims().to_vec()).collect::<Vec<_>>(),
            wbl.dims()
        )));
    }
    Ok((n, d))
}

multiversion! {
    /// Replaces every `w.len()`-wide row of `rows` by `LN(row) · w + b`.
    fn norm_rows<T>(rows: &mut [T], w: &[T], b: &[T], eps: T) {
        for out in rows.chunks_mut(w.len()) {
            let (mean, rstd) = moments(out, eps);
            for ((o, &w), &b) in out.iter_mut().zip(w).zip(b) {
                *o = (*o - mean) * rstd * w + b;
            }
        }
    }
}

fn forward<T: Float>(x: &[T], r: Option<&[T]>, wb: &[T], d: usize, eps: f64) -> Vec<T> {
    let (w, b) = wb.split_at(d);
    let eps = T::from_f64(eps);
    let write = |start: usize, rows: &mut [MaybeUninit<T>]| {
        let span = start..start + rows.len();
        let terms: Vec<&[T]> = std::iter::once(x).chain(r).map(|t| &t[span.clone()]).collect();
        norm_rows(combine_into(rows, &terms, None), w, b, eps);
    };
    // SAFETY: `combine_into` initialises every element of each part.
    unsafe { par_written(x.len(), ROWS_PER_TASK * d, write) }
}

impl LayerNorm {
    fn run<T: Float>(
        &self,
        x: (&CpuStorage, &Layout),
        r: Option<(&CpuStorage, &Layout)>,
        wb: (&CpuStorage, &Layout),
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = "fused-layer-norm";
        let others: Vec<&Layout> = r.iter().map(|r| r.1).collect();
        let (_, d) = rows_and_width(x.1, &others, wb.1, name)?;
        let r = match r {
            Some((s, l)) => Some(slice::<T>(s, l, name)?),
            None => None,
        };
        let y = forward(slice::<T>(x.0, x.1, name)?, r, slice::<T>(wb.0, wb.1, name)?, d, self.eps);
        Ok((T::to_cpu_storage_owned(y), x.1.shape().clone()))
    }

    /// `(dx, dwb)` of the LayerNorm of `x` (or of the residual sum `x + r`) given the output
    /// gradient `Σ g` (the sum of one or more contributions), in one pass per row.
    pub(crate) fn grads(
        &self,
        x: &Tensor,
        r: Option<&Tensor>,
        wb: &Tensor,
        g: &[&Tensor],
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let d = x.dim(candle_core::D::Minus1)?;
        let n = x.elem_count() / d.max(1);
        let packed = if x.device().is_cuda() && !g.is_empty() {
            // The sums of several inputs or output gradients are materialised first.
            let s = super::elementwise::combine(&std::iter::once(x).chain(r).collect::<Vec<_>>(), None)?;
            let g = super::elementwise::combine(g, None)?;
            s.contiguous()?.apply_op3_no_bwd(&g.contiguous()?, &wb.contiguous()?, &LayerNormGrad { eps: self.eps })?
        } else {
            self.packed_grads_on_cpu(x, r, wb, g, (n, d))?
        };
        Ok((packed.narrow(0, 0, n)?.reshape(x.shape())?, packed.narrow(0, n, 2)?))
    }

    /// [`LayerNorm::grads`] on the CPU, packed as `[rows + 2, d]` (no sum materialised).
    fn packed_grads_on_cpu(
        &self,
        x: &Tensor,
        r: Option<&Tensor>,
        wb: &Tensor,
        g: &[&Tensor],
        (n, d): (usize, usize),
    ) -> candle_core::Result<Tensor> {
        let name = "fused-layer-norm-grad";
        let on_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == x.dtype();
        if !(std::iter::once(x).chain(r).chain(g.iter().copied()).all(on_cpu) && supported(x.dtype())) || g.is_empty() {
            return Err(candle_core::Error::Msg(format!(
                "{name}: needs f32 or f64 CPU tensors of one dtype and at least one output gradient"
            )));
        }
        let (x, wb) = (x.contiguous()?, wb.contiguous()?);
        let r = r.map(Tensor::contiguous).transpose()?;
        let g = g.iter().map(|t| t.contiguous()).collect::<candle_core::Result<Vec<_>>>()?;
        let (xg, wbg) = (x.storage_and_layout(), wb.storage_and_layout());
        let rg = r.as_ref().map(|r| r.storage_and_layout());
        let gg: Vec<_> = g.iter().map(|t| t.storage_and_layout()).collect();
        let others: Vec<&Layout> = rg.iter().chain(&gg).map(|s| s.1).collect();
        rows_and_width(xg.1, &others, wbg.1, name)?;
        let packed = float_dispatch!(dtype x.dtype(), name, T => {
            let r = rg.as_ref().map(|r| guarded::<T>(r, name)).transpose()?;
            let g = gg.iter().map(|s| guarded::<T>(s, name)).collect::<candle_core::Result<Vec<_>>>()?;
            let out = backward(guarded::<T>(&xg, name)?, r, guarded::<T>(&wbg, name)?, &g, d, self.eps);
            Tensor::from_vec(out, (n + 2, d), x.device())
        });
        packed
    }
}

/// The LayerNorm backward pass as an op, `CustomOp3(s, g, wb)` → `[rows + 2, d]` (the input
/// gradient's rows, then the scale's and the shift's gradients) for the (summed) input `s` and
/// output gradient `g`: how [`LayerNorm::grads`] runs on CUDA.
struct LayerNormGrad {
    eps: f64,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        sl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        wb: &CpuStorage,
        wbl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (n, d) = rows_and_width(sl, &[gl], wbl, name)?;
        float_dispatch!(s, name, T => {
            let out = backward(slice::<T>(s, sl, name)?, None, slice::<T>(wb, wbl, name)?, &[slice::<T>(g, gl, name)?], d, self.eps);
            Ok((T::to_cpu_storage_owned(out), Shape::from((n + 2, d))))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        sl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
        wb: &candle_core::CudaStorage,
        wbl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (n, d) = rows_and_width(sl, &[gl], wbl, self.name())?;
        Ok((super::cuda::layer_norm_grads((s, sl), (g, gl), (wb, wbl), d, self.eps)?, Shape::from((n + 2, d))))
    }
}

impl CustomOp2 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        wb: &candle_core::CudaStorage,
        wbl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (_, d) = rows_and_width(xl, &[], wbl, CustomOp2::name(self))?;
        Ok((super::cuda::layer_norm((x, xl), None, (wb, wbl), d, self.eps)?, xl.shape().clone()))
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        wb: &CpuStorage,
        wbl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(x, CustomOp2::name(self), T => self.run::<T>((x, xl), None, (wb, wbl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wb: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dwb) = self.grads(x, None, wb, &[g])?;
        Ok((Some(dx), Some(dwb)))
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-residual-layer-norm"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        r: &candle_core::CudaStorage,
        rl: &Layout,
        wb: &candle_core::CudaStorage,
        wbl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (_, d) = rows_and_width(xl, &[rl], wbl, CustomOp3::name(self))?;
        Ok((super::cuda::layer_norm((x, xl), Some((r, rl)), (wb, wbl), d, self.eps)?, xl.shape().clone()))
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        r: &CpuStorage,
        rl: &Layout,
        wb: &CpuStorage,
        wbl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(x, CustomOp3::name(self), T => self.run::<T>((x, xl), Some((r, rl)), (wb, wbl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        r: &Tensor,
        wb: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dwb) = self.grads(x, Some(r), wb, &[g])?;
        Ok((Some(dx.clone()), Some(dx), Some(dwb)))
    }
}

multiversion! {
    /// For rows `s` of the (residual-summed) input and their output gradients `g`: writes the
    /// input gradients into `dx` and adds the scale and shift gradients into `dw` and `db`.
    fn norm_grad_rows<T>(dx: &mut [MaybeUninit<T>], s: &[T], g: &[T], w: &[T], dw: &mut [T], db: &mut [T], eps: T) {
        let d = w.len();
        let width = T::from_f64(d as f64);
        for ((dxi, si), gi) in dx.chunks_mut(d).zip(s.chunks(d)).zip(g.chunks(d)) {
            let (mean, rstd) = moments(si, eps);
            for c in 0..d {
                let xh = (si[c] - mean) * rstd;
                dw[c] += gi[c] * xh;
                db[c] += gi[c];
                // dxi holds ĝ = g ⊙ w until the last loop.
                dxi[c].write(gi[c] * w[c]);
            }
            // SAFETY: the loop above wrote every element of the row.
            let dxi = unsafe { assume_init(dxi) };
            let mean_gh = sum_by(dxi, |gh| gh) / width;
            let mean_gh_xh = sum_zip(dxi, si, |gh, s| gh * (s - mean) * rstd) / width;
            for c in 0..d {
                let xh = (si[c] - mean) * rstd;
                dxi[c] = rstd * (dxi[c] - mean_gh - xh * mean_gh_xh);
            }
        }
    }
}

/// `[rows + 2, d]`: the input gradient's rows, then the scale's and the shift's gradients, of
/// the LayerNorm of `x [+ r]` given the output gradient `Σ g`.
fn backward<T: Float>(x: &[T], r: Option<&[T]>, wb: &[T], g: &[&[T]], d: usize, eps: f64) -> Vec<T> {
    debug_assert!(!g.is_empty(), "LayerNorm backward without an output gradient");
    let w = &wb[..d];
    let eps = T::from_f64(eps);
    let n = x.len() / d;
    let write = |start: usize, rows: &mut [MaybeUninit<T>]| {
        let span = start..start + rows.len();
        // Sums of several inputs or gradients go to scratch rows of this task (in cache).
        let summed = |terms: &[&[T]]| -> Option<Vec<T>> {
            if terms.len() < 2 {
                return None;
            }
            let mut scratch = Vec::with_capacity(span.len());
            let parts: Vec<&[T]> = terms.iter().map(|t| &t[span.clone()]).collect();
            combine_into(&mut scratch.spare_capacity_mut()[..span.len()], &parts, None);
            // SAFETY: `combine_into` wrote all `span.len()` elements.
            unsafe { scratch.set_len(span.len()) };
            Some(scratch)
        };
        let inputs: Vec<&[T]> = std::iter::once(x).chain(r).collect();
        let (s_sum, g_sum) = (summed(&inputs), summed(g));
        let s = s_sum.as_deref().unwrap_or(&x[span.clone()]);
        let g = g_sum.as_deref().unwrap_or_else(|| g.first().map_or(&[][..], |g| &g[span.clone()]));
        let mut dwb = vec![T::zero(); 2 * d];
        let (dw, db) = dwb.split_at_mut(d);
        norm_grad_rows(rows, s, g, w, dw, db, eps);
        dwb
    };
    // SAFETY: `norm_grad_rows` writes every element of each part (`g` is never empty).
    let (mut out, partials) = unsafe { par_written_with(n * d, ROWS_PER_TASK * d, write) };
    // Summed in row order, so that the result does not depend on which task finished first.
    let mut total = vec![T::zero(); 2 * d];
    for p in &partials {
        total.iter_mut().zip(p).for_each(|(t, &p)| *t += p);
    }
    out.extend(total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_packed_backward_op_matches_the_summing_backward() {
        // How the GPU runs the backward pass (sums first, then one op) against the CPU's.
        let dev = Device::Cpu;
        let (n, d) = (9, 13);
        let t = |scale: f64| Tensor::randn(0f64, scale, (n, d), &dev).unwrap();
        let (x, r, g1, g2) = (t(1.0), t(0.5), t(1.0), t(0.3));
        let wb = Tensor::randn(1f64, 0.1, (2, d), &dev).unwrap();
        let ln = LayerNorm { eps: 1e-5 };
        let (dx, dwb) = ln.grads(&x, Some(&r), &wb, &[&g1, &g2]).unwrap();
        let s = (&x + &r).unwrap();
        let g = (&g1 + &g2).unwrap();
        let packed = s.apply_op3_no_bwd(&g, &wb, &LayerNormGrad { eps: 1e-5 }).unwrap();
        let gap = |a: &Tensor, b: &Tensor| {
            (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
        };
        assert!(gap(&packed.narrow(0, 0, n).unwrap(), &dx) < 1e-12);
        assert!(gap(&packed.narrow(0, n, 2).unwrap(), &dwb) < 1e-12);
    }
}
