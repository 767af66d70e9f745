//! Plumbing shared by the CPU kernels: the float types they run on, access to a custom op's
//! input storage, and a strided matrix product on `gemm`.

use candle_core::{CpuStorage, DType, Layout, WithDType};
use gemm::Parallelism;

/// The element types the fused CPU kernels run on: `f32` for speed, `f64` for gradient checks.
pub(crate) trait Float: WithDType + num_traits::Float + Send + Sync + 'static {
    /// The error function.
    fn erf(self) -> Self;
}

impl Float for f32 {
    /// A rational approximation on [−4, 4] (Eigen's `generic_fast_erf_float`; erf(±4) = ±1 in
    /// f32), branch-free so that loops over it vectorise; within 1e-6 of the exact value.
    fn erf(self) -> Self {
        let x = self.clamp(-4.0, 4.0);
        let x2 = x * x;
        let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
        for c in [-2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_600_1e-3, -1.609_603_3e-2] {
            p = x2 * p + c;
        }
        let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
        for c in [-1.682_827e-3, -7.373_329_2e-3, -1.426_474e-2] {
            q = x2 * q + c;
        }
        x * p / q
    }
}

impl Float for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

/// The elements of a contiguous input of custom op `op`, or an error naming the op.
pub(crate) fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input of shape {:?} is not contiguous", l.dims())))?;
    Ok(&T::cpu_storage_as_slice(s)?[start..end])
}

/// Runs `$body` with the type alias `$t` set to a storage's element type (`f32` or `f64`);
/// other types are an error naming `op`.
macro_rules! float_dispatch {
    ($storage:expr, $op:expr, $t:ident => $body:expr) => {
        match candle_core::backend::BackendStorage::dtype($storage) {
            candle_core::DType::F32 => {
                #[allow(unused_imports)]
                use candle_core::WithDType as _;
                type $t = f32;
                $body
            }
            candle_core::DType::F64 => {
                #[allow(unused_imports)]
                use candle_core::WithDType as _;
                type $t = f64;
                $body
            }
            other => Err(candle_core::Error::Msg(format!("{}: fused kernels run on f32 or f64, not {other:?}", $op))),
        }
    };
}
pub(crate) use float_dispatch;

/// Whether the fused kernels can run on this dtype.
pub(crate) fn supported(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// A matrix inside a buffer: element `(i, j)` sits at `offset + i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    pub offset: usize,
    pub rs: isize,
    pub cs: isize,
}

impl View {
    /// A row-major matrix whose rows are `row_stride` apart.
    pub fn rows(offset: usize, row_stride: usize) -> Self {
        View { offset, rs: row_stride as isize, cs: 1 }
    }

    /// The same elements read as the transposed matrix.
    pub fn t(self) -> Self {
        View { rs: self.cs, cs: self.rs, ..self }
    }
}

/// A raw pointer that rayon tasks may share; each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub *mut T);
// SAFETY: users guarantee that concurrent tasks write disjoint elements.
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the `Send` wrapper rather than its field).
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// `dst = (accumulate ? dst : 0) + lhs · rhs` for an `m×k` `lhs` and a `k×n` `rhs`.
///
/// # Safety
/// Every element the three views address must lie inside its buffer, and no other thread
/// may touch the elements of `dst` that this call writes.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    d: View,
    accumulate: bool,
    lhs: *const T,
    a: View,
    rhs: *const T,
    b: View,
    threads: usize,
) {
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    gemm::gemm(
        m,
        n,
        k,
        dst.add(d.offset),
        d.cs,
        d.rs,
        accumulate,
        lhs.add(a.offset),
        a.cs,
        a.rs,
        rhs.add(b.offset),
        b.cs,
        b.rs,
        T::one(),
        T::one(),
        false,
        false,
        false,
        parallelism,
    )
}

/// The number of threads the kernels use (rayon's pool, which candle shares).
pub(crate) fn threads() -> usize {
    rayon::current_num_threads()
}

/// Column sums of a row-major `[rows, d]` buffer, rows split among tasks.
pub(crate) fn column_sums<T: Float>(x: &[T], d: usize) -> Vec<T> {
    use rayon::prelude::*;
    let rows_per_task = (x.len() / d.max(1)).div_ceil(4 * threads()).max(1);
    x.par_chunks(rows_per_task * d.max(1))
        .map(|rows| {
            let mut acc = vec![T::zero(); d];
            for row in rows.chunks(d.max(1)) {
                acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x);
            }
            acc
        })
        .reduce(
            || vec![T::zero(); d],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, &b)| *a += b);
                a
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_f32_erf_matches_the_exact_erf() {
        let worst = (-6000..=6000)
            .map(|i| i as f64 * 1e-3)
            .map(|x| (Float::erf(x as f32) as f64 - libm::erf(x)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "max |erf error| {worst:e}");
    }

    #[test]
    fn column_sums_add_every_row() {
        let x: Vec<f64> = (0..35).map(f64::from).collect();
        // Rows of 5: column j sums j + 5k over k < 7.
        let expected: Vec<f64> = (0..5).map(|j| (0..7).map(|k| (j + 5 * k) as f64).sum()).collect();
        assert_eq!(column_sums(&x, 5), expected);
    }
}
