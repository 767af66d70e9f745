//! Fine-tuning an encoder with a linear task head, and scoring it within a language and
//! zero-shot on others.

use super::examples::{task_batch, TaskExample, TaskSet};
use super::labels::{LabelSet, TaskKind};
use super::metrics::{accuracy, entity_scores};
use crate::error::{Error, Result};
use crate::grads::scalar;
use crate::lang::Lang;
use crate::model::layers::{cross_entropy, linear};
use crate::model::MlmModel;
use crate::rng::{stream, Purpose};
use crate::train::{clip_global_norm, learning_rate, AdamW, AdamWConfig};
use candle_core::{Tensor, Var, D};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Which language's embedding and adapters the encoder uses on a test language.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterChoice {
    /// The test language's own (the default: zero-shot with the target's adapters).
    #[default]
    Target,
    /// The language the head was fine-tuned on.
    Source,
}

/// Fine-tuning settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineTuneConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (warm-up then linear decay).
    pub lr: f64,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// Train the head only, keeping the encoder as pretrained.
    pub freeze_encoder: bool,
    /// Longest encoded example (at most the encoder's `max_len`).
    pub max_len: usize,
    /// Seed of the head's initialisation, the batches and dropout.
    pub seed: u64,
    /// Adapters used on a test language other than the training one.
    pub zero_shot_adapter: AdapterChoice,
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        FineTuneConfig {
            steps: 200,
            batch_size: 16,
            lr: 5e-4,
            warmup_steps: 20,
            freeze_encoder: false,
            max_len: 64,
            seed: 0,
            zero_shot_adapter: AdapterChoice::Target,
        }
    }
}

/// A fine-tuned encoder with its linear head (`heads.{task}.weight`, `heads.{task}.bias`).
pub struct TaskModel {
    encoder: MlmModel,
    weight: Var,
    bias: Var,
    kind: TaskKind,
    labels: LabelSet,
    source: Lang,
    config: FineTuneConfig,
}

/// A test score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    /// The headline metric's name (`accuracy` or `entity_f1`).
    pub metric: String,
    /// The headline metric.
    pub value: f64,
    /// Label accuracy over labelled positions.
    pub accuracy: f64,
    /// Examples scored.
    pub examples: usize,
}

/// Fine-tunes a copy of `encoder` with a fresh linear head on `train` (the encoder itself is
/// left untouched).
pub fn finetune(encoder: &MlmModel, train: &TaskSet, labels: &LabelSet, config: &FineTuneConfig) -> Result<TaskModel> {
    if config.batch_size == 0 || config.max_len > encoder.config().max_len {
        return Err(Error::Config(format!(
            "fine-tuning needs batch_size ≥ 1 and max_len ≤ the encoder's {}, got {config:?}",
            encoder.config().max_len
        )));
    }
    let encoder = encoder.duplicate()?;
    let (d, n) = (encoder.config().d_model, labels.len());
    let normal = Normal::new(0.0, 0.02).map_err(|e| Error::Config(e.to_string()))?;
    let mut init = stream(config.seed, Purpose::Init, 1);
    let w: Vec<f32> = (0..n * d).map(|_| normal.sample(&mut init) as f32).collect();
    let weight = Var::from_tensor(&Tensor::from_vec(w, (n, d), encoder.device())?.to_dtype(encoder.dtype())?)?;
    let bias = Var::from_tensor(&Tensor::zeros(n, encoder.dtype(), encoder.device())?)?;
    let model = TaskModel {
        encoder,
        weight,
        bias,
        kind: train.kind,
        labels: labels.clone(),
        source: train.lang.clone(),
        config: config.clone(),
    };
    let mut vars: Vec<Var> = vec![model.weight.clone(), model.bias.clone()];
    if !config.freeze_encoder {
        vars.extend(model.encoder.registry().vars().iter().cloned());
    }
    let decay: Vec<bool> = vars.iter().map(|v| v.rank() >= 2).collect();
    let mut optimizer = AdamW::new(AdamWConfig::default(), vars.len());
    let pad = 0;
    for step in 0..config.steps {
        let mut rng = stream(config.seed, Purpose::Batch, step as u64);
        let picked: Vec<&TaskExample> =
            (0..config.batch_size).map(|_| &train.examples[rng.random_range(0..train.examples.len())]).collect();
        let batch = task_batch(&picked, &train.lang, pad);
        let mut dropout = stream(config.seed, Purpose::Dropout, step as u64);
        let loss = cross_entropy(&model.logits(&batch, Some(&mut dropout))?, &targets(&batch, &model)?)?;
        let value = scalar(&loss)?;
        if !value.is_finite() {
            return Err(Error::NonFinite { what: format!("fine-tuning loss on {}", train.lang), step, value });
        }
        let store = loss.backward()?;
        let mut grads: Vec<Option<Tensor>> = vars.iter().map(|v| store.get(v.as_tensor()).cloned()).collect();
        drop(store);
        clip_global_norm(&mut grads, 1.0)?;
        let lr = learning_rate(config.lr, step, config.warmup_steps, config.steps);
        optimizer.step(&vars.iter().collect::<Vec<_>>(), &grads, &decay, lr)?;
    }
    Ok(model)
}

