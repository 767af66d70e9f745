//! Plumbing shared by the CPU kernels: the float types they run on, access to a custom op's
//! input storage, and a strided matrix product on `gemm`.

use candle_core::{CpuStorage, DType, Layout, WithDType};
use gemm::Parallelism;
use std::mem::MaybeUninit;

/// The element types the fused CPU kernels run on: `f32` for speed, `f64` for gradient checks.
pub(crate) trait Float: WithDType + num_traits::Float + Send + Sync + 'static {
    /// The error function.
    fn erf(self) -> Self;

    /// `e^self`; branch-free in `f32` so that loops over it vectorise.
    fn exp_fast(self) -> Self;

    /// The elements of a CPU storage of this type, for writing in place.
    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

impl Float for f32 {
    /// A rational approximation on [−4, 4] (Eigen's `generic_fast_erf_float`; erf(±4) = ±1 in
    /// f32), branch-free so that loops over it vectorise; within 1e-6 of the exact value.
    #[inline(always)]
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

    /// Cephes' `expf`: `2^n · e^r` with `|r| ≤ ln2/2` and a degree-7 polynomial for `e^r`;
    /// within 2 ulp of the exact value. Inputs below −87.3 give 2^-126 (about 1e-38) instead of
    /// a subnormal or 0, which no softmax or GELU here can tell apart; inputs from about 88.37
    /// up give +∞ (the kernels only take `exp` of values ≤ 0).
    #[inline(always)]
    fn exp_fast(self) -> Self {
        // 1.5·2^23: adding it rounds to an integer.
        const ROUND: f32 = 12_582_912.0;
        // About f32's exp range (the kernels only take `exp` of values ≤ 0).
        let x = self.clamp(-87.3, 88.376_26);
        let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
        let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
        let mut p = 1.987_569_1e-4;
        for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
            p = p * r + c;
        }
        let e_r = p * r * r + r + 1.0;
        // 2^n from its bits: n + 127 + 2^23 holds the biased exponent n + 127 (1..=254) in its
        // low mantissa bits, which the shift moves into the exponent field (an integer cast
        // would be saturating, which does not vectorise).
        e_r * f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23)
    }

    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Float for f64 {
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erf(self)
    }

    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }

    fn storage_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// The elements of a contiguous output of in-place op `op`, for writing, or an error naming it.
pub(crate) fn slice_mut<'a, T: Float>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a mut [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: output of shape {:?} is not contiguous", l.dims())))?;
    let all =
        T::storage_mut(s).ok_or_else(|| candle_core::Error::Msg(format!("{op}: output is not {:?}", T::DTYPE)))?;
    Ok(&mut all[start..end])
}

/// The elements of a contiguous input of custom op `op`, or an error naming the op.
pub(crate) fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input of shape {:?} is not contiguous", l.dims())))?;
    Ok(&T::cpu_storage_as_slice(s)?[start..end])
}

/// The elements of a contiguous tensor read outside a custom op's inputs (through its storage
/// guard), or an error naming `op` if it is not on the CPU.
pub(crate) fn guarded<'a, T: WithDType>(
    (storage, layout): &'a (candle_core::StorageRef<'a>, &'a Layout),
    op: &str,
) -> candle_core::Result<&'a [T]> {
    match &**storage {
        candle_core::Storage::Cpu(cpu) => slice::<T>(cpu, layout, op),
        _ => Err(candle_core::Error::Msg(format!("{op}: a tensor is not on the CPU"))),
    }
}

