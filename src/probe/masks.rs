//! Learned masks: on a frozen model, learn for each language which weights it needs.
//!
//! Every masked weight `w` gets a real-valued score `s`. The forward pass uses
//! `w_eff = w ⊙ (m + s − sg(s))`, where `m` = [`top_k_mask`] of the scores of that tensor
//! (recomputed on the host every step) and `sg` stops the gradient: its value is `w ⊙ m`,
//! and the straight-through estimator gives `∂L/∂s = ∂L/∂w_eff ⊙ w`. Scores are trained with
//! Adam (no weight decay) on one language's MLM loss, dropout off; the model's weights never
//! change. The final mask is the top-k of the final scores.
//!
//! **Initialisation.** Scores start as uniform noise in [0, 1) — no magnitude prior — drawn
//! from `(seed, language, parameter)`. So the starting masks are random and independent
//! across seeds *and* across languages: whatever two final masks share beyond
//! [`random_jaccard`](super::random_jaccard) was learned, and comparing one language's masks
//! from two seeds (and two halves of its batches, see [`learned_mask_overlap`]) is a fair
//! chance baseline for comparing two languages' masks: both compare masks grown from
//! independent starts on different text. (A magnitude prior, `|w|·(1 + noise)`, would start
//! every mask near the same magnitude-pruned mask and inflate both overlaps alike.) Adam
//! moves a score by about `lr` per step whatever the gradient's scale, so `steps · lr` well
//! above 1 (the noise's range) lets the loss, not the start, decide the mask.
//!
//! **Granularity.** Top-k is taken per parameter tensor, so every tensor keeps the same share
//! of its weights (a layer's q, k, v, o, fc1, fc2 all keep `keep`); the overlap is then
//! measured per layer over the concatenation of its tensors' masks.

use super::overlap::{
    batch_halves, check_keep, check_keeps, layer_overlaps, top_k_mask, LangMasks, MaskScope, OverlapReport,
};
use crate::batch::MlmBatch;
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::model::{LayerSlot, MlmModel};
use crate::probe::ProbeBatches;
use crate::rng::{stream, Purpose};
use crate::train::{AdamW, AdamWConfig};
use candle_core::{DType, Tensor, Var};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How learned masks are trained and compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskLearningConfig {
    /// Densities (share of weights kept), each in (0, 1]. Default `[0.1, 0.3, 0.5]`.
    pub keeps: Vec<f64>,
    /// Adam steps on the scores per mask, cycling through its half of the language's probe
    /// batches. Default 100.
    pub steps: usize,
    /// Adam learning rate of the scores (which start in [0, 1)). Default 0.05.
    pub lr: f64,
    /// The seeds of each language's two replicate masks (replicate r: seed r, half r of the
    /// batches); they must differ. Default `[0, 1]`.
    pub seeds: [u64; 2],
    /// Which weights get masks. Default [`MaskScope::Blocks`].
    pub scope: MaskScope,
}

impl Default for MaskLearningConfig {
    fn default() -> Self {
        MaskLearningConfig { keeps: vec![0.1, 0.3, 0.5], steps: 100, lr: 0.05, seeds: [0, 1], scope: MaskScope::Blocks }
    }
}

impl MaskLearningConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field and value: empty `keeps` or a keep outside (0, 1],
    /// `steps` 0, `lr` not finite and positive, or equal seeds.
    pub fn validate(&self) -> Result<()> {
        check_keeps(&self.keeps)?;
        if self.steps == 0 {
            return Err(Error::Config("mask learning steps must be at least 1, got 0".into()));
        }
        check_lr(self.lr)?;
        if self.seeds[0] == self.seeds[1] {
            return Err(Error::Config(format!(
                "mask learning seeds must differ (the second seed gives the chance baseline), got {:?}",
                self.seeds
            )));
        }
        Ok(())
    }
}

/// The mask of one parameter tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamMask {
    /// Registry index of the parameter.
    pub param: usize,
    /// One entry per weight, row-major: whether it is kept.
    pub mask: Vec<bool>,
}

/// A mask learned for one language.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnedMask {
    /// The language whose loss the mask was trained on.
    pub lang: Lang,
    /// Share of each tensor's weights kept.
    pub keep: f64,
    /// The seed of the starting scores.
    pub seed: u64,
    /// One mask per masked parameter, in registry order.
    pub masks: Vec<ParamMask>,
    /// Mean loss over the training batches under the starting mask (top-k of the initial
    /// scores), dropout off.
    pub initial_loss: f64,
    /// Mean loss over the training batches under the final mask, dropout off.
    pub final_loss: f64,
}

impl LearnedMask {
    /// The model's parameter values (registry order, detached) with the masked weights zeroed.
    ///
    /// # Errors
    /// [`Error::Shape`] when a mask names a parameter the model lacks or has the wrong length.
    pub fn apply(&self, model: &MlmModel) -> Result<Vec<Tensor>> {
        apply_masks(model, &self.masks)
    }
}

