//! The loss and every parameter's gradient in one hand-written pass over the fused kernels.
//!
//! candle's autograd accumulates each intermediate tensor's gradient into a freshly zeroed
//! buffer and keeps a graph node per op. On the fused path the model's structure is known, so
//! the forward pass here keeps exactly what the backward pass needs and the backward pass
//! writes each gradient once. [`MlmModel::loss_and_grads`] falls back to autograd wherever the
//! fused kernels do not run, and both paths are checked against each other and against finite
//! differences (`tests/kernels.rs`, `tests/gradients.rs`).

use super::{padding_flags, AdapterIds, BlockAdapters, BlockIds, LinearIds, MlmModel};
use crate::batch::MlmBatch;
use crate::error::Error;
use crate::error::Result;
use crate::grads::accumulate;
use crate::kernels::attention::{context, context_grads, probabilities, probabilities_grads, Probabilities};
use crate::kernels::elementwise::combine;
use crate::kernels::rows::scatter_add;
use crate::kernels::{cross_entropy, gelu, linear, norm, Operand};
use crate::model::layers::dropout_mask;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::sync::Arc;

/// What the adapters `h + up(gelu(down(h)))` of a block position keep for their backward pass
/// (all segments' rows, each through its language's adapter).
struct AdapterTape {
    h: Operand,
    down: Tensor,
    act: Operand,
}

/// Consecutive rows of a merged batch that share a language.
#[derive(Clone, Copy, Debug)]
struct Segment {
    /// The language's index in the model's language set.
    lang: usize,
    /// The segment's first token (`row · cols`) in the merged batch.
    start: usize,
    /// The segment's number of tokens.
    len: usize,
    /// The segment's first target in the merged batch.
    first_target: usize,
    /// The segment's number of targets.
    targets: usize,
}

/// What a block keeps for its backward pass. Tensors that only matrix products read are kept
/// as [`Operand`]s (rounded to the model's precision once, in the forward pass); `x`, `x1` and
/// the attention probabilities are kept both ways, as the LayerNorm and softmax backward
/// passes need them in f32.
struct BlockTape {
    x: Tensor,
    x_operand: Operand,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
    probs_operand: Operand,
    ctx: Operand,
    mask1: Option<Tensor>,
    attn_adapter: Option<AdapterTape>,
    a: Tensor,
    /// The first LayerNorm's stacked scale and shift (as the fused op takes them).
    wb1: Tensor,
    x1: Tensor,
    x1_operand: Operand,
    f1: Tensor,
    g1: Operand,
    mask2: Option<Tensor>,
    ffn_adapter: Option<AdapterTape>,
    f: Tensor,
    /// The second LayerNorm's stacked scale and shift.
    wb2: Tensor,
}

/// Gradients in registry order, summed as they arrive.
struct Grads(Vec<Option<Tensor>>);

impl Grads {
    fn add(&mut self, i: usize, g: Tensor) -> Result<()> {
        accumulate(&mut self.0[i], g)
    }

    fn linear(&mut self, ids: LinearIds, dw: Tensor, db: Tensor) -> Result<()> {
        self.add(ids.w, dw)?;
        self.add(ids.b, db)
    }

    /// The gradients of a LayerNorm's stacked `[scale; shift]`.
    fn norm(&mut self, ids: LinearIds, dwb: &Tensor) -> Result<()> {
        self.add(ids.w, dwb.get(0)?)?;
        self.add(ids.b, dwb.get(1)?)
    }
}

/// The parameters of a pass as its ops read them: every parameter as it is (biases, LayerNorm
/// scales and shifts, the embedding tables of the lookups), and each weight matrix that the
/// pass multiplies by (the shared layers', the segments' adapters', the tied output
/// projection) as an operand rounded once to the products' precision.
struct PassParams<'a> {
    params: &'a [Tensor],
    weights: Vec<Option<Operand>>,
}

impl PassParams<'_> {
    /// Weight matrix `i` as an operand.
    fn weight(&self, i: usize) -> Result<&Operand> {
        self.weights[i].as_ref().ok_or_else(|| Error::Shape(format!("parameter {i} is not a weight of this pass")))
    }
}

