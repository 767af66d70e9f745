//! Fisher importance masks: the cheap variant of learned masks.
//!
//! A weight's importance for a language is its empirical Fisher information, the mean over
//! that language's probe batches of the squared gradient of the MLM loss (dropout off). A
//! language's mask at density `keep` keeps the most important weights of each parameter
//! tensor (top-k per tensor, as the learned masks do, so every tensor keeps the same share);
//! overlaps are measured per layer over the concatenation of its tensors' masks.
//!
//! The chance baseline splits each language's K batches into two disjoint halves and compares
//! the masks of the halves. So that every comparison is between masks estimated from equally
//! many batches, languages are compared half with half (first half against first half, second
//! against second, averaged) rather than with masks from all K batches.

use super::overlap::{batch_halves, check_keeps, layer_overlaps, top_k_mask, LangMasks, MaskScope, OverlapReport};
use crate::batch::MlmBatch;
use crate::error::{Error, Result};
use crate::grads::mlm_gradients;
use crate::lang::Lang;
use crate::model::{LayerSlot, MlmModel};
use crate::probe::ProbeBatches;
use candle_core::{DType, Tensor};

/// Empirical Fisher importance of the parameters `params` (registry indices): for each, the
/// mean over `batches` of the squared gradient of the batch loss, flattened, as f32.
///
/// # Errors
/// [`Error::Config`] for no batches; [`Error::Shape`] for an index outside the registry;
/// errors of the forward and backward passes.
pub fn fisher_importance(model: &MlmModel, batches: &[MlmBatch], params: &[usize]) -> Result<Vec<Vec<f32>>> {
    if batches.is_empty() {
        return Err(Error::Config("Fisher importance needs at least one batch".into()));
    }
    let n = model.registry().len();
    if let Some(p) = params.iter().find(|&&p| p >= n) {
        return Err(Error::Shape(format!("parameter index {p} is outside the registry of {n} parameters")));
    }
    let mut sums: Vec<Option<Tensor>> = vec![None; params.len()];
    for batch in batches {
        let g = mlm_gradients(model, batch)?;
        for (sum, &p) in sums.iter_mut().zip(params) {
            let sq = g.grads[p].to_dtype(DType::F32)?.sqr()?;
            *sum = Some(match sum.take() {
                Some(s) => (s + sq)?,
                None => sq,
            });
        }
    }
    let scale = 1.0 / batches.len() as f64;
    sums.into_iter().flatten().map(|s| Ok((s * scale)?.flatten_all()?.to_vec1::<f32>()?)).collect()
}

/// Fisher masks of every language at each density in `keeps`, and their per-layer overlap
/// against the same-language baseline of two disjoint halves of the language's batches.
///
/// # Errors
/// [`Error::Config`] for fewer than 2 batches per language (K), empty `keeps` or a keep
/// outside (0, 1], or a scope that selects nothing; errors of [`fisher_importance`].
pub fn fisher_overlap(
    model: &MlmModel,
    batches: &ProbeBatches,
    keeps: &[f64],
    scope: MaskScope,
) -> Result<OverlapReport> {
    check_keeps(keeps)?;
    let halves = batch_halves(batches, "Fisher overlap")?;
    let langs: Vec<Lang> = batches.langs().iter().cloned().collect();
    let params = scope.params(model.registry())?;
    let slots: Vec<LayerSlot> = params.iter().map(|&p| model.registry().infos()[p].slot).collect();
    // importance[r][l][j]: half r, language l, masked parameter j.
    let importance = halves
        .iter()
        .map(|range| {
            (0..langs.len())
                .map(|l| fisher_importance(model, &batches.of(l)[range.clone()], &params))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let mut layers = Vec::new();
    for &keep in keeps {
        let masks: Vec<LangMasks> = importance
            .iter()
            .map(|half| half.iter().map(|lang| lang.iter().map(|imp| top_k_mask(imp, keep)).collect()).collect())
            .collect();
        layers.extend(layer_overlaps(&langs, &slots, keep, [&masks[0], &masks[1]])?);
    }
    Ok(OverlapReport { method: "fisher".into(), langs, layers })
}
