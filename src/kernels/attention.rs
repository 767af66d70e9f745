//! Multi-head attention without transposed copies.
//!
//! Queries, keys, values and the context stay in the `[batch·seq, d]` layout of the linear
//! maps; head `h` of sequence `i` is the `seq × d/heads` matrix that starts at column
//! `h·d/heads` with rows `d` apart, which `gemm` reads through its strides. Scores and
//! probabilities are `[batch, heads, seq, seq]`. Each (sequence, head) pair is one task.

use super::cpu::{float_dispatch, matmul, max, multiversion, slice, sum_by, sum_zip, written, Float, SharedMut, View};
use super::{wide, Operand, Precision};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// The additive score of a padded key, as in the reference path.
const PAD_SCORE: f64 = -1e9;

/// How a buffer holds one matrix per (sequence, head).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Grid {
    /// `[batch·seq, d]`: per head a `seq × d/heads` matrix.
    Rows,
    /// `[batch, heads, seq, seq]`: per head a `seq × seq` matrix.
    Square,
}

/// The sizes every attention product shares.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    heads: usize,
    seq: usize,
    d: usize,
}

impl Dims {
    fn dh(&self) -> usize {
        self.d / self.heads
    }

    /// The matrix of (sequence `b`, head `h`) in a buffer laid out as `grid`, and its size.
    fn view(&self, grid: Grid, b: usize, h: usize) -> (View, (usize, usize)) {
        match grid {
            Grid::Rows => (View::rows(b * self.seq * self.d + h * self.dh(), self.d), (self.seq, self.dh())),
            Grid::Square => (View::rows((b * self.heads + h) * self.seq * self.seq, self.seq), (self.seq, self.seq)),
        }
    }

    fn shape(&self, grid: Grid) -> Shape {
        match grid {
            Grid::Rows => Shape::from((self.batch * self.seq, self.d)),
            Grid::Square => Shape::from((self.batch, self.heads, self.seq, self.seq)),
        }
    }

    /// Reads the sizes from an input laid out as `grid`, of sequences of `seq` tokens.
    fn of(layout: &Layout, grid: Grid, heads: usize, seq: usize, op: &str) -> candle_core::Result<Dims> {
        let err = |what: &str| candle_core::Error::Msg(format!("{op}: input of shape {:?} {what}", layout.dims()));
        match grid {
            Grid::Rows => {
                let (n, d) = layout.shape().dims2()?;
                if heads == 0 || d % heads != 0 {
                    return Err(err(&format!("has a width not divisible by {heads} heads")));
                }
                if seq == 0 || n % seq != 0 {
                    return Err(err(&format!("does not hold whole sequences of {seq}")));
                }
                Ok(Dims { batch: n / seq, heads, seq, d })
            }
            Grid::Square => {
                let (batch, h, rows, cols) = layout.shape().dims4()?;
                if h != heads || rows != seq || cols != seq {
                    return Err(err(&format!("is not [batch, {heads}, {seq}, {seq}]")));
                }
                Ok(Dims { batch, heads, seq, d: 0 })
            }
        }
    }
}

/// One side of a per-head product: its layout and whether it is read transposed.
#[derive(Clone, Copy, Debug)]
struct Side {
    grid: Grid,
    transposed: bool,
}

const fn operand(grid: Grid, transposed: bool) -> Side {
    Side { grid, transposed }
}

/// `out[b, h] = lhs[b, h] · rhs[b, h]` for every sequence and head, one task per pair.
fn per_head<T: Float>(dims: Dims, out: Grid, lhs: (&[T], Side), rhs: (&[T], Side)) -> Vec<T> {
    let len = dims.shape(out).elem_count();
    // Every product here is at least this small in each of m, n and k.
    let smallest = dims.seq.min(dims.dh());
    // SAFETY: the (sequence, head) matrices of `out` tile all `len` elements, and each task's
    // product writes its matrix completely.
    unsafe { written(len, (dims.seq, smallest, smallest), |dst| fill_per_head(dims, out, SharedMut(dst), lhs, rhs)) }
}

