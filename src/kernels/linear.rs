//! `x · wᵀ + b` as one op: the bias is written first and the product accumulated onto it.

use super::cpu::{
    column_sums, float_dispatch, guarded, matmul, par_written, slice, slice_mut, threads, written, Float, View,
};
use super::{wide, Operand, Precision};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, InplaceOp2, Layout, Shape, Tensor};
use std::mem::MaybeUninit;
use std::ops::Range;

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
        let (dx, dw, db) = grads(&Operand::exact(x), &Operand::exact(w), g, Precision::Fp32)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `y = x · wᵀ + b` without autograd (for hand-written backward passes), on operands rounded
/// to the pass's precision; the bias is added in f32.
pub(crate) fn apply(x: &Operand, w: &Operand, b: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cuda() {
        let y = wide(&x.matmul(&w.t()?)?)?;
        y.inplace_op2(&b.contiguous()?, &BiasAdd)?;
        return Ok(y);
    }
    x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &b.contiguous()?, &Linear)
}

/// `(dx, dw, db)` of `y = x · wᵀ + b` given `g = dy`: the products read `g` rounded to `p`,
/// the bias gradient sums `g` itself.
pub(crate) fn grads(
    x: &Operand,
    w: &Operand,
    g: &Tensor,
    p: Precision,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let g_operand = Operand::new(g, p)?;
    if g.device().is_cuda() {
        let dx = wide(&g_operand.matmul(w)?)?;
        let (dw, db) = device_weight_grads(x, g, &g_operand)?;
        return Ok((dx, dw, db));
    }
    let dx = g_operand.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &Product { lhs_transposed: false })?;
    let (dw, db) = cpu_weight_grads(x, g, &g_operand)?;
    Ok((dx, dw, db))
}

/// `(dw, db)` of `y = x · wᵀ + b` given `g = dy` (as in [`grads`]).
pub(crate) fn weight_grads(x: &Operand, g: &Tensor, p: Precision) -> candle_core::Result<(Tensor, Tensor)> {
    let g_operand = Operand::new(g, p)?;
    if g.device().is_cuda() {
        return device_weight_grads(x, g, &g_operand);
    }
    cpu_weight_grads(x, g, &g_operand)
}

/// [`weight_grads`] on the CPU kernels, given `g` rounded as `g_operand`.
fn cpu_weight_grads(x: &Operand, g: &Tensor, g_operand: &Operand) -> candle_core::Result<(Tensor, Tensor)> {
    let dw = g_operand.contiguous()?.apply_op2_no_bwd(&x.contiguous()?, &Product { lhs_transposed: true })?;
    Ok((dw, g.contiguous()?.apply_op1_no_bwd(&ColumnSum)?))
}

/// [`weight_grads`] on cuBLAS, given `g` rounded as `g_operand`. The bias gradient is a product
/// with ones, in f32: cuBLAS reads `g` once, row by row, where candle's `sum(0)` reads it
/// column by column.
fn device_weight_grads(x: &Operand, g: &Tensor, g_operand: &Operand) -> candle_core::Result<(Tensor, Tensor)> {
    let (n, out) = g.dims2()?;
    let db = Tensor::ones((1, n), g.dtype(), g.device())?.matmul(g)?.reshape(out)?;
    Ok((wide(&g_operand.t()?.matmul(x)?)?, db))
}

/// One group of a grouped linear map: rows `rows` of the input go through weight `w` `[out, in]`
/// and bias `b` (languages' adapters over the rows of a merged batch).
pub(crate) struct Group<'a> {
    pub rows: Range<usize>,
    pub w: &'a Operand,
    pub b: &'a Tensor,
}

/// `y[rows] = x[rows] · wᵀ + b` for each group, into one `[n, out]` tensor; the groups cover
/// the rows of `x` in order.
pub(crate) fn apply_grouped(x: &Operand, groups: &[Group]) -> candle_core::Result<Tensor> {
    grouped(x, groups, true)
}

/// `dx[rows] = g[rows] · w` for each group (the input gradient of [`apply_grouped`]), into one
/// `[n, in]` tensor; the products read `g` rounded to `p`.
pub(crate) fn input_grads_grouped(g: &Tensor, groups: &[Group], p: Precision) -> candle_core::Result<Tensor> {
    grouped(&Operand::new(g, p)?, groups, false)
}