/// Runs `$body` with the type alias `$t` set to a storage's element type (`f32` or `f64`),
/// or to the given `dtype` (for tensors read through storage guards); other types are an
/// error naming `op`.
macro_rules! float_dispatch {
    ($storage:expr, $op:expr, $t:ident => $body:expr) => {
        $crate::kernels::cpu::float_dispatch!(dtype candle_core::backend::BackendStorage::dtype($storage), $op, $t => $body)
    };
    (dtype $dtype:expr, $op:expr, $t:ident => $body:expr) => {
        match $dtype {
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

/// Whether the CPU has AVX2 and FMA (cached by std after the first check).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Whether the CPU has the AVX-512 subsets the 16-wide copies use (and AVX2 and FMA).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    has_avx2()
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512vl")
}

/// Defines a generic kernel function three times over: copies compiled for AVX-512 and for
/// AVX2 with FMA, chosen at run time when the CPU has them, and the crate's baseline (SSE2)
/// copy, so that the element-wise loops of its body run on 16- or 8-wide vectors. Everything
/// the body calls should be `#[inline(always)]`.
macro_rules! multiversion {
    ($(#[$attr:meta])* fn $name:ident<$t:ident>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        fn $name<$t: $crate::kernels::cpu::Float>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                $(#[$attr])*
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512<$t: $crate::kernels::cpu::Float>($($arg: $ty),*) $(-> $ret)? $body
                $(#[$attr])*
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<$t: $crate::kernels::cpu::Float>($($arg: $ty),*) $(-> $ret)? $body
                if $crate::kernels::cpu::has_avx512() {
                    // SAFETY: the CPU has AVX-512 (F, BW, DQ, VL), AVX2 and FMA (checked just above).
                    return unsafe { avx512::<$t>($($arg),*) };
                }
                if $crate::kernels::cpu::has_avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    return unsafe { avx2::<$t>($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

/// A fresh buffer of `len` elements for the output of `(m, n, k)` matrix products, which
/// `write` fills completely through the raw pointer it is given — not zeroed first (the
/// products overwrite it anyway) except for the shapes that gemm hands to its vector routines
/// (a single row or column, or `k ≤ 2`), which view the output as a slice of initialised memory.
///
/// # Safety
/// `write` must initialise all `len` elements before it returns.
pub(crate) unsafe fn written<T: Float>(
    len: usize,
    (m, n, k): (usize, usize, usize),
    write: impl FnOnce(*mut T),
) -> Vec<T> {
    if m < 2 || n < 2 || k < 3 {
        let mut out = vec![T::zero(); len];
        write(out.as_mut_ptr());
        return out;
    }
    let mut out: Vec<T> = Vec::with_capacity(len);
    write(out.as_mut_ptr());
    // SAFETY: the caller guarantees that `write` initialised all `len` elements.
    out.set_len(len);
    out
}

/// A buffer of `len` elements filled in parallel, `chunk` elements per task:
/// `write(start, part)` fills `part`, which holds elements `start..start + part.len()`.
/// Nothing is zeroed first: every element is written once, by `write`.
///
/// # Safety
/// `write` must initialise every element of the part it is given.
pub(crate) unsafe fn par_written<T: Float>(
    len: usize,
    chunk: usize,
    write: impl Fn(usize, &mut [MaybeUninit<T>]) + Send + Sync,
) -> Vec<T> {
    par_written_with(len, chunk, write).0
}

/// [`par_written`] whose tasks also return a value each (partial sums, row losses): the
/// buffer, and the values in the order of the parts (whichever task finished first).
///
/// # Safety
/// `write` must initialise every element of the part it is given.
pub(crate) unsafe fn par_written_with<T: Float, R: Send>(
    len: usize,
    chunk: usize,
    write: impl Fn(usize, &mut [MaybeUninit<T>]) -> R + Send + Sync,
) -> (Vec<T>, Vec<R>) {
    use rayon::prelude::*;
    let chunk = chunk.max(1);
    let mut out: Vec<T> = Vec::with_capacity(len);
    let results = out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(i, part)| write(i * chunk, part))
        .collect();
    // SAFETY: the caller guarantees that `write` initialised every part, and the parts cover
    // all `len` elements.
    out.set_len(len);
    (out, results)
}

/// `part` as initialised elements.
///
/// # Safety
/// Every element of `part` must have been written.
#[inline(always)]
pub(crate) unsafe fn assume_init<T>(part: &mut [MaybeUninit<T>]) -> &mut [T] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller guarantees initialisation.
    &mut *(part as *mut [MaybeUninit<T>] as *mut [T])
}

/// The number of threads the kernels use (rayon's pool, which candle shares).
pub(crate) fn threads() -> usize {
    rayon::current_num_threads()
}

/// Independent accumulators of the lane-parallel reductions: floating-point addition is not
/// associative, so a plain fold is one long dependency chain the compiler may not vectorise.
const LANES: usize = 8;

/// `Σᵢ f(aᵢ, bᵢ)` over two equally long slices, in [`LANES`] independent partial sums.
#[inline(always)]
pub(crate) fn sum_zip<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += f(x[i], y[i]);
        }
    }
    let tail = ra.iter().zip(rb).fold(T::zero(), |s, (&x, &y)| s + f(x, y));
    acc.iter().fold(tail, |s, &x| s + x)
}

/// `Σᵢ f(xᵢ)`, in [`LANES`] independent partial sums.
#[inline(always)]
pub(crate) fn sum_by<T: Float>(xs: &[T], f: impl Fn(T) -> T) -> T {
    sum_zip(xs, xs, |x, _| f(x))
}

/// The largest element (−∞ for an empty slice), in [`LANES`] independent partial maxima.
#[inline(always)]
pub(crate) fn max<T: Float>(xs: &[T]) -> T {
    let mut acc = [T::neg_infinity(); LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(T::neg_infinity(), |m, &x| if x > m { x } else { m });
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().fold(tail, |m, &x| if x > m { x } else { m })
}

multiversion! {
    /// Adds every `acc.len()`-wide row of `rows` to `acc`.
    fn add_rows<T>(acc: &mut [T], rows: &[T]) {
        for row in rows.chunks(acc.len().max(1)) {
            acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x);
        }
    }
}

/// Column sums of a row-major `[rows, d]` buffer, rows split among tasks.
pub(crate) fn column_sums<T: Float>(x: &[T], d: usize) -> Vec<T> {
    use rayon::prelude::*;
    let rows_per_task = (x.len() / d.max(1)).div_ceil(4 * threads()).max(1);
    x.par_chunks(rows_per_task * d.max(1))
        .map(|rows| {
            let mut acc = vec![T::zero(); d];
            add_rows(&mut acc, rows);
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
    fn fast_f32_exp_matches_the_exact_exp() {
        let worst = (-87_000..=88_376)
            .map(|i| i as f64 * 1e-3)
            .map(|x| ((Float::exp_fast(x as f32) as f64 - (x as f32 as f64).exp()) / (x as f32 as f64).exp()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "max relative exp error {worst:e}");
        assert_eq!(Float::exp_fast(0f32), 1.0);
        assert!(Float::exp_fast(-1e9f32) < 1e-37);
    }

    #[test]
    fn lane_reductions_match_plain_folds() {
        let x: Vec<f64> = (0..37).map(|i| ((i * 7919) % 101) as f64 - 50.0).collect();
        let y: Vec<f64> = (0..37).map(|i| (i as f64).sin()).collect();
        let dot: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert!((sum_zip(&x, &y, |a, b| a * b) - dot).abs() < 1e-9);
        assert_eq!(sum_by(&x, |a| a * a), x.iter().map(|a| a * a).sum::<f64>());
        assert_eq!(max(&x), 50.0);
        assert_eq!(max::<f64>(&[]), f64::NEG_INFINITY);
    }

    #[test]
    fn column_sums_add_every_row() {
        let x: Vec<f64> = (0..35).map(f64::from).collect();
        // Rows of 5: column j sums j + 5k over k < 7.
        let expected: Vec<f64> = (0..5).map(|j| (0..7).map(|k| (j + 5 * k) as f64).sum()).collect();
        assert_eq!(column_sums(&x, 5), expected);
    }
}