/// The tasks of [`per_head`], writing into `ptr`.
fn fill_per_head<T: Float>(dims: Dims, out: Grid, ptr: SharedMut<T>, lhs: (&[T], Side), rhs: (&[T], Side)) {
    (0..dims.batch * dims.heads).into_par_iter().for_each(|task| {
        let (b, h) = (task / dims.heads, task % dims.heads);
        let (dv, (m, n)) = dims.view(out, b, h);
        let (mut av, (ar, ac)) = dims.view(lhs.1.grid, b, h);
        let (mut bv, _) = dims.view(rhs.1.grid, b, h);
        let k = if lhs.1.transposed { ar } else { ac };
        if lhs.1.transposed {
            av = av.t();
        }
        if rhs.1.transposed {
            bv = bv.t();
        }
        // SAFETY: each task writes only the matrix of its own (sequence, head) in `dst`, and
        // every view lies inside its buffer by construction of `Dims`.
        unsafe { matmul((m, n, k), ptr.get(), dv, false, lhs.0.as_ptr(), av, rhs.0.as_ptr(), bv, 1) };
    });
}

/// Which per-head product a [`HeadProduct`] computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Product {
    /// `context = P · V` (the forward op; differentiable).
    Context,
    /// `dP = dC · Vᵀ`.
    ContextGradP,
    /// `dV = Pᵀ · dC`.
    ContextGradV,
    /// `dQ = dS · K` (the scale is already in `dS`).
    ScoresGradQ,
    /// `dK = dSᵀ · Q`.
    ScoresGradK,
}

impl Product {
    /// Layouts of (lhs, rhs, output).
    fn operands(self) -> (Side, Side, Grid) {
        use Grid::{Rows, Square};
        match self {
            Product::Context => (operand(Square, false), operand(Rows, false), Rows),
            Product::ContextGradP => (operand(Rows, false), operand(Rows, true), Square),
            Product::ContextGradV => (operand(Square, true), operand(Rows, false), Rows),
            Product::ScoresGradQ => (operand(Square, false), operand(Rows, false), Rows),
            Product::ScoresGradK => (operand(Square, true), operand(Rows, false), Rows),
        }
    }
}

/// A per-head matrix product between `[batch·seq, d]` and `[batch, heads, seq, seq]` tensors.
#[derive(Clone, Copy)]
pub(crate) struct HeadProduct {
    pub product: Product,
    pub heads: usize,
    pub seq: usize,
}

impl HeadProduct {
    fn run<T: Float>(
        &self,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (lo, ro, out) = self.product.operands();
        let name = self.name();
        let (la, lb) =
            (Dims::of(al, lo.grid, self.heads, self.seq, name)?, Dims::of(bl, ro.grid, self.heads, self.seq, name)?);
        if la.batch != lb.batch || la.seq != lb.seq {
            return Err(candle_core::Error::Msg(format!("{name}: inputs {:?} and {:?} differ", al.dims(), bl.dims())));
        }
        let d = la.d.max(lb.d);
        if (la.d != 0 && la.d != d) || (lb.d != 0 && lb.d != d) {
            return Err(candle_core::Error::Msg(format!("{name}: inputs {:?} and {:?} differ", al.dims(), bl.dims())));
        }
        let dims = Dims { d, ..la };
        let dst = per_head(dims, out, (slice::<T>(a, al, name)?, lo), (slice::<T>(b, bl, name)?, ro));
        Ok((T::to_cpu_storage_owned(dst), dims.shape(out)))
    }
}

impl CustomOp2 for HeadProduct {
    fn name(&self) -> &'static str {
        "fused-attention-product"
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

    fn bwd(
        &self,
        p: &Tensor,
        v: &Tensor,
        _c: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if self.product != Product::Context {
            return Err(candle_core::Error::BackwardNotSupported { op: self.name() });
        }
        let (dp, dv) = context_grads(&Operand::exact(p), v, g, self.heads, self.seq, Precision::Fp32)?;
        Ok((Some(dp), Some(dv)))
    }
}

