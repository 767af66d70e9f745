//! The treatment: language-specific adapters trained as meta-parameters (Wang, Lipton &
//! Tsvetkov 2020, §5), by a one-step look-ahead.
//!
//! Shared parameters θ, adapters φ_l of language l. One meta step for a sampled language l:
//! 1. shared update: AdamW step on θ with l's MLM loss on a training batch (φ_l too if
//!    `update_adapters_in_shared_step`);
//! 2. look-ahead on a fresh batch of l: θ′ = θ − α ∇θ L_train(θ, φ_l);
//! 3. meta loss: the mean over languages k of L_meta_k(θ′, φ_k), on batches of the meta split
//!    (held apart from training and validation);
//! 4. φ_l alone is updated, with its own AdamW and clipping, by ∇φ_l of the meta loss taken
//!    through θ′.
//!
//! Step 4's gradient has a direct term (the k = l part of the meta loss) and a second-order
//! term −α (∂²L_train/∂φ_l∂θ) ∇θ′L_meta, a mixed Hessian–vector product. [`MetaOrder::Exact`]
//! (the default) gets it by double backpropagation, which candle supports once
//! `CANDLE_GRAD_DO_NOT_DETACH=1` is set for the thread ([`crate::grads::enable_second_order`];
//! verified against finite differences in `tests/meta.rs`). [`MetaOrder::FiniteDifference`]
//! gets it from two extra gradient evaluations at θ ± εv (no second-order graph, any ops), and
//! [`MetaOrder::FirstOrder`] drops it, as an ablation.

use super::config::{MetaConfig, MetaOrder};
use super::trainer::{update, StepReport, Trainer};
use crate::batch::MlmBatch;
use crate::error::{Error, Result};
use crate::grads::{scalar, second_order_enabled};
use crate::lang::Lang;
use crate::model::{MlmModel, ParamGroup};
use crate::rng::{stream, Purpose};
use candle_core::{Tensor, Var};
use rand_chacha::ChaCha8Rng;

/// The meta-gradient of one language's adapters.
#[derive(Clone, Debug)]
pub struct MetaGradient {
    /// The look-ahead batch's loss L_train(θ, φ_l).
    pub lookahead_loss: f64,
    /// The meta loss: mean over languages of L_meta_k(θ′, φ_k).
    pub meta_loss: f64,
    /// `(registry index, gradient)` of every adapter parameter of the language.
    pub grads: Vec<(usize, Tensor)>,
}

/// Sums losses as tensors (mean over `losses`).
fn mean(losses: Vec<Tensor>) -> Result<Tensor> {
    let n = losses.len() as f64;
    Ok((Tensor::stack(&losses, 0)?.sum_all()? / n)?)
}

/// The meta loss at parameters `params`: the mean over `meta` batches (one per language).
fn meta_loss(model: &MlmModel, params: &[Tensor], meta: &[MlmBatch]) -> Result<Tensor> {
    mean(meta.iter().map(|b| model.loss_with(params, b, None)).collect::<Result<_>>()?)
}

/// Computes ∇φ_l of the meta loss through the look-ahead θ′ = θ − α ∇θ L(θ, φ_l) (α is
/// `config.inner_lr`, the differentiation `config.order`) on
/// `lookahead` (a batch of `lang`), for the model's current parameters. Dropout in the
/// look-ahead uses copies of `dropout` (the same masks in every evaluation); the meta loss runs
/// without dropout.
pub fn meta_gradient(
    model: &MlmModel,
    lang: &Lang,
    lookahead: &MlmBatch,
    meta: &[MlmBatch],
    config: &MetaConfig,
    dropout: Option<&ChaCha8Rng>,
) -> Result<MetaGradient> {
    let (alpha, order, fd_radius) = (config.inner_lr, config.order, config.fd_radius);
    let registry = model.registry();
    let shared = registry.indices_in(&ParamGroup::Shared);
    let phi = registry.indices_in(&ParamGroup::Specific(lang.clone()));
    if phi.is_empty() {
        return Err(Error::Config(format!("the model has no adapters for {lang} to meta-learn")));
    }
    let params = registry.tensors();
    let lookahead_loss = |at: &[Tensor]| model.loss_with(at, lookahead, dropout.cloned().as_mut());
    let train = lookahead_loss(&params)?;
    let train_value = scalar(&train)?;
    let store = train.backward()?;
    let grad = |p: usize| -> Result<Tensor> {
        Ok(match store.get(&params[p]) {
            Some(g) => g.clone(),
            None => params[p].zeros_like()?,
        })
    };
    if order == MetaOrder::Exact {
        if !second_order_enabled()? {
            return Err(Error::Config(format!(
                "exact meta-gradients need {}=1 before this thread's first backward pass; call \
                 interference::grads::enable_second_order() at start-up, or use order \"finite_difference\"",
                crate::grads::SECOND_ORDER_SWITCH
            )));
        }
        let mut lifted = params.clone();
        for &p in &shared {
            lifted[p] = (&params[p] - (grad(p)? * alpha)?)?;
        }
        let loss = meta_loss(model, &lifted, meta)?;
        let meta_store = loss.backward()?;
        let grads = phi
            .iter()
            .map(|&p| Ok((p, meta_store.get(&params[p]).map_or_else(|| params[p].zeros_like(), |g| Ok(g.detach()))?)))
            .collect::<Result<_>>()?;
        return Ok(MetaGradient { lookahead_loss: train_value, meta_loss: scalar(&loss)?, grads });
    }
    // θ′ as fresh leaves, so the meta loss's backward gives v = ∇θ′ L_meta and the direct term.
    let mut lifted = params.clone();
    let mut leaves = Vec::with_capacity(shared.len());
    for &p in &shared {
        let leaf = Var::from_tensor(&(params[p].detach() - (grad(p)?.detach() * alpha)?)?)?;
        lifted[p] = leaf.as_tensor().clone();
        leaves.push(leaf);
    }
    drop(store);
    let loss = meta_loss(model, &lifted, meta)?;
    let meta_store = loss.backward()?;
    let mut grads: Vec<(usize, Tensor)> = phi
        .iter()
        .map(|&p| Ok((p, meta_store.get(&params[p]).map_or_else(|| params[p].zeros_like(), |g| Ok(g.detach()))?)))
        .collect::<Result<_>>()?;
    if order == MetaOrder::FiniteDifference {
        let v: Vec<Tensor> = leaves
            .iter()
            .map(|leaf| {
                meta_store.get(leaf.as_tensor()).map_or_else(|| leaf.as_tensor().zeros_like(), |g| Ok(g.detach()))
            })
            .collect::<candle_core::Result<_>>()?;
        let norm = v.iter().map(|t| scalar(&t.sqr()?.sum_all()?)).sum::<Result<f64>>()?.sqrt();
        if norm > 0.0 {
            let eps = fd_radius / norm;
            let phi_grads_at = |sign: f64| -> Result<Vec<Tensor>> {
                let mut at = params.clone();
                for (&p, vp) in shared.iter().zip(&v) {
                    at[p] = (params[p].detach() + (vp * (sign * eps))?)?;
                }
                let store = lookahead_loss(&at)?.backward()?;
                phi.iter()
                    .map(|&p| {
                        store
                            .get(&params[p])
                            .map_or_else(|| params[p].zeros_like(), |g| Ok(g.detach()))
                            .map_err(Error::from)
                    })
                    .collect()
            };
            let (plus, minus) = (phi_grads_at(1.0)?, phi_grads_at(-1.0)?);
            for ((_, g), (a, b)) in grads.iter_mut().zip(plus.iter().zip(&minus)) {
                let hvp = ((a - b)? / (2.0 * eps))?;
                *g = (&*g - (hvp * alpha)?)?;
            }
        }
    }
    Ok(MetaGradient { lookahead_loss: train_value, meta_loss: scalar(&loss)?, grads })
}