/// A LayerNorm's scale and shift stacked as the fused op takes them, `[2, d]`.
fn norm_params(params: &[Tensor], ids: LinearIds) -> Result<Tensor> {
    Ok(Tensor::stack(&[&params[ids.w], &params[ids.b]], 0)?)
}

/// `x ⊙ mask`, or `x` without a mask.
fn masked(x: &Tensor, mask: &Option<Tensor>) -> Result<Tensor> {
    Ok(match mask {
        Some(m) => combine(&[x], Some(m))?,
        None => x.clone(),
    })
}

impl MlmModel {
    /// Mean MLM cross-entropy of `batch` with parameter values `params` (registry order), and
    /// its gradient with respect to each of them (`None` for parameters the batch does not use,
    /// such as other languages' adapters); dropout is on when `rng` is given.
    ///
    /// On the fused kernels this is one hand-written pass (also while candle keeps
    /// second-order graphs: it builds none); elsewhere it is candle's autograd on
    /// [`MlmModel::loss_with`].
    pub fn loss_and_grads(
        &self,
        params: &[Tensor],
        batch: &MlmBatch,
        rng: Option<&mut ChaCha8Rng>,
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        self.weighted_loss_and_grads(params, batch, rng, 1.0)
    }

    /// As [`MlmModel::loss_and_grads`], with the gradients of `weight ×` the loss (the loss
    /// itself is returned unweighted).
    pub fn weighted_loss_and_grads(
        &self,
        params: &[Tensor],
        batch: &MlmBatch,
        rng: Option<&mut ChaCha8Rng>,
        weight: f64,
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        if !self.hand_written(params) {
            let loss = self.loss_with(params, batch, rng)?;
            let store = if weight == 1.0 { loss.backward()? } else { (&loss * weight)?.backward()? };
            let grads = params.iter().map(|p| store.get(p).cloned()).collect();
            return Ok((loss, grads));
        }
        let params: Vec<Tensor> = params.iter().map(Tensor::detach).collect();
        let (mut losses, grads) = self.taped(&params, std::slice::from_ref(batch), rng, weight)?;
        Ok((losses.remove(0), grads))
    }

    /// The mean loss of each of `batches` (one per language, say) and the gradient of the mean
    /// loss over all their predicted positions, `Σ_b (n_b / n) · loss_b` with `n_b` the targets
    /// of batch `b` and `n` their total: what a trainer mixing languages steps on.
    ///
    /// On the fused kernels, batches of one sequence length and padding id run as one merged
    /// batch through the shared layers, each language's rows through its own adapters (one
    /// pass of full-size matrix products instead of one pass per language); elsewhere, one
    /// pass per batch. The two agree up to dropout masks, which differ.
    pub fn joint_loss_and_grads(
        &self,
        params: &[Tensor],
        batches: &[MlmBatch],
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Result<(Vec<Tensor>, Vec<Option<Tensor>>)> {
        let total: usize = batches.iter().map(|b| b.targets.len()).sum();
        let mergeable = batches.windows(2).all(|w| w[0].cols == w[1].cols && w[0].pad == w[1].pad);
        if batches.len() > 1 && mergeable && self.hand_written(params) {
            let params: Vec<Tensor> = params.iter().map(Tensor::detach).collect();
            return self.taped(&params, batches, rng, 1.0);
        }
        let mut grads = vec![None; params.len()];
        let mut losses = Vec::with_capacity(batches.len());
        for batch in batches {
            let weight = batch.targets.len() as f64 / total as f64;
            let (loss, batch_grads) = self.weighted_loss_and_grads(params, batch, rng.as_deref_mut(), weight)?;
            losses.push(loss);
            for (sum, g) in grads.iter_mut().zip(batch_grads) {
                if let Some(g) = g {
                    accumulate(sum, g)?;
                }
            }
        }
        Ok((losses, grads))
    }

    /// `batches` as one batch of all their rows (the first batch itself when there is one),
    /// and where each one's tokens and targets lie in it.
    fn merged<'a>(&self, batches: &'a [MlmBatch]) -> Result<(Cow<'a, MlmBatch>, Vec<Segment>)> {
        let mut segments = Vec::with_capacity(batches.len());
        let (mut start, mut first_target) = (0, 0);
        for b in batches {
            if b.targets.is_empty() {
                return Err(Error::Shape(format!("a batch of {} has no positions to predict", b.lang)));
            }
            let lang = self.config.languages.index(&b.lang)?;
            segments.push(Segment { lang, start, len: b.tokens.len(), first_target, targets: b.targets.len() });
            start += b.tokens.len();
            first_target += b.targets.len();
        }
        let first = match batches {
            [one] => return Ok((Cow::Borrowed(one), segments)),
            [first, ..] => first,
            [] => return Err(Error::Shape("a step of no batches".into())),
        };
        let (mut tokens, mut positions, mut targets) =
            (Vec::with_capacity(start), Vec::with_capacity(first_target), Vec::with_capacity(first_target));
        for b in batches {
            let offset = tokens.len() as u32;
            tokens.extend_from_slice(&b.tokens);
            positions.extend(b.positions.iter().map(|&p| p + offset));
            targets.extend_from_slice(&b.targets);
        }
        let rows = batches.iter().map(|b| b.rows).sum();
        let batch =
            MlmBatch { lang: first.lang.clone(), rows, cols: first.cols, tokens, positions, targets, pad: first.pad };
        Ok((Cow::Owned(batch), segments))
    }

