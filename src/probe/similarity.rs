//! Per-language gradient similarity: cosines between languages' gradients of the MLM loss
//! with respect to the shared parameters, for the whole model, each layer and each matrix.

use super::batches::ProbeBatches;
use crate::error::{Error, Result};
use crate::grads::{group_gram, mlm_gradients, param_grams};
use crate::lang::Lang;
use crate::model::{LayerSlot, MlmModel, ParamGroup};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// What a group of parameters is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "of")]
pub enum GroupKind {
    /// Every shared parameter.
    Model,
    /// The shared parameters of one part of the network.
    Layer(LayerSlot),
    /// One parameter tensor (by registry name).
    Matrix(String),
}

/// Similarity of the languages' gradients on one group of parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSimilarity {
    /// `model`, `embeddings`, `layer.{i}`, `output`, or a parameter name.
    pub name: String,
    /// What the group is.
    pub kind: GroupKind,
    /// `cosine[i][j]`: mean over probe batches of the cosine between languages i and j.
    pub cosine: Vec<Vec<f64>>,
    /// Standard deviation of that cosine over probe batches (0 with one batch).
    pub cosine_std: Vec<Vec<f64>>,
    /// Mean gradient norm of each language on the group.
    pub norm: Vec<f64>,
    /// Standard deviation of the norm over probe batches.
    pub norm_std: Vec<f64>,
}

/// One probe of a model: every group's similarity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilarityReport {
    /// The training step of the model probed.
    pub step: usize,
    /// The languages, in the order of the matrices' rows.
    pub langs: Vec<Lang>,
    /// Probe batches per language that were averaged.
    pub batches: usize,
    /// Whole model first, then each part, then each matrix.
    pub groups: Vec<GroupSimilarity>,
}

impl SimilarityReport {
    /// The group called `name`, if any.
    pub fn group(&self, name: &str) -> Option<&GroupSimilarity> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// A set of named parameter groups over the registry's shared parameters.
#[derive(Clone, Debug)]
struct Groups {
    /// `(name, kind, indices into the shared-parameter list)`.
    list: Vec<(String, GroupKind, Vec<usize>)>,
}

impl Groups {
    fn new(model: &MlmModel, shared: &[usize]) -> Self {
        let infos = model.registry().infos();
        let mut list = vec![("model".to_string(), GroupKind::Model, (0..shared.len()).collect())];
        for (slot, members) in model.registry().slots_of(shared) {
            list.push((slot_name(slot), GroupKind::Layer(slot), members));
        }
        for (s, &i) in shared.iter().enumerate() {
            list.push((infos[i].name.clone(), GroupKind::Matrix(infos[i].name.clone()), vec![s]));
        }
        Groups { list }
    }
}

/// `embeddings`, `layer.{i}` or `output`.
pub fn slot_name(slot: LayerSlot) -> String {
    match slot {
        LayerSlot::Embeddings => "embeddings".into(),
        LayerSlot::Layer(i) => format!("layer.{i}"),
        LayerSlot::Output => "output".into(),
    }
}

/// Probes a model with fixed per-language batches: each language's gradient (dropout off) of
/// the shared parameters, and the cosines between languages, computed on the model's device
/// as one Gram matrix `G·Gᵀ` per parameter tensor (groups sum those Grams).
#[derive(Clone, Debug)]
pub struct GradientProbe {
    batches: ProbeBatches,
    shared: Vec<usize>,
}

impl GradientProbe {
    /// A probe of `model`'s shared parameters on `batches`; every language must be the model's.
    pub fn new(model: &MlmModel, batches: ProbeBatches) -> Result<Self> {
        for lang in batches.langs().iter() {
            model.config().languages.index(lang)?;
        }
        if batches.langs().len() < 2 {
            return Err(Error::Config("gradient similarity needs at least two languages".into()));
        }
        let shared = model.registry().indices_in(&ParamGroup::Shared);
        Ok(GradientProbe { batches, shared })
    }

    /// The probe batches.
    pub fn batches(&self) -> &ProbeBatches {
        &self.batches
    }

    /// Probes `model` (which the trainer says is at `step`).
    pub fn run(&self, model: &MlmModel, step: usize) -> Result<SimilarityReport> {
        let langs = self.batches.langs().as_slice().to_vec();
        let groups = Groups::new(model, &self.shared);
        let k_count = self.batches.per_language();
        // per_batch[k][g] = the group's Gram matrix (L×L) for probe batch k.
        let mut per_batch: Vec<Vec<Vec<f64>>> = Vec::with_capacity(k_count);
        for k in 0..k_count {
            let grams = self.param_grams(model, k)?;
            let l = langs.len();
            per_batch.push(groups.list.iter().map(|(_, _, members)| group_gram(&grams, l, members)).collect());
        }
        let groups = groups
            .list
            .iter()
            .enumerate()
            .map(|(g, (name, kind, _))| summarise(name, kind, langs.len(), per_batch.iter().map(|b| &b[g][..])))
            .collect();
        Ok(SimilarityReport { step, langs, batches: k_count, groups })
    }

    /// Gram matrices of every shared parameter for probe batch `k`, `[param][i][j]`: one
    /// backward pass per language, then [`param_grams`].
    fn param_grams(&self, model: &MlmModel, k: usize) -> Result<Vec<f64>> {
        let per_lang = (0..self.batches.langs().len())
            .map(|l| mlm_gradients(model, &self.batches.of(l)[k]))
            .collect::<Result<Vec<_>>>()?;
        let sets: Vec<&[Tensor]> = per_lang.iter().map(|g| &g.grads[..]).collect();
        param_grams(&sets, &self.shared)
    }
}

/// Mean and standard deviation over probe batches of cosines and norms from Gram matrices.
fn summarise<'a>(name: &str, kind: &GroupKind, l: usize, grams: impl Iterator<Item = &'a [f64]>) -> GroupSimilarity {
    let mut cos_samples: Vec<Vec<f64>> = vec![Vec::new(); l * l];
    let mut norm_samples: Vec<Vec<f64>> = vec![Vec::new(); l];
    for gram in grams {
        for i in 0..l {
            norm_samples[i].push(gram[i * l + i].max(0.0).sqrt());
            for j in 0..l {
                let denom = (gram[i * l + i] * gram[j * l + j]).sqrt();
                cos_samples[i * l + j].push(if denom > 0.0 { gram[i * l + j] / denom } else { 0.0 });
            }
        }
    }
    let matrix = |f: fn(&[f64]) -> f64| (0..l).map(|i| (0..l).map(|j| f(&cos_samples[i * l + j])).collect()).collect();
    GroupSimilarity {
        name: name.to_string(),
        kind: kind.clone(),
        cosine: matrix(mean),
        cosine_std: matrix(std_dev),
        norm: norm_samples.iter().map(|v| mean(v)).collect(),
        norm_std: norm_samples.iter().map(|v| std_dev(v)).collect(),
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Sample standard deviation (0 for fewer than two samples).
fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}