multiversion! {
    /// `softmax(scale · scores + mask)` of one row in place; padded keys get [`PAD_SCORE`].
    fn softmax_row<T>(scores: &mut [T], padded: Option<&[bool]>, scale: T, pad: T) {
        scores.iter_mut().for_each(|x| *x *= scale);
        if let Some(padded) = padded {
            scores.iter_mut().zip(padded).filter(|(_, &p)| p).for_each(|(x, _)| *x += pad);
        }
        let max = max(scores);
        scores.iter_mut().for_each(|x| *x = (*x - max).exp_fast());
        let inv = T::one() / sum_by(scores, |x| x);
        scores.iter_mut().for_each(|x| *x *= inv);
    }
}

multiversion! {
    /// `o = scale · p ⊙ (g − p·g)` for one row.
    fn softmax_grad_row<T>(o: &mut [T], p: &[T], g: &[T], scale: T) {
        let dot = sum_zip(p, g, |p, g| p * g);
        for ((o, &p), &g) in o.iter_mut().zip(p).zip(g) {
            *o = scale * p * (g - dot);
        }
    }
}

/// Attention probabilities `softmax(scale · Q·Kᵀ + mask)` per head, `[batch, heads, seq, seq]`.
pub(crate) struct Probabilities {
    pub heads: usize,
    /// Tokens per sequence.
    pub seq: usize,
    pub scale: f64,
    /// `[batch · seq]` flags of padded keys (masked out), or `None`.
    pub padded: Option<Arc<Vec<bool>>>,
}

impl Probabilities {
    /// The op for `heads` heads of width `d/heads` over sequences of `seq` tokens, scaled by
    /// `1/√(d/heads)`.
    pub fn new(heads: usize, seq: usize, d: usize, padded: Option<Arc<Vec<bool>>>) -> Self {
        Probabilities { heads, seq, scale: 1.0 / ((d / heads.max(1)) as f64).sqrt(), padded }
    }

    fn run<T: Float>(
        &self,
        q: &CpuStorage,
        ql: &Layout,
        k: &CpuStorage,
        kl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let dims = Dims::of(ql, Grid::Rows, self.heads, self.seq, name)?;
        if kl.dims() != ql.dims() {
            return Err(candle_core::Error::Msg(format!(
                "{name}: queries {:?} and keys {:?} differ",
                ql.dims(),
                kl.dims()
            )));
        }
        if let Some(p) = &self.padded {
            if p.len() != dims.batch * dims.seq {
                return Err(candle_core::Error::Msg(format!("{name}: {} padding flags for {:?}", p.len(), ql.dims())));
            }
        }
        let (q, k) = (slice::<T>(q, ql, name)?, slice::<T>(k, kl, name)?);
        let mut probs = per_head(dims, Grid::Square, (q, operand(Grid::Rows, false)), (k, operand(Grid::Rows, true)));
        let (s, scale, pad) = (dims.seq, T::from_f64(self.scale), T::from_f64(PAD_SCORE));
        probs.par_chunks_mut(s).enumerate().for_each(|(row, scores)| {
            let b = row / (dims.heads * s);
            softmax_row(scores, self.padded.as_ref().map(|p| &p[b * s..(b + 1) * s]), scale, pad);
        });
        Ok((T::to_cpu_storage_owned(probs), dims.shape(Grid::Square)))
    }
}

impl CustomOp2 for Probabilities {
    fn name(&self) -> &'static str {
        "fused-attention-probabilities"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        ql: &Layout,
        k: &CpuStorage,
        kl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(q, self.name(), T => self.run::<T>(q, ql, k, kl))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        p: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dq, dk) = probabilities_grads(q, k, p, g, self, Precision::Fp32)?;
        Ok((Some(dq), Some(dk)))
    }
}

/// Gradient of the scores from that of the probabilities: `scale · P ⊙ (dP − Σⱼ P·dP)` per row.
struct SoftmaxGrad {
    scale: f64,
}

