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
use crate::error::Result;
use crate::grads::accumulate;
use crate::kernels::attention::{context_grads, probabilities_grads, HeadProduct, Probabilities, Product};
use crate::kernels::elementwise::combine;
use crate::kernels::{cross_entropy, gelu, linear, norm};
use crate::model::layers::dropout_mask;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// What an adapter `h + up(gelu(down(h)))` keeps for its backward pass.
struct AdapterTape {
    h: Tensor,
    down: Tensor,
    act: Tensor,
}

/// What a block keeps for its backward pass.
struct BlockTape {
    x: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
    ctx: Tensor,
    mask1: Option<Tensor>,
    attn_adapter: Option<AdapterTape>,
    a: Tensor,
    x1: Tensor,
    f1: Tensor,
    g1: Tensor,
    mask2: Option<Tensor>,
    ffn_adapter: Option<AdapterTape>,
    f: Tensor,
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
    /// itself is returned unweighted); a trainer mixing languages weights each batch so.
    pub fn weighted_loss_and_grads(
        &self,
        params: &[Tensor],
        batch: &MlmBatch,
        rng: Option<&mut ChaCha8Rng>,
        weight: f64,
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        if !params.first().is_some_and(|p| self.kernels.hand_written_for(p)) {
            let loss = self.loss_with(params, batch, rng)?;
            let store = if weight == 1.0 { loss.backward()? } else { (&loss * weight)?.backward()? };
            let grads = params.iter().map(|p| store.get(p).cloned()).collect();
            return Ok((loss, grads));
        }
        let params: Vec<Tensor> = params.iter().map(Tensor::detach).collect();
        self.taped(&params, batch, rng, weight)
    }

