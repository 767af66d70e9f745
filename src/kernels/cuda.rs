//! Launchers of the fused CUDA kernels (`cuda.cu`, compiled to PTX by `build.rs`): the
//! `cuda_fwd` halves of the ops in the sibling modules, on f32 tensors. The hand-written
//! training pass ([`crate::model::MlmModel::loss_and_grads`]) runs on them on a GPU; its matrix
//! products go to cuBLAS through candle.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, CudaStorage, Layout, Result};

/// The kernels' PTX.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));

/// The name candle caches the loaded module under.
const MODULE: &str = "interference-fused-kernels";

/// Threads per block of the row-wise kernels (a multiple of 32).
const BLOCK: u32 = 256;
// layer_norm_bwd_warps in cuda.cu is written for 8 warps (LN_WARPS) per block.
const _: () = assert!(BLOCK == 256, "cuda.cu's LN_WARPS assumes 8 warps per block");

/// Rows per block of the LayerNorm backward pass (each block also sums the scale and shift
/// gradients of its rows).
const LN_ROWS: usize = 32;

/// Widest row the LayerNorm backward pass takes (`LN_COLS · BLOCK` in `cuda.cu`).
const LN_MAX_WIDTH: usize = 16 * BLOCK as usize;

/// Widest row the one-warp-per-row LayerNorm backward pass takes (`32 · WARP_COLS`).
const LN_WARP_WIDTH: usize = 1024;

/// Rows per warp of the one-warp-per-row LayerNorm backward pass.
const LN_ROWS_PER_WARP: usize = 4;

/// Launches kernel `$name` of [`PTX`] on `$dev`'s stream with the given arguments (references,
/// in the kernel's order).
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let func = $dev.get_or_load_custom_func($name, MODULE, PTX)?;
        let mut builder = func.builder();
        $( builder.arg($arg); )+
        // SAFETY: the arguments match the kernel's parameters in cuda.cu in number, order and
        // type, and every buffer holds the elements the kernel reads or writes (checked by the
        // callers from the layouts).
        unsafe { builder.launch($cfg) }.w()?;
    }};
}

/// The f32 elements of a contiguous input.
fn view<'a>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<CudaView<'a, f32>> {
    if !l.is_contiguous() {
        return Err(candle_core::Error::Msg(format!("{op}: needs contiguous inputs on CUDA")));
    }
    let start = l.start_offset();
    Ok(s.as_cuda_slice::<f32>()?.slice(start..start + l.shape().elem_count()))
}

/// The CUDA storage behind a tensor's storage guard (`op` names the caller in the error).
pub(crate) fn storage<'a>(
    s: &'a candle_core::Storage,
    l: &'a Layout,
    op: &str,
) -> Result<(&'a CudaStorage, &'a Layout)> {
    match s {
        candle_core::Storage::Cuda(c) => Ok((c, l)),
        _ => Err(candle_core::Error::Msg(format!("{op}: needs tensors on CUDA"))),
    }
}

/// An uninitialised f32 buffer of `n` elements (every kernel below writes all of its output).
fn output(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: the kernel launched next writes every element before anything reads it.
    unsafe { dev.alloc::<f32>(n) }
}