impl SoftmaxGrad {
    fn run<T: Float>(
        &self,
        p: &CpuStorage,
        pl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        if pl.dims() != gl.dims() {
            return Err(candle_core::Error::Msg(format!("{name}: {:?} and {:?} differ", pl.dims(), gl.dims())));
        }
        let (p, g) = (slice::<T>(p, pl, name)?, slice::<T>(g, gl, name)?);
        let s = *pl.dims().last().unwrap_or(&1);
        let scale = T::from_f64(self.scale);
        let mut out = vec![T::zero(); p.len()];
        let s = s.max(1);
        out.par_chunks_mut(s)
            .zip(p.par_chunks(s))
            .zip(g.par_chunks(s))
            .for_each(|((o, p), g)| softmax_grad_row(o, p, g, scale));
        Ok((T::to_cpu_storage_owned(out), pl.shape().clone()))
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "fused-attention-softmax-grad"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        p: &candle_core::CudaStorage,
        pl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        if pl.dims() != gl.dims() {
            return Err(candle_core::Error::Msg(format!(
                "{}: {:?} and {:?} differ",
                self.name(),
                pl.dims(),
                gl.dims()
            )));
        }
        let s = (*pl.dims().last().unwrap_or(&1)).max(1);
        Ok((super::cuda::softmax_grads((p, pl), (g, gl), s, self.scale)?, pl.shape().clone()))
    }

    fn cpu_fwd(
        &self,
        p: &CpuStorage,
        pl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(p, self.name(), T => self.run::<T>(p, pl, g, gl))
    }
}

/// The probabilities of `op` for queries `q` and keys `k` (`[batch·seq, d]`), without autograd:
/// the products' operands rounded to `prec` ([`Precision::round`]), the softmax in f32.
pub(crate) fn probabilities(
    q: &Tensor,
    k: &Tensor,
    op: &Probabilities,
    prec: Precision,
) -> candle_core::Result<Tensor> {
    if !q.device().is_cuda() {
        return prec.round(q)?.apply_op2_no_bwd(&prec.round(k)?, op);
    }
    let (n, _) = q.dims2()?;
    let heads = |t: &Tensor| prec.round(&heads_major(t, op.heads, op.seq)?);
    let scores = wide(&heads(q)?.matmul(&heads(k)?.t()?)?)?;
    let bias: Vec<f32> = match &op.padded {
        Some(p) if p.len() == n => p.iter().map(|&p| if p { PAD_SCORE as f32 } else { 0.0 }).collect(),
        Some(p) => {
            return Err(candle_core::Error::Msg(format!("{}: {} padding flags for {n} tokens", op.name(), p.len())))
        }
        None => vec![0.0; n],
    };
    let bias = Tensor::from_vec(bias, (n / op.seq.max(1), op.seq), q.device())?;
    scores.apply_op2_no_bwd(&bias, &ScaledSoftmax { scale: op.scale })
}

/// `context = P · V` per head (`[batch·seq, d]`), without autograd: `p` is an operand already,
/// `v` is rounded to `prec` here.
pub(crate) fn context(
    p: &Operand,
    v: &Tensor,
    heads: usize,
    seq: usize,
    prec: Precision,
) -> candle_core::Result<Tensor> {
    if !p.device().is_cuda() {
        let op = HeadProduct { product: Product::Context, heads, seq };
        return p.contiguous()?.apply_op2_no_bwd(&prec.round(v)?, &op);
    }
    rows_major(&wide(&p.matmul(&prec.round(&heads_major(v, heads, seq)?)?)?)?)
}

/// `[batch·seq, d]` with the heads side by side as a contiguous `[batch, heads, seq, d/heads]`
/// (the layout cuBLAS's batched products read).
fn heads_major(t: &Tensor, heads: usize, seq: usize) -> candle_core::Result<Tensor> {
    let (n, d) = t.dims2()?;
    let t = t.reshape((n / seq, seq, heads, d / heads))?.contiguous()?;
    let permuted = t.apply_op1_no_bwd(&PermuteHeads { seq, heads, to_heads: true })?;
    permuted.reshape((n / seq, heads, seq, d / heads))
}

/// The inverse of [`heads_major`].
fn rows_major(t: &Tensor) -> candle_core::Result<Tensor> {
    let (b, h, s, dh) = t.dims4()?;
    t.contiguous()?.apply_op1_no_bwd(&PermuteHeads { seq: s, heads: h, to_heads: false })?.reshape((b * s, h * dh))
}

