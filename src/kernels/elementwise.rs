//! Sums of same-shaped tensors, optionally times a mask, in one pass on rayon's pool.
//!
//! The hand-written pass adds residual branches and gradient contributions and applies dropout
//! masks a dozen times per block. candle's binary ops take two inputs per pass and run on a
//! second thread pool of their own, whose spinning workers compete with rayon's (which the
//! matrix products use) for the same cores; here each sum is one pass over its inputs on
//! rayon's pool.

use super::cpu::{assume_init, float_dispatch, guarded, multiversion, par_written, supported, Float};
use candle_core::Tensor;
use std::mem::MaybeUninit;

/// Elements per task.
const CHUNK: usize = 8192;

multiversion! {
    /// Writes `(Σ terms) ⊙ mask` — without a mask, `Σ terms`; with no terms, zeros — into
    /// `out`; every slice is as long as `out`.
    fn combine_chunk<T>(out: &mut [MaybeUninit<T>], terms: &[&[T]], mask: Option<&[T]>) {
        let Some((first, rest)) = terms.split_first() else {
            out.iter_mut().for_each(|o| {
                o.write(T::zero());
            });
            return;
        };
        for (o, &a) in out.iter_mut().zip(*first) {
            o.write(a);
        }
        // SAFETY: the loop above wrote every element (`first` is as long as `out`).
        let out = unsafe { assume_init(out) };
        for term in rest {
            out.iter_mut().zip(*term).for_each(|(o, &a)| *o += a);
        }
        if let Some(mask) = mask {
            out.iter_mut().zip(mask).for_each(|(o, &m)| *o *= m);
        }
    }
}

/// Writes `(Σ terms) ⊙ mask` into `out` and returns it as initialised elements.
///
/// # Panics
/// If a term or the mask is shorter than `out` (callers slice them to `out`'s span).
pub(crate) fn combine_into<'a, T: Float>(
    out: &'a mut [MaybeUninit<T>],
    terms: &[&[T]],
    mask: Option<&[T]>,
) -> &'a mut [T] {
    assert!(terms.iter().copied().chain(mask).all(|t| t.len() >= out.len()), "element-wise sum: a term is too short");
    combine_chunk(out, terms, mask);
    // SAFETY: `combine_chunk` wrote every element of `out` (all inputs are long enough).
    unsafe { assume_init(out) }
}

/// `(Σ terms) ⊙ mask` over slices of one length (checked by the caller), in parallel.
pub(crate) fn combine_slices<T: Float>(terms: &[&[T]], mask: Option<&[T]>) -> Vec<T> {
    let len = terms.first().map_or(0, |t| t.len());
    let write = |start: usize, part: &mut [MaybeUninit<T>]| {
        let span = start..start + part.len();
        let parts: Vec<&[T]> = terms.iter().map(|t| &t[span.clone()]).collect();
        combine_into(part, &parts, mask.map(|m| &m[span]));
    };
    // SAFETY: `combine_into` writes every element of its part.
    unsafe { par_written(len, CHUNK, write) }
}

/// `(Σ terms) ⊙ mask`, or `Σ terms` without a mask, for tensors of one shape and dtype.
///
/// One pass over contiguous f32 or f64 CPU tensors outside any autograd graph; candle's
/// (differentiable) ops elsewhere, which also report shape and dtype mismatches. An empty list
/// of terms is an error.
pub(crate) fn combine(terms: &[&Tensor], mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let Some(first) = terms.first() else {
        return Err(candle_core::Error::Msg("element-wise sum of no tensors".into()));
    };
    let all = || terms.iter().copied().chain(mask);
    let fits = all().all(|t| {
        t.device().is_cpu()
            && t.dtype() == first.dtype()
            && t.dims() == first.dims()
            && t.is_contiguous()
            && !t.track_op()
    });
    if !fits || !supported(first.dtype()) {
        let mut sum = (*first).clone();
        for t in &terms[1..] {
            sum = (sum + *t)?;
        }
        return match mask {
            Some(m) => sum * m,
            None => Ok(sum),
        };
    }
    let name = "element-wise-sum";
    let guards: Vec<_> = all().map(|t| t.storage_and_layout()).collect();
    let (term_guards, mask_guard) = guards.split_at(terms.len());
    float_dispatch!(dtype first.dtype(), name, T => {
        let terms = term_guards.iter().map(|g| guarded::<T>(g, name)).collect::<candle_core::Result<Vec<_>>>()?;
        let mask = mask_guard.first().map(|g| guarded::<T>(g, name)).transpose()?;
        Tensor::from_vec(combine_slices(&terms, mask), first.shape(), first.device())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn max_gap(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn sums_and_masks_match_candle_ops() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            // 3·7001 elements: more than one task, and a ragged last one.
            let t: Vec<Tensor> =
                (0..4).map(|_| Tensor::randn(0f32, 1., (3, 7001), &dev).unwrap().to_dtype(dtype).unwrap()).collect();
            let mask = Tensor::rand(0f32, 2., (3, 7001), &dev).unwrap().to_dtype(dtype).unwrap();
            let one = combine(&[&t[0]], Some(&mask)).unwrap();
            assert!(max_gap(&one, &(&t[0] * &mask).unwrap()) < 1e-6);
            let four = combine(&[&t[0], &t[1], &t[2], &t[3]], None).unwrap();
            let expected = (((&t[0] + &t[1]).unwrap() + &t[2]).unwrap() + &t[3]).unwrap();
            assert!(max_gap(&four, &expected) < 1e-5);
            let two = combine(&[&t[0], &t[1]], Some(&mask)).unwrap();
            assert!(max_gap(&two, &((&t[0] + &t[1]).unwrap() * &mask).unwrap()) < 1e-5);
            assert_eq!(two.dims(), &[3, 7001]);
        }
    }

    #[test]
    fn graphs_strided_inputs_and_bad_lists_go_through_candle() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[[1f64, 2.], [3., 4.]], &dev).unwrap()).unwrap();
        let c = Tensor::new(&[[1f64, 1.], [1., 1.]], &dev).unwrap();
        // A variable keeps its graph: the gradient reaches it through the sum.
        let sum = combine(&[w.as_tensor(), &c], None).unwrap();
        let grads = sum.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(&w).unwrap().to_vec2::<f64>().unwrap(), vec![vec![1., 1.], vec![1., 1.]]);
        // A transposed (strided) input is summed as it reads.
        let t = combine(&[&w.as_tensor().t().unwrap(), &c], None).unwrap();
        assert_eq!(t.to_vec2::<f64>().unwrap(), vec![vec![2., 4.], vec![3., 5.]]);
        assert!(combine(&[], None).is_err());
        let short = Tensor::new(&[1f64, 2.], &dev).unwrap();
        assert!(combine(&[&c, &short.reshape((1, 2)).unwrap().repeat((3, 1)).unwrap()], None).is_err());
    }
}