/// The straight-through loss of one batch and the gradient of every score.
#[derive(Clone, Debug)]
pub struct ScoreGradients {
    /// Mean MLM cross-entropy of the batch under the hard masks (top-k of the scores).
    pub loss: f64,
    /// `∂L/∂s` per score tensor, in the order of the scores: `∂L/∂w_eff ⊙ w`.
    pub grads: Vec<Tensor>,
}

/// Loss and score gradients of `batch` under the straight-through mask: parameter
/// `params[j]` becomes `w ⊙ (m + s − sg(s))` with `s = scores[j]` and
/// `m = top_k_mask(s, keep)`; every other parameter keeps its value. Dropout is off and the
/// model's weights get no gradient.
///
/// # Errors
/// [`Error::Shape`] when `params` and `scores` differ in length, an index is outside the
/// registry or a score tensor's shape differs from its parameter's; [`Error::Config`] for a
/// `keep` outside (0, 1]; errors of the forward pass (e.g. a batch of an unknown language).
pub fn straight_through_gradients(
    model: &MlmModel,
    batch: &MlmBatch,
    params: &[usize],
    scores: &[Var],
    keep: f64,
) -> Result<ScoreGradients> {
    check_keep(keep)?;
    if params.len() != scores.len() {
        return Err(Error::Shape(format!("{} masked parameters but {} score tensors", params.len(), scores.len())));
    }
    let mut values = model.registry().detached();
    for (&p, s) in params.iter().zip(scores) {
        let w = values.get(p).ok_or_else(|| out_of_registry(p, model))?;
        if w.dims() != s.dims() {
            return Err(Error::Shape(format!(
                "score tensor of shape {:?} for parameter {} of shape {:?}",
                s.dims(),
                model.registry().infos()[p].name,
                w.dims()
            )));
        }
        let m = Tensor::from_vec(hard_mask(s.as_tensor(), keep)?, w.shape(), w.device())?.to_dtype(w.dtype())?;
        let st = s.as_tensor();
        let factor = ((st - st.detach())? + m)?;
        values[p] = (w * factor)?;
    }
    let loss = model.loss_with(&values, batch, None)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let store = loss.backward()?;
    let grads = scores
        .iter()
        .map(|s| match store.get(s.as_tensor()) {
            Some(g) => Ok(g.detach()),
            None => s.as_tensor().zeros_like(),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(ScoreGradients { loss: value, grads })
}

/// Learns the mask of density `keep` for the language of `batches` (all of one language):
/// `steps` Adam steps at rate `lr` on the scores, cycling through `batches`, starting from
/// noise drawn from `(seed, language, parameter)` (see the module documentation).
///
/// # Errors
/// [`Error::Config`] for no batches, batches of several languages, a `keep` outside (0, 1],
/// an `lr` that is not finite and positive, or a scope that selects nothing;
/// [`Error::UnknownLanguage`] for a language the model lacks; [`Error::NonFinite`] when the
/// loss diverges.
pub fn learn_mask(
    model: &MlmModel,
    batches: &[MlmBatch],
    keep: f64,
    steps: usize,
    lr: f64,
    seed: u64,
    scope: MaskScope,
) -> Result<LearnedMask> {
    check_keep(keep)?;
    check_lr(lr)?;
    let lang = single_language(batches)?;
    let lang_index = model.config().languages.index(&lang)? as u64;
    let params = scope.params(model.registry())?;
    let registry_len = model.registry().len() as u64;
    let scores = params
        .iter()
        .map(|&p| {
            let index = lang_index * registry_len + p as u64;
            initial_scores(&model.registry().vars()[p], stream(seed, Purpose::MaskScores, index))
        })
        .collect::<Result<Vec<Var>>>()?;
    let initial = hard_masks(&params, &scores, keep)?;
    let initial_loss = mean_loss(model, &initial, batches)?;
    let mut adam = AdamW::new(AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() }, scores.len());
    let vars: Vec<&Var> = scores.iter().collect();
    let decay = vec![false; scores.len()];
    for (step, batch) in batches.iter().cycle().take(steps).enumerate() {
        let g = straight_through_gradients(model, batch, &params, &scores, keep)?;
        if !g.loss.is_finite() {
            return Err(Error::NonFinite { what: format!("masked loss for {lang}"), step, value: g.loss });
        }
        let grads: Vec<Option<Tensor>> = g.grads.into_iter().map(Some).collect();
        adam.step(&vars, &grads, &decay, lr)?;
    }
    let masks = hard_masks(&params, &scores, keep)?;
    let final_loss = mean_loss(model, &masks, batches)?;
    Ok(LearnedMask { lang, keep, seed, masks, initial_loss, final_loss })
}

/// Learns two replicate masks per language and density and reports the per-layer overlap
/// between languages against the same-language baseline.
///
/// Replicate `r` of a language is learned from seed `config.seeds[r]` on half `r` of the
/// language's K probe batches (the first ⌊K/2⌋, then the rest). The same-language baseline
/// compares a language's two replicates: independent starts *and* different text. Languages
/// are compared replicate with replicate (averaged over the two), which — since the starting
/// noise depends on the language too — also compares independent starts on different text.
/// So the baseline carries the same noise as the cross-language comparison; with both
/// replicates on the same batches it would miss the sampling noise of the text (masks learned
/// from a few batches fit those batches) and overstate how language-specific the masks are.
///
/// # Errors
/// [`Error::Config`] for an invalid `config` (see [`MaskLearningConfig::validate`]) or fewer
/// than 2 probe batches per language (K), and the errors of [`learn_mask`].
pub fn learned_mask_overlap(
    model: &MlmModel,
    batches: &ProbeBatches,
    config: &MaskLearningConfig,
) -> Result<OverlapReport> {
    config.validate()?;
    let halves = batch_halves(batches, "learned mask overlap")?;
    let langs: Vec<Lang> = batches.langs().iter().cloned().collect();
    let params = config.scope.params(model.registry())?;
    let slots: Vec<LayerSlot> = params.iter().map(|&p| model.registry().infos()[p].slot).collect();
    let mut layers = Vec::new();
    for &keep in &config.keeps {
        let mut replicas: [LangMasks; 2] = [Vec::new(), Vec::new()];
        for l in 0..langs.len() {
            for ((replica, &seed), half) in replicas.iter_mut().zip(&config.seeds).zip(&halves) {
                let own = &batches.of(l)[half.clone()];
                let learned = learn_mask(model, own, keep, config.steps, config.lr, seed, config.scope)?;
                replica.push(learned.masks.into_iter().map(|m| m.mask).collect());
            }
        }
        layers.extend(layer_overlaps(&langs, &slots, keep, [&replicas[0], &replicas[1]])?);
    }
    Ok(OverlapReport { method: "learned_mask".into(), langs, layers })
}

/// Uniform noise in [0, 1) shaped like `param`, in its dtype and on its device.
fn initial_scores(param: &Var, mut rng: impl Rng) -> Result<Var> {
    let values: Vec<f64> = (0..param.elem_count()).map(|_| rng.random::<f64>()).collect();
    let t = Tensor::from_vec(values, param.shape(), param.device())?.to_dtype(param.dtype())?;
    Ok(Var::from_tensor(&t)?)
}

/// A tensor's values, flattened, as f32 on the host.
fn host_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
}