    /// Each batch's mean loss, and the gradients of `weight ×` the mean loss over all their
    /// targets; the batches share a sequence length and padding id.
    fn taped(
        &self,
        params: &[Tensor],
        batches: &[MlmBatch],
        mut rng: Option<&mut ChaCha8Rng>,
        weight: f64,
    ) -> Result<(Vec<Tensor>, Vec<Option<Tensor>>)> {
        for batch in batches {
            self.check_batch(params, batch)?;
        }
        let (batch, segments) = self.merged(batches)?;
        let (b, s, d) = (batch.rows, batch.cols, self.config.d_model);
        let ln = norm::LayerNorm { eps: self.config.ln_eps };
        let mut e = self.embeddings(params, &batch, None)?;
        let token_langs = match self.emb.lang {
            Some(l) => {
                let langs = segments.iter().flat_map(|g| std::iter::repeat_n(g.lang as u32, g.len)).collect::<Vec<_>>();
                let on_device = Tensor::from_slice(&langs, b * s, &self.device)?;
                e = combine(&[&e, &params[l].index_select(&on_device, 0)?], None)?;
                Some((l, langs))
            }
            None => None,
        };
        let wb0 = norm_params(params, LinearIds { w: self.emb.ln_w, b: self.emb.ln_b })?;
        let h0 = e.apply_op2_no_bwd(&wb0, &ln)?;
        let mask0 = dropout_mask(&h0, self.config.dropout, rng.as_deref_mut())?;
        let mut h = masked(&h0, &mask0)?;
        let padded = padding_flags(&batch).map(Arc::new);
        let pass = self.pass_params(params, &segments)?;
        let mut tapes = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let adapters = self.segment_adapters(i, &segments);
            let (tape, out) =
                self.block_forward(&pass, block, &adapters, &segments, &h, s, padded.clone(), rng.as_deref_mut())?;
            tapes.push(tape);
            h = out;
        }
        let positions = Tensor::from_slice(&batch.positions, batch.positions.len(), &self.device)?;
        let targets = Tensor::from_slice(&batch.targets, batch.targets.len(), &self.device)?;
        let (tok, out_bias, prec) = (self.emb.tok, self.emb.out_bias, self.precision);
        let picked = Operand::new(&h.index_select(&positions, 0)?, prec)?;
        let logits = linear::apply(&picked, pass.weight(tok)?, &params[out_bias])?;
        let (target_losses, dlogits) = cross_entropy::loss_and_grads(&logits, &targets, weight)?;
        // Each segment's mean, where the losses are (on a GPU, without waiting for it).
        let losses = segments
            .iter()
            .map(|g| {
                let sum = target_losses.narrow(0, g.first_target, g.targets)?.sum_all()?;
                Ok((sum / g.targets as f64)?.to_dtype(logits.dtype())?)
            })
            .collect::<Result<Vec<_>>>()?;