/// A grid of one block per `per_block` of `n` items.
fn blocks(n: usize, per_block: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(per_block).max(1) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A grid-stride launch over `n` elements.
fn elementwise(n: usize) -> LaunchConfig {
    let grid = n.div_ceil(BLOCK as usize).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (grid, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// `n` as a kernel's `int` parameter, or an error naming `what` when it does not fit.
fn int(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("{what} {n} is too large for the CUDA kernels")))
}

/// `LN(x [+ r]) · w + b` over rows of width `d` (`wb` `[2, d]`).
pub(crate) fn layer_norm(
    x: (&CudaStorage, &Layout),
    r: Option<(&CudaStorage, &Layout)>,
    wb: (&CudaStorage, &Layout),
    d: usize,
    eps: f64,
) -> Result<CudaStorage> {
    let op = "fused-layer-norm";
    let dev = x.0.device();
    let n = x.1.shape().elem_count();
    if n == 0 {
        return Ok(CudaStorage::wrap_cuda_slice(dev.alloc_zeros::<f32>(0)?, dev.clone()));
    }
    let xv = view(x.0, x.1, op)?;
    let (rv, has_r) = match r {
        Some((s, l)) => (view(s, l, op)?, 1i32),
        None => (view(x.0, x.1, op)?, 0i32),
    };
    let wbv = view(wb.0, wb.1, op)?;
    let y = output(dev, n)?;
    let (width, eps) = (int(d, "row width")?, eps as f32);
    launch!(dev, "layer_norm_fwd", blocks(n / d, 1), &xv, &rv, &has_r, &wbv, &y, &width, &eps);
    Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
}

/// `[n + 2, d]`: the input gradient of the LayerNorm of `s` (rows of width `d`) given the
/// output gradient `g`, then the scale's and the shift's gradients.
pub(crate) fn layer_norm_grads(
    s: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
    wb: (&CudaStorage, &Layout),
    d: usize,
    eps: f64,
) -> Result<CudaStorage> {
    let op = "fused-layer-norm-grad";
    if d > LN_MAX_WIDTH {
        return Err(candle_core::Error::Msg(format!("{op}: rows of {d} exceed the CUDA kernel's {LN_MAX_WIDTH}")));
    }
    let dev = s.0.device();
    let n = s.1.shape().elem_count() / d;
    let (sv, gv, wbv) = (view(s.0, s.1, op)?, view(g.0, g.1, op)?, view(wb.0, wb.1, op)?);
    let mut out = output(dev, (n + 2) * d)?;
    // Rows of up to 1024 take one warp each; wider ones a block each.
    let (kernel, per_unit, rows_per_block) = if d <= LN_WARP_WIDTH {
        ("layer_norm_bwd_warps", LN_ROWS_PER_WARP, LN_ROWS_PER_WARP * (BLOCK as usize / 32))
    } else {
        ("layer_norm_bwd", LN_ROWS, LN_ROWS)
    };
    let chunks = n.div_ceil(rows_per_block).max(1);
    let partial = output(dev, chunks * 2 * d)?;
    let (rows, width, per_unit, eps) = (int(n, "rows")?, int(d, "row width")?, per_unit as i32, eps as f32);
    {
        let mut dx = out.slice_mut(..n * d);
        let cfg = blocks(n, rows_per_block);
        launch!(dev, kernel, cfg, &sv, &gv, &wbv, &mut dx, &partial, &rows, &width, &per_unit, &eps);
    }
    let mut sums = out.slice_mut(n * d..);
    let (chunk_rows, cols) = (chunks as i32, 2 * width);
    launch!(dev, "column_sum", blocks(2 * d, BLOCK as usize), &partial, &mut sums, &chunk_rows, &cols);
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// The exact GELU element-wise.
pub(crate) fn gelu(x: (&CudaStorage, &Layout)) -> Result<CudaStorage> {
    let dev = x.0.device();
    let n = x.1.shape().elem_count();
    let xv = view(x.0, x.1, "fused-gelu")?;
    let y = output(dev, n)?;
    launch!(dev, "gelu_fwd", elementwise(n), &xv, &y, &n);
    Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
}

/// `g · gelu'(x)` element-wise.
pub(crate) fn gelu_grads(x: (&CudaStorage, &Layout), g: (&CudaStorage, &Layout)) -> Result<CudaStorage> {
    let dev = x.0.device();
    let n = x.1.shape().elem_count();
    let (xv, gv) = (view(x.0, x.1, "fused-gelu-grad")?, view(g.0, g.1, "fused-gelu-grad")?);
    let o = output(dev, n)?;
    launch!(dev, "gelu_bwd", elementwise(n), &xv, &gv, &o, &n);
    Ok(CudaStorage::wrap_cuda_slice(o, dev.clone()))
}

/// `softmax(scale · scores + key_bias)` over rows of `s` keys; `key_bias` is `[batch, s]` and
/// each batch has `rows_per_batch` rows.
pub(crate) fn softmax(
    scores: (&CudaStorage, &Layout),
    key_bias: (&CudaStorage, &Layout),
    s: usize,
    rows_per_batch: usize,
    scale: f64,
) -> Result<CudaStorage> {
    let op = "fused-scaled-softmax";
    let dev = scores.0.device();
    let n = scores.1.shape().elem_count();
    let (xv, bv) = (view(scores.0, scores.1, op)?, view(key_bias.0, key_bias.1, op)?);
    let p = output(dev, n)?;
    let (rows, width, per_batch, scale) =
        (int(n / s, "rows")?, int(s, "keys")?, int(rows_per_batch, "rows")?, scale as f32);
    let warps = (BLOCK / 32) as usize;
    launch!(dev, "softmax_fwd", blocks(n / s, warps), &xv, &bv, &p, &rows, &width, &per_batch, &scale);
    Ok(CudaStorage::wrap_cuda_slice(p, dev.clone()))
}

/// `scale · p ⊙ (g − Σ p·g)` over rows of `s`.
pub(crate) fn softmax_grads(
    p: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
    s: usize,
    scale: f64,
) -> Result<CudaStorage> {
    let op = "fused-attention-softmax-grad";
    let dev = p.0.device();
    let n = p.1.shape().elem_count();
    let (pv, gv) = (view(p.0, p.1, op)?, view(g.0, g.1, op)?);
    let ds = output(dev, n)?;
    let (rows, width, scale) = (int(n / s, "rows")?, int(s, "keys")?, scale as f32);
    launch!(dev, "softmax_bwd", blocks(n / s, (BLOCK / 32) as usize), &pv, &gv, &ds, &rows, &width, &scale);
    Ok(CudaStorage::wrap_cuda_slice(ds, dev.clone()))
}

/// `[n·v + n]`: `scale · (softmax(logits) − onehot(target))` row by row, then each row's loss;
/// the targets (u32, `[n]`) are checked by the caller.
pub(crate) fn cross_entropy(
    logits: (&CudaStorage, &Layout),
    targets: (&CudaStorage, &Layout),
    v: usize,
    scale: f64,
) -> Result<CudaStorage> {
    let op = "fused-cross-entropy-grad";
    let dev = logits.0.device();
    let n = logits.1.shape().elem_count() / v;
    let lv = view(logits.0, logits.1, op)?;
    if !targets.1.is_contiguous() {
        return Err(candle_core::Error::Msg(format!("{op}: needs contiguous targets")));
    }
    let start = targets.1.start_offset();
    let tv = targets.0.as_cuda_slice::<u32>()?.slice(start..start + n);
    let mut out = output(dev, n * v + n)?;
    let (classes, scale) = (int(v, "classes")?, scale as f32);
    {
        let (mut grads, mut losses) = out.split_at_mut(n * v);
        launch!(dev, "cross_entropy_fwd_bwd", blocks(n, 1), &lv, &tv, &mut grads, &mut losses, &classes, &scale);
    }
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// One tensor's AdamW update in [`adamw_all`]: θ, its gradient and its moments `[2, n]` (f32,
/// contiguous), and the update's scalars.
pub(crate) struct AdamWJob<'a> {
    pub theta: (&'a CudaStorage, &'a Layout),
    pub g: (&'a CudaStorage, &'a Layout),
    pub mv: (&'a CudaStorage, &'a Layout),
    /// step (`lr / (1 − β1ᵗ)`), decay, bc2 (`1 − β2ᵗ`), gradient scale, β1, β2, 1 − β1,
    /// 1 − β2, ε.
    pub scalars: [f32; 9],
}

/// Most blocks per tensor of [`adamw_all`] (the grid's x; each job is one y).
const ADAMW_BLOCKS: usize = 512;

/// The AdamW updates of all `jobs` in place, in one launch: a table of their addresses and
/// scalars goes to the device, and each row of blocks updates one tensor.
pub(crate) fn adamw_all(jobs: &[AdamWJob]) -> Result<()> {
    let op = "fused-adamw";
    let Some(first) = jobs.first() else { return Ok(()) };
    if jobs.len() > 65_535 {
        return Err(candle_core::Error::Msg(format!("{op}: {} tensors in one update (at most 65535)", jobs.len())));
    }
    let dev = first.theta.0.device();
    let stream = dev.cuda_stream();
    let address = |(s, l): (&CudaStorage, &Layout), n: usize| -> Result<u64> {
        if !l.is_contiguous() || l.shape().elem_count() != n {
            return Err(candle_core::Error::Msg(format!("{op}: needs contiguous tensors of fitting sizes")));
        }
        let (ptr, _record) = s.as_cuda_slice::<f32>()?.device_ptr(&stream);
        Ok(ptr + (l.start_offset() * std::mem::size_of::<f32>()) as u64)
    };
    let pair = |a: f32, b: f32| a.to_bits() as u64 | (b.to_bits() as u64) << 32;
    let mut table = Vec::with_capacity(9 * jobs.len());
    let mut longest = 0;
    for j in jobs {
        let n = j.theta.1.shape().elem_count();
        longest = longest.max(n);
        let [step, decay, bc2, grad_scale, beta1, beta2, one_beta1, one_beta2, eps] = j.scalars;
        table.extend([address(j.theta, n)?, address(j.g, n)?, address(j.mv, 2 * n)?, n as u64]);
        table.extend([pair(step, decay), pair(bc2, grad_scale), pair(beta1, beta2)]);
        table.extend([pair(one_beta1, one_beta2), pair(eps, 0.0)]);
    }
    let table = dev.clone_htod(&table)?;
    let blocks = longest.div_ceil(BLOCK as usize * 16).clamp(1, ADAMW_BLOCKS) as u32;
    let cfg = LaunchConfig { grid_dim: (blocks, jobs.len() as u32, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
    launch!(dev, "adamw_all", cfg, &table);
    Ok(())
}

/// The `n` f32 elements of a contiguous tensor updated in place.
fn inplace<'a>(
    s: (&'a mut CudaStorage, &Layout),
    n: usize,
    op: &str,
) -> Result<candle_core::cuda_backend::cudarc::driver::CudaViewMut<'a, f32>> {
    if !s.1.is_contiguous() || s.1.shape().elem_count() != n {
        return Err(candle_core::Error::Msg(format!("{op}: needs a contiguous tensor of {n} elements")));
    }
    let start = s.1.start_offset();
    Ok(s.0.as_cuda_slice_mut::<f32>()?.slice_mut(start..start + n))
}

/// `[dst_rows, d]`: the rows of `src` `[n, d]` summed into the destination rows of their
/// groups (`pack` laid out as in `rows.rs`), zero elsewhere.
pub(crate) fn scatter_add(
    src: (&CudaStorage, &Layout),
    pack: (&CudaStorage, &Layout),
    n: usize,
    groups: usize,
    dst_rows: usize,
    d: usize,
) -> Result<CudaStorage> {
    let op = "scatter-add-rows";
    let dev = src.0.device();
    let sv = view(src.0, src.1, op)?;
    if !pack.1.is_contiguous() {
        return Err(candle_core::Error::Msg(format!("{op}: needs a contiguous index pack")));
    }
    let start = pack.1.start_offset();
    let pv = pack.0.as_cuda_slice::<u32>()?.slice(start..start + n + 2 * groups + 1);
    let out = dev.alloc_zeros::<f32>(dst_rows * d)?;
    let (rows, count, width) = (int(n, "rows")?, int(groups, "groups")?, int(d, "row width")?);
    if groups > 0 {
        launch!(dev, "scatter_add_rows", blocks(groups, 1), &sv, &pv, &out, &rows, &count, &width);
    }
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// Blocks per tensor of [`sum_squares`] (each writes one partial sum).
const SQUARES_BLOCKS: usize = 128;

/// `Σ x²` over all elements of all `tensors` (f32), accumulated in f64: one launch per tensor
/// into a shared buffer of partial sums, which one copy brings to the host to be added in order.
pub(crate) fn sum_squares(tensors: &[(&CudaStorage, &Layout)]) -> Result<f64> {
    let op = "sum-of-squares";
    let Some(first) = tensors.first() else { return Ok(0.0) };
    let dev = first.0.device();
    let mut partial = dev.alloc_zeros::<f64>(tensors.len() * SQUARES_BLOCKS)?;
    for (i, (s, l)) in tensors.iter().enumerate() {
        let n = l.shape().elem_count();
        let v = view(s, l, op)?;
        let mut out = partial.slice_mut(i * SQUARES_BLOCKS..(i + 1) * SQUARES_BLOCKS);
        let grid = n.div_ceil(BLOCK as usize).clamp(1, SQUARES_BLOCKS) as u32;
        let cfg = LaunchConfig { grid_dim: (grid, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        launch!(dev, "sum_squares", cfg, &v, &n, &mut out);
    }
    Ok(dev.clone_dtoh(&partial)?.iter().sum())
}

/// `y[row] += b` for every row of `y` (in place).
pub(crate) fn bias_add(y: (&mut CudaStorage, &Layout), b: (&CudaStorage, &Layout)) -> Result<()> {
    let op = "bias-add";
    let (n, out) = (y.1.shape().elem_count(), b.1.shape().elem_count());
    let dev = b.0.device().clone();
    let bv = view(b.0, b.1, op)?;
    let mut yv = inplace(y, n, op)?;
    let width = int(out, "bias width")?;
    launch!(dev, "bias_add", elementwise(n), &mut yv, &bv, &n, &width);
    Ok(())
}

/// Fills `mask` (f32, in place) with 0 (probability `threshold / 2³²`) or `scale`, element `i`
/// drawn from a hash of `(seed, i)`.
pub(crate) fn keep_mask(mask: (&mut CudaStorage, &Layout), seed: u64, threshold: u32, scale: f32) -> Result<()> {
    let n = mask.1.shape().elem_count();
    let dev = mask.0.device().clone();
    let mut m = inplace(mask, n, "dropout-mask")?;
    launch!(dev, "keep_mask", elementwise(n), &mut m, &n, &seed, &threshold, &scale);
    Ok(())
}

/// `[batch·seq, heads·dh]` as `[batch, heads, seq, dh]` (`to_heads`), or back.
pub(crate) fn permute_heads(
    src: (&CudaStorage, &Layout),
    seq: usize,
    heads: usize,
    to_heads: bool,
) -> Result<CudaStorage> {
    let op = "permute-heads";
    let dev = src.0.device();
    let n = src.1.shape().elem_count();
    let dh = *src.1.dims().last().unwrap_or(&1);
    let sv = view(src.0, src.1, op)?;
    let dst = output(dev, n)?;
    let (s, h, w, dir) = (int(seq, "sequence length")?, int(heads, "heads")?, int(dh, "head width")?, to_heads as i32);
    launch!(dev, "permute_heads", elementwise(n), &sv, &dst, &n, &s, &h, &w, &dir);
    Ok(CudaStorage::wrap_cuda_slice(dst, dev.clone()))
}