/// The top-k mask of one score tensor, as 0/1 values on the host.
fn hard_mask(scores: &Tensor, keep: f64) -> Result<Vec<f32>> {
    Ok(top_k_mask(&host_values(scores)?, keep).into_iter().map(|k| if k { 1.0 } else { 0.0 }).collect())
}

/// The top-k masks of every score tensor.
fn hard_masks(params: &[usize], scores: &[Var], keep: f64) -> Result<Vec<ParamMask>> {
    params
        .iter()
        .zip(scores)
        .map(|(&param, s)| Ok(ParamMask { param, mask: top_k_mask(&host_values(s.as_tensor())?, keep) }))
        .collect()
}

/// Parameter values with each masked tensor's dropped weights set to zero.
fn apply_masks(model: &MlmModel, masks: &[ParamMask]) -> Result<Vec<Tensor>> {
    let mut values = model.registry().detached();
    for m in masks {
        let w = values.get(m.param).ok_or_else(|| out_of_registry(m.param, model))?;
        if w.elem_count() != m.mask.len() {
            return Err(Error::Shape(format!(
                "mask of {} entries for parameter {} of {} weights",
                m.mask.len(),
                model.registry().infos()[m.param].name,
                w.elem_count()
            )));
        }
        let keep: Vec<f32> = m.mask.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        let keep = Tensor::from_vec(keep, w.shape(), w.device())?.to_dtype(w.dtype())?;
        values[m.param] = (w * keep)?;
    }
    Ok(values)
}

/// Mean loss over `batches` under hard `masks`, dropout off.
fn mean_loss(model: &MlmModel, masks: &[ParamMask], batches: &[MlmBatch]) -> Result<f64> {
    let values = apply_masks(model, masks)?;
    let mut total = 0.0;
    for batch in batches {
        total += model.loss_with(&values, batch, None)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    Ok(total / batches.len().max(1) as f64)
}

/// The one language of `batches`.
fn single_language(batches: &[MlmBatch]) -> Result<Lang> {
    let first = batches.first().ok_or_else(|| Error::Config("learning a mask needs at least one batch".into()))?;
    if let Some(other) = batches.iter().find(|b| b.lang != first.lang) {
        return Err(Error::Config(format!(
            "a mask is learned on one language, got batches of {} and {}",
            first.lang, other.lang
        )));
    }
    Ok(first.lang.clone())
}

/// Checks a score learning rate: finite and positive.
fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!("mask learning rate lr must be finite and positive, got {lr}")))
    }
}

/// The error for a parameter index the model does not have.
fn out_of_registry(p: usize, model: &MlmModel) -> Error {
    Error::Shape(format!("parameter index {p} is outside the registry of {} parameters", model.registry().len()))
}