/// `a[rows] · wᵀ + b` (`forward`) or `a[rows] · w` per group.
fn grouped(operand: &Operand, groups: &[Group], forward: bool) -> candle_core::Result<Tensor> {
    let name = if forward { "grouped-linear" } else { "grouped-linear-grad" };
    let a = operand.contiguous()?;
    let (n, k) = a.dims2()?;
    let ws = groups.iter().map(|g| g.w.contiguous()).collect::<candle_core::Result<Vec<_>>>()?;
    let (out, inp) = ws.first().map_or(Ok((0, 0)), |w| w.dims2())?;
    let cols = if forward { out } else { inp };
    let covered = groups.iter().try_fold(0, |at, g| (g.rows.start == at && g.rows.end >= at).then_some(g.rows.end));
    let shapes_fit = ws.iter().all(|w| w.dims() == [out, inp])
        && groups.iter().all(|g| g.b.dims() == [out])
        && k == if forward { inp } else { out };
    if covered != Some(n) || !shapes_fit || groups.is_empty() {
        return Err(candle_core::Error::Msg(format!(
            "{name}: input {:?}, groups {:?} of weights {:?} do not fit",
            a.dims(),
            groups.iter().map(|g| g.rows.clone()).collect::<Vec<_>>(),
            ws.iter().map(|w| w.dims().to_vec()).collect::<Vec<_>>()
        )));
    }
    if a.device().is_cuda() {
        // One cuBLAS product per group.
        let parts = groups
            .iter()
            .map(|g| {
                let rows = operand.rows(g.rows.start, g.rows.len())?;
                if forward {
                    apply(&rows, g.w, g.b)
                } else {
                    wide(&rows.matmul(g.w)?)
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        return Tensor::cat(&parts, 0);
    }
    let bs = groups.iter().map(|g| g.b.contiguous()).collect::<candle_core::Result<Vec<_>>>()?;
    let device = a.device().clone();
    let ag = a.storage_and_layout();
    let wg: Vec<_> = ws.iter().map(|w| w.storage_and_layout()).collect();
    let bg: Vec<_> = bs.iter().map(|b| b.storage_and_layout()).collect();
    float_dispatch!(dtype a.dtype(), name, T => {
        let a = guarded::<T>(&ag, name)?;
        let ws = wg.iter().map(|w| guarded::<T>(w, name)).collect::<candle_core::Result<Vec<_>>>()?;
        let bs = bg.iter().map(|b| guarded::<T>(b, name)).collect::<candle_core::Result<Vec<_>>>()?;
        let ranges: Vec<Range<usize>> = groups.iter().map(|g| g.rows.clone()).collect();
        let y = grouped_rows(a, k, &ws, forward.then_some(&bs[..]), &ranges, cols, inp);
        Tensor::from_vec(y, (n, cols), &device)
    })
}

/// The products of [`grouped`] on slices: `a` is `[n, k]`, each weight `[out, in]` row-major;
/// with biases the weights are read transposed (`a · wᵀ + b`), without them as they are.
fn grouped_rows<T: Float>(
    a: &[T],
    k: usize,
    ws: &[&[T]],
    biases: Option<&[&[T]]>,
    ranges: &[Range<usize>],
    cols: usize,
    inp: usize,
) -> Vec<T> {
    let n = ranges.last().map_or(0, |r| r.end);
    let wv = if biases.is_some() { View::rows(0, inp).t() } else { View::rows(0, inp) };
    let product = |dst: *mut T, accumulate: bool| {
        for (r, w) in ranges.iter().zip(ws) {
            // SAFETY: rows `r` of the `[n, k]` input and of the `[n, cols]` output lie inside
            // their buffers, and the weight view addresses its `[out, in]` buffer.
            unsafe {
                matmul(
                    (r.len(), cols, k),
                    dst.add(r.start * cols),
                    View::rows(0, cols),
                    accumulate,
                    a.as_ptr().add(r.start * k),
                    View::rows(0, k),
                    w.as_ptr(),
                    wv,
                    threads(),
                )
            }
        }
    };
    match biases {
        Some(bs) => {
            let fill = |start: usize, rows: &mut [MaybeUninit<T>]| {
                for (i, row) in rows.chunks_mut(cols).enumerate() {
                    let group = ranges.iter().position(|r| r.contains(&(start / cols + i))).unwrap_or(0);
                    row.iter_mut().zip(bs[group]).for_each(|(y, &b)| {
                        y.write(b);
                    });
                }
            };
            // SAFETY: every part is whole rows, each written with its group's bias.
            let mut y = unsafe { par_written(n * cols, BIAS_ROWS_PER_TASK * cols, fill) };
            product(y.as_mut_ptr(), true);
            y
        }
        None => {
            let smallest = ranges.iter().map(|r| r.len()).min().unwrap_or(0);
            // SAFETY: the groups cover all `n` rows, each written by its product.
            unsafe { written(n * cols, (smallest, cols, k), |dst| product(dst, false)) }
        }
    }
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

/// `y[row] += b` for every row of `y` `[n, out]`, in place: `InplaceOp2(y, b)` (the bias of a
/// linear map whose product cuBLAS computed).
struct BiasAdd;

impl InplaceOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bias-add"
    }

    fn cpu_fwd(&self, y: &mut CpuStorage, yl: &Layout, b: &CpuStorage, bl: &Layout) -> candle_core::Result<()> {
        let name = self.name();
        float_dispatch!(b, name, T => {
            let b = slice::<T>(b, bl, name)?;
            let y = slice_mut::<T>(y, yl, name)?;
            if yl.dims().last() != Some(&b.len()) {
                return Err(candle_core::Error::Msg(format!("{name}: bias {:?} for {:?}", bl.dims(), yl.dims())));
            }
            y.chunks_mut(b.len()).for_each(|row| row.iter_mut().zip(b).for_each(|(y, &b)| *y += b));
            Ok(())
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        y: &mut candle_core::CudaStorage,
        yl: &Layout,
        b: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<()> {
        if yl.dims().last() != Some(&bl.shape().elem_count()) {
            return Err(candle_core::Error::Msg(format!("{}: bias {:?} for {:?}", self.name(), bl.dims(), yl.dims())));
        }
        super::cuda::bias_add((y, yl), (b, bl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn grouped_maps_equal_one_map_per_group() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1., (7, 5), &dev).unwrap();
        let (w1, w2) = (Tensor::randn(0f64, 1., (3, 5), &dev).unwrap(), Tensor::randn(0f64, 1., (3, 5), &dev).unwrap());
        let (b1, b2) = (Tensor::randn(0f64, 1., 3, &dev).unwrap(), Tensor::randn(0f64, 1., 3, &dev).unwrap());
        let (o1, o2, xo) = (Operand::exact(&w1), Operand::exact(&w2), Operand::exact(&x));
        let groups = [Group { rows: 0..4, w: &o1, b: &b1 }, Group { rows: 4..7, w: &o2, b: &b2 }];
        let reference = |t: &Tensor, r: Range<usize>, w: &Tensor, b: &Tensor| {
            t.narrow(0, r.start, r.len()).unwrap().matmul(&w.t().unwrap()).unwrap().broadcast_add(b).unwrap()
        };
        let expected = Tensor::cat(&[reference(&x, 0..4, &w1, &b1), reference(&x, 4..7, &w2, &b2)], 0).unwrap();
        let gap =
            |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(gap(&apply_grouped(&xo, &groups).unwrap(), &expected) < 1e-12);
        let g = Tensor::randn(0f64, 1., (7, 3), &dev).unwrap();
        let dx = Tensor::cat(
            &[g.narrow(0, 0, 4).unwrap().matmul(&w1).unwrap(), g.narrow(0, 4, 3).unwrap().matmul(&w2).unwrap()],
            0,
        )
        .unwrap();
        assert!(gap(&input_grads_grouped(&g, &groups, Precision::Fp32).unwrap(), &dx) < 1e-12);
        // Groups must cover the rows in order.
        let gapped = [Group { rows: 0..4, w: &o1, b: &b1 }, Group { rows: 5..7, w: &o2, b: &b2 }];
        let err = apply_grouped(&xo, &gapped).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }

    #[test]
    fn bias_add_adds_the_bias_to_every_row() {
        let dev = Device::Cpu;
        let y = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &dev).unwrap();
        y.inplace_op2(&Tensor::new(&[10f32, 20., 30.], &dev).unwrap(), &BiasAdd).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), vec![vec![11., 22., 33.], vec![14., 25., 36.]]);
        assert!(y.inplace_op2(&Tensor::new(&[1f32, 2.], &dev).unwrap(), &BiasAdd).is_err());
    }
}
