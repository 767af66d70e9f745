//! Mean cross-entropy of logits against class ids, with its gradient in one pass per row.

use super::cpu::{float_dispatch, max, multiversion, slice, sum_by, Float};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// `mean_i (logsumexp(logits_i) − logits_i[target_i])`: `CustomOp2(logits [n, V], targets u32 [n])`.
pub(crate) struct CrossEntropy;

/// The rows, classes and targets, checked.
fn checked<'a>(
    ll: &Layout,
    t: &'a CpuStorage,
    tl: &Layout,
    op: &str,
) -> candle_core::Result<(usize, usize, &'a [u32])> {
    let (n, v) = ll.shape().dims2()?;
    let targets = slice::<u32>(t, tl, op)?;
    if targets.len() != n || n == 0 {
        return Err(candle_core::Error::Msg(format!("{op}: {} targets for {n} rows of logits", targets.len())));
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
        return Err(candle_core::Error::Msg(format!("{op}: target {bad} is outside {v} classes")));
    }
    Ok((n, v, targets))
}

/// Row maximum and `log Σ exp(x − max)`.
#[inline(always)]
fn log_sum_exp<T: Float>(row: &[T]) -> (T, T) {
    let max = max(row);
    (max, sum_by(row, |x| (x - max).exp_fast()).ln())
}

multiversion! {
    /// `logsumexp(row) − row[t]`.
    fn row_loss<T>(row: &[T], t: usize) -> T {
        let (max, lse) = log_sum_exp(row);
        max + lse - row[t]
    }
}

multiversion! {
    /// `o = scale · (softmax(row) − onehot(t))`.
    fn row_grad<T>(o: &mut [T], row: &[T], t: usize, scale: T) {
        let (max, lse) = log_sum_exp(row);
        for (o, &x) in o.iter_mut().zip(row) {
            *o = scale * (x - max - lse).exp_fast();
        }
        o[t] -= scale;
    }
}

/// The summed loss of all rows.
fn forward<T: Float>(logits: &[T], targets: &[u32], v: usize) -> f64 {
    logits.par_chunks(v).zip(targets.par_iter()).map(|(row, &t)| WithDType::to_f64(row_loss(row, t as usize))).sum()
}

/// `scale · (softmax(logits) − onehot(target))`, row by row.
fn backward<T: Float>(logits: &[T], targets: &[u32], v: usize, scale: f64) -> Vec<T> {
    let scale = T::from_f64(scale);
    let mut out = vec![T::zero(); logits.len()];
    out.par_chunks_mut(v)
        .zip(logits.par_chunks(v))
        .zip(targets.par_iter())
        .for_each(|((o, row), &t)| row_grad(o, row, t as usize, scale));
    out
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        l: &CpuStorage,
        ll: &Layout,
        t: &CpuStorage,
        tl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, v, targets) = checked(ll, t, tl, self.name())?;
        float_dispatch!(l, self.name(), T => {
            let mean = T::from_f64(forward(slice::<T>(l, ll, self.name())?, targets, v) / n as f64);
            Ok((T::to_cpu_storage_owned(vec![mean]), Shape::from(())))
        })
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = g.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        Ok((Some(grads(logits, targets, scale)?), None))
    }
}

/// The gradient `scale · (softmax(logits) − onehot(target))`: `CustomOp2(logits, targets)`.
struct CrossEntropyGrad {
    scale: f64,
}

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        l: &CpuStorage,
        ll: &Layout,
        t: &CpuStorage,
        tl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, v, targets) = checked(ll, t, tl, self.name())?;
        float_dispatch!(l, self.name(), T => {
            let out = backward(slice::<T>(l, ll, self.name())?, targets, v, self.scale);
            Ok((T::to_cpu_storage_owned(out), ll.shape().clone()))
        })
    }
}

/// The mean cross-entropy without autograd (for hand-written backward passes).
pub(crate) fn apply(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    logits.contiguous()?.apply_op2_no_bwd(&targets.contiguous()?, &CrossEntropy)
}

/// `d logits` of `scale ·` the mean cross-entropy.
pub(crate) fn grads(logits: &Tensor, targets: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    let scale = scale / logits.dim(0)? as f64;
    logits.contiguous()?.apply_op2_no_bwd(&targets.contiguous()?, &CrossEntropyGrad { scale })
}