        let mut grads = Grads(vec![None; params.len()]);
        let (dpicked, dtok, dbias) = linear::grads(&picked, pass.weight(tok)?, &dlogits, prec)?;
        grads.add(tok, dtok)?;
        grads.add(out_bias, dbias)?;
        let mut dh = scatter_add(&dpicked, &batch.positions, b * s)?;
        for (i, (block, tape)) in self.blocks.iter().zip(tapes).enumerate().rev() {
            let adapters = self.segment_adapters(i, &segments);
            dh = self.block_backward(&pass, block, &adapters, &segments, tape, &dh, s, &mut grads)?;
        }
        let (de, dwb0) = ln.grads(&e, None, &wb0, &[&masked(&dh, &mask0)?])?;
        grads.norm(LinearIds { w: self.emb.ln_w, b: self.emb.ln_b }, &dwb0)?;
        grads.add(tok, scatter_add(&de, &batch.tokens, params[tok].dim(0)?)?)?;
        let dpos = de.reshape((b, s, d))?.sum(0)?;
        grads.add(self.emb.pos, pad_rows(&dpos, 0, self.config.max_len)?)?;
        if let Some((l, langs)) = token_langs {
            grads.add(l, scatter_add(&de, &langs, params[l].dim(0)?)?)?;
        }
        Ok((losses, grads.0))
    }

    /// The parameters of a pass over `segments` as its ops read them.
    fn pass_params<'a>(&self, params: &'a [Tensor], segments: &[Segment]) -> Result<PassParams<'a>> {
        let mut multiplied = vec![false; params.len()];
        multiplied[self.emb.tok] = true;
        for (i, block) in self.blocks.iter().enumerate() {
            for l in [block.q, block.k, block.v, block.o, block.fc1, block.fc2] {
                multiplied[l.w] = true;
            }
            for a in self.segment_adapters(i, segments).into_iter().flatten() {
                for l in [a.attn.down, a.attn.up, a.ffn.down, a.ffn.up] {
                    multiplied[l.w] = true;
                }
            }
        }
        let weights = params
            .iter()
            .zip(multiplied)
            .map(|(p, m)| m.then(|| Operand::new(p, self.precision)).transpose())
            .collect::<candle_core::Result<_>>()?;
        Ok(PassParams { params, weights })
    }

    /// Each segment's language adapters in block `block` (`None`s without adapters).
    fn segment_adapters(&self, block: usize, segments: &[Segment]) -> Vec<Option<BlockAdapters>> {
        segments.iter().map(|g| self.adapters.get(g.lang).map(|a| a[block])).collect()
    }

    /// The attention probabilities op of this model for sequences of `seq` tokens.
    fn probabilities(&self, seq: usize, padded: Option<Arc<Vec<bool>>>) -> Probabilities {
        Probabilities::new(self.config.heads, seq, self.config.d_model, padded)
    }

    /// Block `ids` on `x`, and what its backward pass needs.
    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        pass: &PassParams,
        ids: &BlockIds,
        adapters: &[Option<BlockAdapters>],
        segments: &[Segment],
        x: &Tensor,
        seq: usize,
        padded: Option<Arc<Vec<bool>>>,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Result<(BlockTape, Tensor)> {
        let (prec, params) = (self.precision, pass.params);
        let lin =
            |t: &Operand, l: LinearIds| -> Result<Tensor> { Ok(linear::apply(t, pass.weight(l.w)?, &params[l.b])?) };
        let x_operand = Operand::new(x, prec)?;
        let (q, key, v) = (lin(&x_operand, ids.q)?, lin(&x_operand, ids.k)?, lin(&x_operand, ids.v)?);
        let probs = probabilities(&q, &key, &self.probabilities(seq, padded), prec)?;
        let probs_operand = Operand::new(&probs, prec)?;
        let ctx = Operand::new(&context(&probs_operand, &v, self.config.heads, seq, prec)?, prec)?;
        let o = lin(&ctx, ids.o)?;
        let mask1 = dropout_mask(&o, self.config.dropout, rng.as_deref_mut())?;
        let attn = |a: &BlockAdapters| a.attn;
        let (a, attn_adapter) = self.adapter_forward(pass, adapters, attn, segments, masked(&o, &mask1)?)?;
        let ln = norm::LayerNorm { eps: self.config.ln_eps };
        let wb1 = norm_params(params, ids.ln1)?;
        let x1 = x.apply_op3_no_bwd(&a, &wb1, &ln)?;
        let x1_operand = Operand::new(&x1, prec)?;
        let f1 = lin(&x1_operand, ids.fc1)?;
        let g1 = Operand::new(&gelu::apply(&f1)?, prec)?;
        let f2 = lin(&g1, ids.fc2)?;
        let mask2 = dropout_mask(&f2, self.config.dropout, rng)?;
        let ffn = |a: &BlockAdapters| a.ffn;
        let (f, ffn_adapter) = self.adapter_forward(pass, adapters, ffn, segments, masked(&f2, &mask2)?)?;
        let wb2 = norm_params(params, ids.ln2)?;
        let out = x1.apply_op3_no_bwd(&f, &wb2, &ln)?;
        let tape = BlockTape {
            x: x.clone(),
            x_operand,
            q,
            k: key,
            v,
            probs,
            probs_operand,
            ctx,
            mask1,
            attn_adapter,
            a,
            wb1,
            x1,
            x1_operand,
            f1,
            g1,
            mask2,
            ffn_adapter,
            f,
            wb2,
        };
        Ok((tape, out))
    }

    /// Returns `d x` of the block given `d out`, adding the block's parameter gradients.
    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        pass: &PassParams,
        ids: &BlockIds,
        adapters: &[Option<BlockAdapters>],
        segments: &[Segment],
        t: BlockTape,
        dout: &Tensor,
        seq: usize,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let (ln, prec) = (norm::LayerNorm { eps: self.config.ln_eps }, self.precision);
        let (ds2, dwb2) = ln.grads(&t.x1, Some(&t.f), &t.wb2, &[dout])?;
        grads.norm(ids.ln2, &dwb2)?;
        let ffn = |a: &BlockAdapters| a.ffn;
        let df2 = self.adapter_backward(pass, adapters, ffn, segments, t.ffn_adapter, &ds2, &t.mask2, grads)?;
        let (dg1, dw, db) = linear::grads(&t.g1, pass.weight(ids.fc2.w)?, &df2, prec)?;
        grads.linear(ids.fc2, dw, db)?;
        let df1 = gelu::grads(&t.f1, &dg1)?;
        let (dx1, dw, db) = linear::grads(&t.x1_operand, pass.weight(ids.fc1.w)?, &df1, prec)?;
        grads.linear(ids.fc1, dw, db)?;
        let (ds1, dwb1) = ln.grads(&t.x, Some(&t.a), &t.wb1, &[&ds2, &dx1])?;
        grads.norm(ids.ln1, &dwb1)?;
        let attn = |a: &BlockAdapters| a.attn;
        let dop = self.adapter_backward(pass, adapters, attn, segments, t.attn_adapter, &ds1, &t.mask1, grads)?;
        let (dctx, dw, db) = linear::grads(&t.ctx, pass.weight(ids.o.w)?, &dop, prec)?;
        grads.linear(ids.o, dw, db)?;
        let (dp, dv) = context_grads(&t.probs_operand, &t.v, &dctx, self.config.heads, seq, prec)?;
        let (dq, dk) = probabilities_grads(&t.q, &t.k, &t.probs, &dp, &self.probabilities(seq, None), prec)?;
        let mut dx = vec![ds1];
        for (l, g) in [(ids.q, dq), (ids.k, dk), (ids.v, dv)] {
            let (dxi, dw, db) = linear::grads(&t.x_operand, pass.weight(l.w)?, &g, prec)?;
            grads.linear(l, dw, db)?;
            dx.push(dxi);
        }
        Ok(combine(&dx.iter().collect::<Vec<_>>(), None)?)
    }

    /// `h + up(gelu(down(h)))` with each segment's rows through its language's adapter (`pick`
    /// chooses the block's attention or feed-forward one), and the tape; `h` itself and no tape
    /// without adapters.
    fn adapter_forward(
        &self,
        pass: &PassParams,
        adapters: &[Option<BlockAdapters>],
        pick: impl Fn(&BlockAdapters) -> AdapterIds,
        segments: &[Segment],
        h: Tensor,
    ) -> Result<(Tensor, Option<AdapterTape>)> {
        let Some(ids) = adapter_ids(adapters, pick)? else { return Ok((h, None)) };
        let prec = self.precision;
        let h_operand = Operand::new(&h, prec)?;
        let down = linear::apply_grouped(&h_operand, &groups(pass, segments, &ids, |a| a.down)?)?;
        let act = Operand::new(&gelu::apply(&down)?, prec)?;
        let out = combine(&[&h, &linear::apply_grouped(&act, &groups(pass, segments, &ids, |a| a.up)?)?], None)?;
        Ok((out, Some(AdapterTape { h: h_operand, down, act })))
    }

    /// `d h ⊙ mask` of [`MlmModel::adapter_forward`] (or of the identity, without adapters)
    /// given `d out`, adding the adapters' parameter gradients; `mask` is the dropout mask
    /// applied before them.
    #[allow(clippy::too_many_arguments)]
    fn adapter_backward(
        &self,
        pass: &PassParams,
        adapters: &[Option<BlockAdapters>],
        pick: impl Fn(&BlockAdapters) -> AdapterIds,
        segments: &[Segment],
        tape: Option<AdapterTape>,
        dout: &Tensor,
        mask: &Option<Tensor>,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let (Some(ids), Some(t)) = (adapter_ids(adapters, pick)?, tape) else { return masked(dout, mask) };
        let up = groups(pass, segments, &ids, |a| a.up)?;
        let prec = self.precision;
        let dact = linear::input_grads_grouped(dout, &up, prec)?;
        let down = groups(pass, segments, &ids, |a| a.down)?;
        let ddown = gelu::grads(&t.down, &dact)?;
        let dh = linear::input_grads_grouped(&ddown, &down, prec)?;
        for (g, a) in segments.iter().zip(&ids) {
            // The segment's rows (candle's narrow of all rows is the tensor itself, uncopied).
            let rows = |t: &Tensor| t.narrow(0, g.start, g.len);
            let (dw, db) = linear::weight_grads(&t.act.rows(g.start, g.len)?, &rows(dout)?, prec)?;
            grads.linear(a.up, dw, db)?;
            let (dw, db) = linear::weight_grads(&t.h.rows(g.start, g.len)?, &rows(&ddown)?, prec)?;
            grads.linear(a.down, dw, db)?;
        }
        Ok(combine(&[dout, &dh], mask.as_ref())?)
    }
}