/// The label ids of a task batch as a tensor.
fn targets(batch: &crate::batch::MlmBatch, model: &TaskModel) -> Result<Tensor> {
    Ok(Tensor::from_slice(&batch.targets, batch.targets.len(), model.encoder.device())?)
}

impl TaskModel {
    /// Label logits `[positions, labels]` of a task batch.
    fn logits(&self, batch: &crate::batch::MlmBatch, dropout: Option<&mut rand_chacha::ChaCha8Rng>) -> Result<Tensor> {
        let params = if self.config.freeze_encoder {
            self.encoder.registry().detached()
        } else {
            self.encoder.registry().tensors()
        };
        let hidden = self.encoder.hidden_with(&params, batch, dropout)?;
        let positions = Tensor::from_slice(&batch.positions, batch.positions.len(), self.encoder.device())?;
        linear(&hidden.index_select(&positions, 0)?, self.weight.as_tensor(), self.bias.as_tensor())
    }

    /// The language the head was trained on.
    pub fn source(&self) -> &Lang {
        &self.source
    }

    /// Scores `test` (dropout off). On a language other than the training one, the encoder
    /// reads it as the test language or the source language, per `zero_shot_adapter`.
    pub fn evaluate(&self, test: &TaskSet) -> Result<TaskScore> {
        if test.kind != self.kind {
            return Err(Error::Config(format!("a {:?} head cannot score {:?} data", self.kind, test.kind)));
        }
        let as_lang = match self.config.zero_shot_adapter {
            AdapterChoice::Target => &test.lang,
            AdapterChoice::Source => &self.source,
        };
        let (mut gold, mut predicted): (Vec<Vec<u32>>, Vec<Vec<u32>>) = (Vec::new(), Vec::new());
        for chunk in test.examples.chunks(self.config.batch_size.max(1)) {
            let refs: Vec<&TaskExample> = chunk.iter().collect();
            let batch = task_batch(&refs, as_lang, 0);
            let best = self.logits(&batch, None)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let mut at = 0;
            for e in chunk {
                gold.push(e.labels.clone());
                predicted.push(best[at..at + e.labels.len()].to_vec());
                at += e.labels.len();
            }
        }
        let flat = |v: &[Vec<u32>]| v.iter().flatten().copied().collect::<Vec<_>>();
        let acc = accuracy(&flat(&gold), &flat(&predicted));
        let value = match self.kind {
            TaskKind::Ner => {
                let names = |v: &[Vec<u32>]| -> Vec<Vec<&str>> {
                    v.iter().map(|s| s.iter().map(|&id| self.labels.name(id)).collect()).collect()
                };
                entity_scores(&names(&gold), &names(&predicted)).f1
            }
            TaskKind::Pos | TaskKind::Nli => acc,
        };
        Ok(TaskScore { metric: self.kind.metric().into(), value, accuracy: acc, examples: test.examples.len() })
    }
}