    fn taped(
        &self,
        params: &[Tensor],
        batch: &MlmBatch,
        mut rng: Option<&mut ChaCha8Rng>,
        weight: f64,
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        self.check_batch(params, batch)?;
        let lang = self.config.languages.index(&batch.lang)?;
        let (b, s, d) = (batch.rows, batch.cols, self.config.d_model);
        let ln = norm::LayerNorm { eps: self.config.ln_eps };
        let (ids, e) = self.embeddings(params, batch, lang)?;
        let wb0 = norm_params(params, LinearIds { w: self.emb.ln_w, b: self.emb.ln_b })?;
        let h0 = e.apply_op2_no_bwd(&wb0, &ln)?;
        let mask0 = dropout_mask(&h0, self.config.dropout, rng.as_deref_mut())?;
        let mut h = masked(&h0, &mask0)?;
        let padded = padding_flags(batch).map(Arc::new);
        let mut tapes = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let adapters = self.adapters.get(lang).map(|a| a[i]);
            let (tape, out) = self.block_forward(params, block, adapters, &h, s, padded.clone(), rng.as_deref_mut())?;
            tapes.push(tape);
            h = out;
        }
        let positions = Tensor::from_slice(&batch.positions, batch.positions.len(), &self.device)?;
        let targets = Tensor::from_slice(&batch.targets, batch.targets.len(), &self.device)?;
        let picked = h.index_select(&positions, 0)?;
        let (tok, out_bias) = (self.emb.tok, self.emb.out_bias);
        let logits = linear::apply(&picked, &params[tok], &params[out_bias])?;
        let (loss, dlogits) = cross_entropy::loss_and_grads(&logits, &targets, weight)?;
        let mut grads = Grads(vec![None; params.len()]);
        let (dpicked, dtok, dbias) = linear::grads(&picked, &params[tok], &dlogits)?;
        grads.add(tok, dtok)?;
        grads.add(out_bias, dbias)?;
        let mut dh = h.zeros_like()?.index_add(&positions, &dpicked, 0)?;
        for (i, (block, tape)) in self.blocks.iter().zip(tapes).enumerate().rev() {
            let adapters = self.adapters.get(lang).map(|a| a[i]);
            dh = self.block_backward(params, block, adapters, tape, &dh, s, &mut grads)?;
        }
        let (de, dwb0) = ln.grads(&e, None, &wb0, &[&masked(&dh, &mask0)?])?;
        grads.norm(LinearIds { w: self.emb.ln_w, b: self.emb.ln_b }, &dwb0)?;
        grads.add(tok, params[tok].zeros_like()?.index_add(&ids, &de, 0)?)?;
        let dpos = de.reshape((b, s, d))?.sum(0)?;
        grads.add(self.emb.pos, pad_rows(&dpos, 0, self.config.max_len)?)?;
        if let Some(l) = self.emb.lang {
            grads.add(l, pad_rows(&de.sum_keepdim(0)?, lang, self.config.languages.len())?)?;
        }
        Ok((loss, grads.0))
    }

    /// The attention probabilities op of this model for sequences of `seq` tokens.
    fn probabilities(&self, seq: usize, padded: Option<Arc<Vec<bool>>>) -> Probabilities {
        Probabilities::new(self.config.heads, seq, self.config.d_model, padded)
    }

    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        params: &[Tensor],
        ids: &BlockIds,
        adapters: Option<BlockAdapters>,
        x: &Tensor,
        seq: usize,
        padded: Option<Arc<Vec<bool>>>,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Result<(BlockTape, Tensor)> {
        let lin = |t: &Tensor, l: LinearIds| linear::apply(t, &params[l.w], &params[l.b]);
        let (q, key, v) = (lin(x, ids.q)?, lin(x, ids.k)?, lin(x, ids.v)?);
        let probs = q.apply_op2_no_bwd(&key, &self.probabilities(seq, padded))?;
        let context = HeadProduct { product: Product::Context, heads: self.config.heads, seq };
        let ctx = probs.apply_op2_no_bwd(&v, &context)?;
        let o = lin(&ctx, ids.o)?;
        let mask1 = dropout_mask(&o, self.config.dropout, rng.as_deref_mut())?;
        let (a, attn_adapter) = self.adapter_forward(params, adapters.map(|a| a.attn), masked(&o, &mask1)?)?;
        let ln = norm::LayerNorm { eps: self.config.ln_eps };
        let x1 = x.apply_op3_no_bwd(&a, &norm_params(params, ids.ln1)?, &ln)?;
        let f1 = lin(&x1, ids.fc1)?;
        let g1 = gelu::apply(&f1)?;
        let f2 = lin(&g1, ids.fc2)?;
        let mask2 = dropout_mask(&f2, self.config.dropout, rng)?;
        let (f, ffn_adapter) = self.adapter_forward(params, adapters.map(|a| a.ffn), masked(&f2, &mask2)?)?;
        let out = x1.apply_op3_no_bwd(&f, &norm_params(params, ids.ln2)?, &ln)?;
        let tape = BlockTape {
            x: x.clone(),
            q,
            k: key,
            v,
            probs,
            ctx,
            mask1,
            attn_adapter,
            a,
            x1,
            f1,
            g1,
            mask2,
            ffn_adapter,
            f,
        };
        Ok((tape, out))
    }

    /// Returns `d x` of the block given `d out`, adding the block's parameter gradients.
    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        params: &[Tensor],
        ids: &BlockIds,
        adapters: Option<BlockAdapters>,
        t: BlockTape,
        dout: &Tensor,
        seq: usize,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let ln = norm::LayerNorm { eps: self.config.ln_eps };
        let wb2 = norm_params(params, ids.ln2)?;
        let (ds2, dwb2) = ln.grads(&t.x1, Some(&t.f), &wb2, &[dout])?;
        grads.norm(ids.ln2, &dwb2)?;
        let df2 = self.adapter_backward(params, adapters.map(|a| a.ffn), t.ffn_adapter, &ds2, &t.mask2, grads)?;
        let (dg1, dw, db) = linear::grads(&t.g1, &params[ids.fc2.w], &df2)?;
        grads.linear(ids.fc2, dw, db)?;
        let df1 = gelu::grads(&t.f1, &dg1)?;
        let (dx1, dw, db) = linear::grads(&t.x1, &params[ids.fc1.w], &df1)?;
        grads.linear(ids.fc1, dw, db)?;
        let wb1 = norm_params(params, ids.ln1)?;
        let (ds1, dwb1) = ln.grads(&t.x, Some(&t.a), &wb1, &[&ds2, &dx1])?;
        grads.norm(ids.ln1, &dwb1)?;
        let dop = self.adapter_backward(params, adapters.map(|a| a.attn), t.attn_adapter, &ds1, &t.mask1, grads)?;
        let (dctx, dw, db) = linear::grads(&t.ctx, &params[ids.o.w], &dop)?;
        grads.linear(ids.o, dw, db)?;
        let (dp, dv) = context_grads(&t.probs, &t.v, &dctx, self.config.heads, seq)?;
        let (dq, dk) = probabilities_grads(&t.q, &t.k, &t.probs, &dp, &self.probabilities(seq, None))?;
        let mut dx = vec![ds1];
        for (l, g) in [(ids.q, dq), (ids.k, dk), (ids.v, dv)] {
            let (dxi, dw, db) = linear::grads(&t.x, &params[l.w], &g)?;
            grads.linear(l, dw, db)?;
            dx.push(dxi);
        }
        Ok(combine(&dx.iter().collect::<Vec<_>>(), None)?)
    }

    /// `h + up(gelu(down(h)))` and its tape, or `h` itself without an adapter.
    fn adapter_forward(
        &self,
        params: &[Tensor],
        ids: Option<AdapterIds>,
        h: Tensor,
    ) -> Result<(Tensor, Option<AdapterTape>)> {
        let Some(ids) = ids else { return Ok((h, None)) };
        let down = linear::apply(&h, &params[ids.down.w], &params[ids.down.b])?;
        let act = gelu::apply(&down)?;
        let out = combine(&[&h, &linear::apply(&act, &params[ids.up.w], &params[ids.up.b])?], None)?;
        Ok((out, Some(AdapterTape { h, down, act })))
    }

    /// `d h ⊙ mask` of an adapter (or of the identity, without one) given `d out`, adding its
    /// parameter gradients; `mask` is the dropout mask applied before it.
    fn adapter_backward(
        &self,
        params: &[Tensor],
        ids: Option<AdapterIds>,
        tape: Option<AdapterTape>,
        dout: &Tensor,
        mask: &Option<Tensor>,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let (Some(ids), Some(t)) = (ids, tape) else { return masked(dout, mask) };
        let (dact, dw, db) = linear::grads(&t.act, &params[ids.up.w], dout)?;
        grads.linear(ids.up, dw, db)?;
        let ddown = gelu::grads(&t.down, &dact)?;
        let (dh, dw, db) = linear::grads(&t.h, &params[ids.down.w], &ddown)?;
        grads.linear(ids.down, dw, db)?;
        Ok(combine(&[dout, &dh], mask.as_ref())?)
    }
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