/// Each segment's adapter (`pick` of its language's block adapters), or `None` without
/// adapters; the model has adapters for every language or for none.
fn adapter_ids(
    adapters: &[Option<BlockAdapters>],
    pick: impl Fn(&BlockAdapters) -> AdapterIds,
) -> Result<Option<Vec<AdapterIds>>> {
    match adapters.iter().map(|a| a.as_ref().map(&pick)).collect::<Option<Vec<_>>>() {
        Some(ids) => Ok(Some(ids)),
        None if adapters.iter().all(Option::is_none) => Ok(None),
        None => Err(Error::Shape("adapters for some languages of a merged batch only".into())),
    }
}

/// The row groups of a grouped linear map: each segment's rows through `which` of its adapter.
fn groups<'a>(
    pass: &'a PassParams,
    segments: &[Segment],
    ids: &[AdapterIds],
    which: impl Fn(&AdapterIds) -> LinearIds,
) -> Result<Vec<linear::Group<'a>>> {
    segments
        .iter()
        .zip(ids)
        .map(|(g, a)| {
            let l = which(a);
            Ok(linear::Group { rows: g.start..g.start + g.len, w: pass.weight(l.w)?, b: &pass.params[l.b] })
        })
        .collect()
}

/// `rows` `[r, d]` placed at row `at` of an otherwise zero `[total, d]` tensor.
fn pad_rows(rows: &Tensor, at: usize, total: usize) -> Result<Tensor> {
    let (r, d) = rows.dims2()?;
    let zeros = |n: usize| Tensor::zeros((n, d), rows.dtype(), rows.device());
    let mut parts = Vec::with_capacity(3);
    if at > 0 {
        parts.push(zeros(at)?);
    }
    parts.push(rows.clone());
    if total > at + r {
        parts.push(zeros(total - at - r)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}