/// `[batch, seq, heads, dh]` → `[batch, heads, seq, dh]` (`to_heads`), or back, as one copy
/// (candle's strided copy takes about twice as long).
struct PermuteHeads {
    seq: usize,
    heads: usize,
    to_heads: bool,
}

impl PermuteHeads {
    /// The input's four dimensions, checked against the heads and sequence length.
    fn dims(&self, l: &Layout) -> candle_core::Result<(usize, usize, usize, usize)> {
        let (b, d1, d2, dh) = l.shape().dims4()?;
        let expected = if self.to_heads { (self.seq, self.heads) } else { (self.heads, self.seq) };
        if (d1, d2) != expected {
            let (h, s) = (self.heads, self.seq);
            return Err(candle_core::Error::Msg(format!(
                "{}: {:?} is not {h} heads of {s} tokens",
                self.name(),
                l.dims()
            )));
        }
        Ok((b, d1, d2, dh))
    }
}

impl CustomOp1 for PermuteHeads {
    fn name(&self) -> &'static str {
        "permute-heads"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, d1, d2, dh) = self.dims(l)?;
        let name = self.name();
        float_dispatch!(s, name, T => {
            let src = slice::<T>(s, l, name)?;
            let mut out = Vec::with_capacity(src.len());
            // dst[i][j][k] = src[i][k][j] over the two middle dimensions.
            for i in 0..b {
                for j in 0..d2 {
                    for k in 0..d1 {
                        out.extend_from_slice(&src[((i * d1 + k) * d2 + j) * dh..][..dh]);
                    }
                }
            }
            Ok((T::to_cpu_storage_owned(out), Shape::from((b, d2, d1, dh))))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (b, d1, d2, dh) = self.dims(l)?;
        let out = super::cuda::permute_heads((s, l), self.seq, self.heads, self.to_heads)?;
        Ok((out, Shape::from((b, d2, d1, dh))))
    }
}

/// `softmax(scale · scores + bias)` over the last dimension of `[batch, heads, seq, seq]`
/// scores, with an additive bias per key `[batch, seq]`: `CustomOp2(scores, bias)`, the
/// softmax half of [`Probabilities`] where cuBLAS computes the scores (CUDA).
struct ScaledSoftmax {
    scale: f64,
}

impl ScaledSoftmax {
    /// `(rows per batch, keys)`, checked.
    fn dims(&self, sl: &Layout, bl: &Layout) -> candle_core::Result<(usize, usize)> {
        let (b, h, rows, s) = sl.shape().dims4()?;
        if bl.dims() != [b, s] {
            return Err(candle_core::Error::Msg(format!(
                "{}: scores {:?}, key bias {:?}",
                self.name(),
                sl.dims(),
                bl.dims()
            )));
        }
        Ok((h * rows, s))
    }
}