impl Trainer {
    /// One meta step (see the module documentation).
    pub(super) fn meta_step(&mut self) -> Result<StepReport> {
        let cfg = self.config.meta.clone();
        let mut rng = stream(self.config.seed, Purpose::Batch, self.step as u64);
        let li = self.sampler.sample(&mut rng);
        let lang = self.data.langs().as_slice()[li].clone();
        let shared_batch = self.lang_batch(li, self.config.batch_size, self.data.train(li), &mut rng)?;
        let lookahead_rows =
            if cfg.lookahead_batch_size == 0 { self.config.batch_size } else { cfg.lookahead_batch_size };
        let lookahead = self.lang_batch(li, lookahead_rows, self.data.train(li), &mut rng)?;
        let meta = (0..self.data.langs().len())
            .map(|k| self.lang_batch(k, cfg.meta_batch_size, self.data.meta(k), &mut rng))
            .collect::<Result<Vec<_>>>()?;
        let mut dropout = stream(self.config.seed, Purpose::Dropout, self.step as u64);

        // 1. Shared update.
        let registry = self.model.registry();
        let phi = registry.indices_in(&crate::model::ParamGroup::Specific(lang.clone()));
        let params = registry.tensors();
        // First order only: on the fused kernels this is the hand-written pass even while the
        // exact meta-gradient below keeps second-order graphs.
        let (loss, grads) = self.model.loss_and_grads(&params, &shared_batch, Some(&mut dropout))?;
        let reported = self.checked(&loss, &shared_batch)?;
        let shared_grads = registry
            .infos()
            .iter()
            .zip(grads)
            .enumerate()
            .map(|(i, (info, g))| {
                let trained =
                    info.group == ParamGroup::Shared || (cfg.update_adapters_in_shared_step && phi.contains(&i));
                if trained {
                    g
                } else {
                    None
                }
            })
            .collect();
        let lr = self.lr();
        let grad_norm = update(&self.model, &mut self.optimizer, shared_grads, self.config.clip_norm, lr, self.step)?;

        // 2-4. Look-ahead, meta loss, adapter update through θ′.
        let mg = meta_gradient(&self.model, &lang, &lookahead, &meta, &cfg, Some(&dropout))?;
        if !mg.meta_loss.is_finite() {
            return Err(Error::NonFinite { what: "meta loss".into(), step: self.step, value: mg.meta_loss });
        }
        let mut meta_grads: Vec<Option<Tensor>> = vec![None; self.model.registry().len()];
        for (p, g) in mg.grads {
            meta_grads[p] = Some(g);
        }
        let meta_lr = super::optim::learning_rate(cfg.lr, self.step, self.config.warmup_steps, self.config.steps);
        update(&self.model, &mut self.meta_optimizer, meta_grads, cfg.clip_norm, meta_lr, self.step)?;
        Ok(StepReport {
            step: self.step + 1,
            loss: reported.loss,
            languages: vec![reported],
            lr,
            grad_norm,
            meta_loss: Some(mg.meta_loss),
        })
    }
}
