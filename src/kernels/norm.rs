//! LayerNorm over the last dimension, optionally of a residual sum `x + r`, in one pass per row.
//!
//! The scale and shift travel as one `[2, d]` tensor (`wb`, built with `Tensor::stack`, whose
//! backward hands each half its gradient), so the op has at most three inputs.

use super::cpu::{float_dispatch, multiversion, slice, sum_by, sum_zip, Float};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Rows per task in the backward pass, whose tasks also sum the scale and shift gradients.
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
    /// `out = LN(x [+ r]) · w + b` for one row.
    fn norm_row<T>(out: &mut [T], x: &[T], r: Option<&[T]>, w: &[T], b: &[T], eps: T) {
        match r {
            Some(r) => out.iter_mut().zip(x).zip(r).for_each(|((o, &x), &r)| *o = x + r),
            None => out.copy_from_slice(x),
        }
        let (mean, rstd) = moments(out, eps);
        for ((o, &w), &b) in out.iter_mut().zip(w).zip(b) {
            *o = (*o - mean) * rstd * w + b;
        }
    }
}

fn forward<T: Float>(x: &[T], r: Option<&[T]>, wb: &[T], d: usize, eps: f64) -> Vec<T> {
    let (w, b) = wb.split_at(d);
    let eps = T::from_f64(eps);
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(d).enumerate().for_each(|(i, out)| {
        let rows = i * d..(i + 1) * d;
        norm_row(out, &x[rows.clone()], r.map(|r| &r[rows]), w, b, eps);
    });
    y
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

    /// `(dx, dwb)` of the LayerNorm of `s` (the residual sum, already added) given `g = dy`.
    pub(crate) fn grads(&self, s: &Tensor, wb: &Tensor, g: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let d = s.dim(candle_core::D::Minus1)?;
        if d == 0 {
            return Err(candle_core::Error::Msg(format!("fused-layer-norm-grad: input {:?} has width 0", s.dims())));
        }
        let n = s.elem_count() / d;
        let packed = s.apply_op3_no_bwd(wb, &g.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        Ok((packed.narrow(0, 0, n)?.reshape(s.shape())?, packed.narrow(0, n, 2)?))
    }
}

impl CustomOp2 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        let (dx, dwb) = self.grads(x, wb, g)?;
        Ok((Some(dx), Some(dwb)))
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-residual-layer-norm"
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
        let (dx, dwb) = self.grads(&(x + r)?, wb, g)?;
        Ok((Some(dx.clone()), Some(dx), Some(dwb)))
    }
}

/// The LayerNorm backward: `CustomOp3(s, wb, g)` → `[rows + 2, d]`: the input gradient's rows,
/// then the scale's and the shift's gradients.
struct LayerNormGrad {
    eps: f64,
}

multiversion! {
    /// For rows `s` of the residual sum and their output gradients `g`: writes the input
    /// gradients into `dx` and adds the scale and shift gradients into `dw` and `db`.
    fn norm_grad_rows<T>(dx: &mut [T], s: &[T], g: &[T], w: &[T], dw: &mut [T], db: &mut [T], eps: T) {
        let d = w.len();
        let width = T::from_f64(d as f64);
        for ((dxi, si), gi) in dx.chunks_mut(d).zip(s.chunks(d)).zip(g.chunks(d)) {
            let (mean, rstd) = moments(si, eps);
            for c in 0..d {
                let xh = (si[c] - mean) * rstd;
                dw[c] += gi[c] * xh;
                db[c] += gi[c];
                // dxi holds ĝ = g ⊙ w until the last loop.
                dxi[c] = gi[c] * w[c];
            }
            let mean_gh = sum_by(dxi, |gh| gh) / width;
            let mean_gh_xh = sum_zip(dxi, si, |gh, s| gh * (s - mean) * rstd) / width;
            for c in 0..d {
                let xh = (si[c] - mean) * rstd;
                dxi[c] = rstd * (dxi[c] - mean_gh - xh * mean_gh_xh);
            }
        }
    }
}

fn backward<T: Float>(s: &[T], wb: &[T], g: &[T], d: usize, eps: f64) -> Vec<T> {
    let w = &wb[..d];
    let eps = T::from_f64(eps);
    let n = s.len() / d;
    let mut out = vec![T::zero(); (n + 2) * d];
    let (dx, _) = out.split_at_mut(n * d);
    let partial: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut(ROWS_PER_TASK * d)
        .enumerate()
        .map(|(task, rows)| {
            let (mut dw, mut db) = (vec![T::zero(); d], vec![T::zero(); d]);
            let span = task * ROWS_PER_TASK * d..task * ROWS_PER_TASK * d + rows.len();
            norm_grad_rows(rows, &s[span.clone()], &g[span], w, &mut dw, &mut db, eps);
            (dw, db)
        })
        .collect();
    let (dw, db) = out[n * d..].split_at_mut(d);
    for (pw, pb) in &partial {
        dw.iter_mut().zip(pw).for_each(|(a, &b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, &b)| *a += b);
    }
    out
}

impl LayerNormGrad {
    fn run<T: Float>(
        &self,
        s: (&CpuStorage, &Layout),
        wb: (&CpuStorage, &Layout),
        g: (&CpuStorage, &Layout),
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (n, d) = rows_and_width(s.1, &[g.1], wb.1, name)?;
        let out = backward(
            slice::<T>(s.0, s.1, name)?,
            slice::<T>(wb.0, wb.1, name)?,
            slice::<T>(g.0, g.1, name)?,
            d,
            self.eps,
        );
        Ok((T::to_cpu_storage_owned(out), Shape::from((n + 2, d))))
    }
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        sl: &Layout,
        wb: &CpuStorage,
        wbl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(s, self.name(), T => self.run::<T>((s, sl), (wb, wbl), (g, gl)))
    }
}