impl CustomOp2 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "fused-scaled-softmax"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        bias: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (per_batch, s) = self.dims(xl, bl)?;
        let name = self.name();
        float_dispatch!(x, name, T => {
            let (x, bias) = (slice::<T>(x, xl, name)?, slice::<T>(bias, bl, name)?);
            let scale = T::from_f64(self.scale);
            let mut out = x.to_vec();
            out.par_chunks_mut(s).enumerate().for_each(|(row, o)| {
                let bias = &bias[row / per_batch * s..][..s];
                o.iter_mut().zip(bias).for_each(|(x, &b)| *x = *x * scale + b);
                let max = max(o);
                o.iter_mut().for_each(|x| *x = (*x - max).exp());
                let inv = T::from_f64(1.0) / sum_by(o, |x| x);
                o.iter_mut().for_each(|x| *x *= inv);
            });
            Ok((T::to_cpu_storage_owned(out), xl.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        bias: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (per_batch, s) = self.dims(xl, bl)?;
        Ok((super::cuda::softmax((x, xl), (bias, bl), s, per_batch, self.scale)?, xl.shape().clone()))
    }
}

/// `(dP, dV)` of `context = P · V` per head given `g = d context` (`v` and `g` rounded to
/// `prec` here, as in [`context`]).
pub(crate) fn context_grads(
    p: &Operand,
    v: &Tensor,
    g: &Tensor,
    heads: usize,
    seq: usize,
    prec: Precision,
) -> candle_core::Result<(Tensor, Tensor)> {
    if p.device().is_cuda() {
        let g = prec.round(&heads_major(g, heads, seq)?)?;
        let dp = wide(&g.matmul(&prec.round(&heads_major(v, heads, seq)?)?.t()?)?)?;
        let dv = wide(&p.t()?.matmul(&g)?)?;
        return Ok((dp, rows_major(&dv)?));
    }
    let (v, g) = (prec.round(v)?, prec.round(g)?.contiguous()?);
    let dp = g.apply_op2_no_bwd(&v, &HeadProduct { product: Product::ContextGradP, heads, seq })?;
    let dv = p.apply_op2_no_bwd(&g, &HeadProduct { product: Product::ContextGradV, heads, seq })?;
    Ok((dp, dv))
}

/// `(dQ, dK)` of the probabilities `p` of `op` given `g = dP` (operands as in
/// [`probabilities`]).
pub(crate) fn probabilities_grads(
    q: &Tensor,
    k: &Tensor,
    p: &Tensor,
    g: &Tensor,
    op: &Probabilities,
    prec: Precision,
) -> candle_core::Result<(Tensor, Tensor)> {
    let ds = prec.round(&p.apply_op2_no_bwd(&g.contiguous()?, &SoftmaxGrad { scale: op.scale })?)?;
    let (heads, seq) = (op.heads, op.seq);
    if ds.device().is_cuda() {
        let dq = wide(&ds.matmul(&prec.round(&heads_major(k, heads, seq)?)?)?)?;
        let dk = wide(&ds.t()?.matmul(&prec.round(&heads_major(q, heads, seq)?)?)?)?;
        return Ok((rows_major(&dq)?, rows_major(&dk)?));
    }
    let (q, k) = (prec.round(q)?, prec.round(k)?);
    let dq = ds.apply_op2_no_bwd(&k, &HeadProduct { product: Product::ScoresGradQ, heads, seq })?;
    let dk = ds.apply_op2_no_bwd(&q, &HeadProduct { product: Product::ScoresGradK, heads, seq })?;
    Ok((dq, dk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn head_layouts_match_candle_transposes() {
        let (b, s, h, dh) = (2, 5, 3, 4);
        let x = Tensor::randn(0f32, 1., (b * s, h * dh), &Device::Cpu).unwrap();
        let ours = heads_major(&x, h, s).unwrap();
        let theirs = x.reshape((b, s, h, dh)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        assert_eq!(
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(ours.dims(), theirs.dims());
        let back = rows_major(&ours).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
        assert!(heads_major(&x, h, s + 1).is_err());
    }

    #[test]
    fn scores_then_softmax_match_the_fused_probabilities() {
        // The GPU's two steps (cuBLAS scores, then ScaledSoftmax with a per-key bias) against
        // the CPU's one op, padding included.
        let (b, s, h, dh) = (2, 6, 2, 3);
        let dev = Device::Cpu;
        let q = Tensor::randn(0f64, 1., (b * s, h * dh), &dev).unwrap();
        let k = Tensor::randn(0f64, 1., (b * s, h * dh), &dev).unwrap();
        let padded: Vec<bool> = (0..b * s).map(|i| i % s >= s - 1 - i / s).collect();
        let op = Probabilities::new(h, s, h * dh, Some(Arc::new(padded.clone())));
        let fused = q.apply_op2_no_bwd(&k, &op).unwrap();
        let scores = heads_major(&q, h, s).unwrap().matmul(&heads_major(&k, h, s).unwrap().t().unwrap()).unwrap();
        let bias: Vec<f64> = padded.iter().map(|&p| if p { PAD_SCORE } else { 0.0 }).collect();
        let bias = Tensor::from_vec(bias, (b, s), &dev).unwrap();
        let two_step = scores.apply_op2_no_bwd(&bias, &ScaledSoftmax { scale: op.scale }).unwrap();
        let gap = (fused - two_step).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(gap.to_scalar::<f64>().unwrap() < 1e-12);
        assert!(scores.apply_op2_no_bwd(&bias.narrow(1, 0, s - 1).unwrap(), &ScaledSoftmax { scale: 1.0 }).is_err());
    }
}
