//! `x · wᵀ + b` as one op: the bias is written first and the product accumulated onto it.

use super::cpu::{column_sums, float_dispatch, matmul, par_written, slice, threads, written, Float, View};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use std::mem::MaybeUninit;

/// Output rows per task when the bias is written into the output before the product.
const BIAS_ROWS_PER_TASK: usize = 64;

/// The fused linear map; its backward is three plain matrix products and a column sum.
pub(crate) struct Linear;

fn forward<T: Float>(
    x: &CpuStorage,
    xl: &Layout,
    w: &CpuStorage,
    wl: &Layout,
    b: &CpuStorage,
    bl: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (n, inp) = xl.shape().dims2()?;
    let (out, w_in) = wl.shape().dims2()?;
    let bias_len = bl.shape().dims1()?;
    if w_in != inp || bias_len != out {
        return Err(candle_core::Error::Msg(format!(
            "linear: input [{n}, {inp}], weight [{out}, {w_in}] and bias [{bias_len}] do not fit"
        )));
    }
    let (x, w, b) = (slice::<T>(x, xl, "linear")?, slice::<T>(w, wl, "linear")?, slice::<T>(b, bl, "linear")?);
    let fill = |_: usize, rows: &mut [MaybeUninit<T>]| {
        for row in rows.chunks_mut(out) {
            row.iter_mut().zip(b).for_each(|(y, &b)| {
                y.write(b);
            });
        }
    };
    // SAFETY: every part is whole rows of `out` elements, each written with the bias.
    let mut y = unsafe { par_written(n * out, BIAS_ROWS_PER_TASK * out, fill) };
    // SAFETY: the views address `n×out`, `n×inp` and (transposed) `out×inp` matrices that the
    // three buffers hold exactly; `y` is owned here.
    unsafe {
        matmul(
            (n, out, inp),
            y.as_mut_ptr(),
            View::rows(0, out),
            true,
            x.as_ptr(),
            View::rows(0, inp),
            w.as_ptr(),
            View::rows(0, inp).t(),
            threads(),
        );
    }
    Ok((T::to_cpu_storage_owned(y), Shape::from((n, out))))
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(x, self.name(), T => forward::<T>(x, xl, w, wl, b, bl))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = grads(x, w, g)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `y = x · wᵀ + b` without autograd (for hand-written backward passes).
pub(crate) fn apply(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &b.contiguous()?, &Linear)
}

/// `(dx, dw, db)` of `y = x · wᵀ + b` given `g = dy`.
pub(crate) fn grads(x: &Tensor, w: &Tensor, g: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (x, w, g) = (x.contiguous()?, w.contiguous()?, g.contiguous()?);
    let dx = g.apply_op2_no_bwd(&w, &Product { lhs_transposed: false })?;
    let dw = g.apply_op2_no_bwd(&x, &Product { lhs_transposed: true })?;
    Ok((dx, dw, g.apply_op1_no_bwd(&ColumnSum)?))
}

/// `a · b` or `aᵀ · b` of row-major matrices, into an output that is not zeroed first.
struct Product {
    lhs_transposed: bool,
}

impl Product {
    fn run<T: Float>(
        &self,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((ar, ac), (br, bc)) = (al.shape().dims2()?, bl.shape().dims2()?);
        let (m, k) = if self.lhs_transposed { (ac, ar) } else { (ar, ac) };
        if k != br {
            return Err(candle_core::Error::Msg(format!(
                "{}: {:?} and {:?} do not multiply",
                self.name(),
                al.dims(),
                bl.dims()
            )));
        }
        let (a, b) = (slice::<T>(a, al, self.name())?, slice::<T>(b, bl, self.name())?);
        let av = if self.lhs_transposed { View::rows(0, ac).t() } else { View::rows(0, ac) };
        // SAFETY: the views address the `m×k`, `k×bc` and `m×bc` matrices the buffers hold, and
        // the product writes every element of the output.
        let out = unsafe {
            written(m * bc, (m, bc, k), |dst| {
                matmul(
                    (m, bc, k),
                    dst,
                    View::rows(0, bc),
                    false,
                    a.as_ptr(),
                    av,
                    b.as_ptr(),
                    View::rows(0, bc),
                    threads(),
                )
            })
        };
        Ok((T::to_cpu_storage_owned(out), Shape::from((m, bc))))
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "fused-matmul"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(a, self.name(), T => self.run::<T>(a, al, b, bl))
    }
}

/// Sums a `[n, d]` tensor over its rows (the bias gradient), rows split among threads.
struct ColumnSum;

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "fused-column-sum"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, d) = xl.shape().dims2()?;
        float_dispatch!(x, self.name(), T => Ok((T::to_cpu_storage_owned(column_sums(slice::<T>(x, xl, self.name())?, d)), Shape::from(d))))
    }
}
