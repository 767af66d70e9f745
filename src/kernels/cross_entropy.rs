//! Mean cross-entropy of logits against class ids, with its gradient in one pass per row.

use super::cpu::{assume_init, float_dispatch, max, multiversion, par_written_with, slice, sum_by, Float};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::mem::MaybeUninit;

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
    /// Writes `o = scale · (softmax(row) − onehot(t))` and returns `logsumexp(row) − row[t]`,
    /// with one `exp` per element.
    fn row_loss_grad<T>(o: &mut [MaybeUninit<T>], row: &[T], t: usize, scale: T) -> T {
        let max = max(row);
        // Eight independent partial sums, so that the loop vectorises.
        let mut lanes = [T::zero(); 8];
        let whole = row.len() / 8 * 8;
        for (o, x) in o[..whole].chunks_exact_mut(8).zip(row[..whole].chunks_exact(8)) {
            for i in 0..8 {
                let e = (x[i] - max).exp_fast();
                o[i].write(e);
                lanes[i] += e;
            }
        }
        for (o, &x) in o[whole..].iter_mut().zip(&row[whole..]) {
            lanes[0] += *o.write((x - max).exp_fast());
        }
        let sum = lanes.iter().fold(T::zero(), |s, &x| s + x);
        // SAFETY: the loop above wrote every element (`row` is as long as `o`).
        let o = unsafe { assume_init(o) };
        let k = scale / sum;
        o.iter_mut().for_each(|o| *o *= k);
        o[t] -= scale;
        max + sum.ln() - row[t]
    }
}

/// The summed loss of all rows.
fn forward<T: Float>(logits: &[T], targets: &[u32], v: usize) -> f64 {
    logits.par_chunks(v).zip(targets.par_iter()).map(|(row, &t)| WithDType::to_f64(row_loss(row, t as usize))).sum()
}

/// Each row's loss, and `scale · (softmax(logits) − onehot(target))` row by row.
fn loss_and_backward<T: Float>(logits: &[T], targets: &[u32], v: usize, scale: f64) -> (Vec<f64>, Vec<T>) {
    let scale = T::from_f64(scale);
    let write = |start: usize, o: &mut [MaybeUninit<T>]| {
        let (i, row) = (start / v, &logits[start..start + o.len()]);
        WithDType::to_f64(row_loss_grad(o, row, targets[i] as usize, scale))
    };
    // SAFETY: each part is one row, which `row_loss_grad` writes completely.
    let (grads, losses) = unsafe { par_written_with(logits.len(), v, write) };
    (losses, grads)
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

/// `d logits` of `scale ·` the mean cross-entropy.
pub(crate) fn grads(logits: &Tensor, targets: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    Ok(loss_and_grads(logits, targets, scale)?.1)
}

/// The cross-entropy of each row of `logits` against its target (`[n]`: f64 on the CPU, the
/// logits' dtype on CUDA, where it stays on the device), and the gradient of `scale ×` their
/// mean with respect to the logits, in one pass per row. On CUDA the targets are the caller's
/// to check (a target outside the classes gives that row a NaN loss).
pub(crate) fn loss_and_grads(logits: &Tensor, targets: &Tensor, scale: f64) -> candle_core::Result<(Tensor, Tensor)> {
    let name = "fused-cross-entropy-grad";
    let (logits, targets) = (logits.contiguous()?, targets.contiguous()?);
    if logits.device().is_cuda() {
        let (n, v) = logits.dims2()?;
        let packed = logits.apply_op2_no_bwd(&targets, &CrossEntropyGrad { scale: scale / n.max(1) as f64 })?;
        return Ok((packed.narrow(0, n * v, n)?, packed.narrow(0, 0, n * v)?.reshape((n, v))?));
    }
    let (lg, tg) = (logits.storage_and_layout(), targets.storage_and_layout());
    let (candle_core::Storage::Cpu(l), candle_core::Storage::Cpu(t)) = (&*lg.0, &*tg.0) else {
        return Err(candle_core::Error::Msg(format!("{name}: logits and targets must be on the CPU or on CUDA")));
    };
    let (n, v, targets) = checked(lg.1, t, tg.1, name)?;
    let scale = scale / n as f64;
    float_dispatch!(l, name, T => {
        let (losses, grads) = loss_and_backward(slice::<T>(l, lg.1, name)?, targets, v, scale);
        Ok((Tensor::from_vec(losses, n, logits.device())?, Tensor::from_vec(grads, (n, v), logits.device())?))
    })
}

/// `[n·v + n]`: `scale · (softmax(logits) − onehot(target))` row by row, then each row's loss,
/// `CustomOp2(logits [n, v], targets u32 [n])`: how [`loss_and_grads`] runs on CUDA.
struct CrossEntropyGrad {
    /// The gradient's factor (the mean's `1/n` included).
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
        let (n, v, targets) = checked(ll, t, tl, self.name())?;
        float_dispatch!(l, self.name(), T => {
            let (losses, mut packed) = loss_and_backward(slice::<T>(l, ll, self.name())?, targets, v, self.scale);
            packed.extend(losses.into_iter().map(T::from_f64));
            Ok((T::to_cpu_storage_owned(packed), Shape::from(n * v + n)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        l: &candle_core::CudaStorage,
        ll: &Layout,
        t: &candle_core::CudaStorage,
        tl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        // The targets stay on the device (checking them here would wait for the GPU): the
        // kernel gives a row whose target is outside the classes a NaN loss.
        let (n, v) = ll.shape().dims2()?;
        if tl.shape().elem_count() != n || n == 0 {
            let count = tl.shape().elem_count();
            return Err(candle_core::Error::Msg(format!("{}: {count} targets for {n} rows of logits", self.name())));
        }
        Ok((super::cuda::cross_entropy((l, ll), (t, tl), v, self.scale)?, Shape::from(n * v + n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_packed_op_holds_the_gradients_then_the_losses() {
        // The layout the CUDA kernel writes, from the op's CPU half, against `loss_and_grads`.
        let (n, v) = (5, 7);
        let logits = Tensor::randn(0f64, 2., (n, v), &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 6, 3, 3, 1], &Device::Cpu).unwrap();
        let (losses, grads) = loss_and_grads(&logits, &targets, 0.5).unwrap();
        let packed = logits.apply_op2_no_bwd(&targets, &CrossEntropyGrad { scale: 0.5 / n as f64 }).unwrap();
        let packed = packed.to_vec1::<f64>().unwrap();
        assert_eq!(packed[..n * v], grads.flatten_all().unwrap().to_vec1::<f64>().unwrap()[..]);
        assert_eq!(packed[n * v..], losses.to_vec1::<f64>().unwrap()[..]);
        let bad = Tensor::new(&[0u32, 7, 3, 3, 1], &Device::Cpu).unwrap();
        assert!(logits.apply_op2_no_bwd(&bad, &CrossEntropyGrad { scale: 1.0 }).is_err());
    }
}
