//! `x · wᵀ + b` as one op: the bias is written first and the product accumulated onto it.

use super::cpu::{column_sums, float_dispatch, matmul, slice, threads, Float, View};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};

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
    let mut y: Vec<T> = Vec::with_capacity(n * out);
    for _ in 0..n {
        y.extend_from_slice(b);
    }
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

/// `(dx, dw, db)` of `y = x · wᵀ + b` given `g = dy`.
pub(crate) fn grads(x: &Tensor, w: &Tensor, g: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let g = g.contiguous()?;
    Ok((g.matmul(w)?, g.t()?.matmul(x)?, g.apply_op1_no_bwd(&ColumnSum)?))
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
