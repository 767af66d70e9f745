//! Gram matrices of gradient vectors without stacking them: all pairwise dot products are
//! taken chunk by chunk, so each vector is read once while its chunk sits in cache. The
//! squared norm of one tensor (gradient clipping) is the 1 × 1 case.

use super::cpu::{guarded, multiversion, sum_zip, Float};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// Elements of each vector per task.
const CHUNK: usize = 8192;

multiversion! {
    /// Adds `⟨rows[i], rows[j]⟩` to `out[i·n + j]` for `j ≤ i`.
    fn gram_chunk<T>(rows: &[&[T]], out: &mut [f64]) {
        let n = rows.len();
        for i in 0..n {
            for j in 0..=i {
                out[i * n + j] += sum_zip(rows[i], rows[j], |a, b| a * b).to_f64();
            }
        }
    }
}

fn gram_of<T: Float>(rows: &[&[T]]) -> Vec<f64> {
    let (n, len) = (rows.len(), rows[0].len());
    let mut out = (0..len.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let span = c * CHUNK..((c + 1) * CHUNK).min(len);
            let chunk: Vec<&[T]> = rows.iter().map(|r| &r[span.clone()]).collect();
            let mut part = vec![0.0; n * n];
            gram_chunk(&chunk, &mut part);
            part
        })
        .reduce(
            || vec![0.0; n * n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    for i in 0..n {
        for j in 0..i {
            out[j * n + i] = out[i * n + j];
        }
    }
    out
}

/// The `n × n` Gram matrix `[⟨rows[i], rows[j]⟩]` (row-major; chunks of [`CHUNK`] elements
/// summed in the tensors' dtype, the chunks' sums in f64) of `n` equally
/// long vectors, or `None` where the fused kernels do not run (not all f32/f64 on the CPU).
pub(crate) fn gram(rows: &[Tensor]) -> candle_core::Result<Option<Vec<f64>>> {
    let Some(first) = rows.first() else { return Ok(Some(Vec::new())) };
    let dtype = first.dtype();
    if !super::cpu::supported(dtype) || rows.iter().any(|r| !r.device().is_cpu() || r.dtype() != dtype) {
        return Ok(None);
    }
    let name = "fused-gram";
    let rows: Vec<Tensor> = rows.iter().map(|r| r.flatten_all()?.contiguous()).collect::<candle_core::Result<_>>()?;
    if let Some(r) = rows.iter().find(|r| r.elem_count() != first.elem_count()) {
        let (a, b) = (first.elem_count(), r.elem_count());
        return Err(candle_core::Error::Msg(format!("{name}: vectors of {a} and {b} elements")));
    }
    let guards: Vec<_> = rows.iter().map(|r| r.storage_and_layout()).collect();
    Ok(Some(match dtype {
        DType::F32 => {
            gram_of(&guards.iter().map(|g| guarded::<f32>(g, name)).collect::<candle_core::Result<Vec<_>>>()?)
        }
        _ => gram_of(&guards.iter().map(|g| guarded::<f64>(g, name)).collect::<candle_core::Result<Vec<_>>>()?),
    }))
}

/// `Σ x²` of a tensor, summed in f64, or `None` where the fused kernels do not run.
pub(crate) fn sum_squares(t: &Tensor) -> candle_core::Result<Option<f64>> {
    Ok(gram(std::slice::from_ref(t))?.map(|g| g[0]))
}

/// `Σ x²` over all elements of `tensors`, summed in f64, where they are f32 tensors on one
/// CUDA device (one kernel per tensor and one copy to the host for all), else `None`.
pub(crate) fn sum_squares_on_device(tensors: &[&Tensor]) -> candle_core::Result<Option<f64>> {
    #[cfg(feature = "cuda")]
    if let Some(first) = tensors.first() {
        if tensors.iter().all(|t| super::cuda_f32(t) && t.device().same_device(first.device())) {
            let tensors = tensors.iter().map(|t| t.contiguous()).collect::<candle_core::Result<Vec<_>>>()?;
            let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
            let parts = guards
                .iter()
                .map(|(s, l)| super::cuda::storage(s, l, "sum-of-squares"))
                .collect::<candle_core::Result<Vec<_>>>()?;
            return Ok(Some(super::cuda::sum_squares(&parts)?));
        }
    }
    let _ = tensors;
    Ok(None)
}
