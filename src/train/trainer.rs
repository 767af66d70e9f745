//! The trainer: one stepping API for every method, for notebooks and the CLI alike.

use super::config::{Method, TrainConfig};
use super::data::MlmData;
use super::eval::{evaluate, EvalOptions, EvalReport};
use super::optim::{clip_global_norm, learning_rate, AdamW};
use crate::batch::{MlmBatch, MlmMasker, TemperatureSampler};
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::model::MlmModel;
use crate::progress::Progress;
use crate::rng::{stream, Purpose};
use candle_core::Tensor;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One language's share of a training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LangLoss {
    /// The language.
    pub lang: Lang,
    /// Mean MLM loss over its masked tokens in this step.
    pub loss: f64,
    /// Sequences of this language in the step.
    pub rows: usize,
}

/// What one call to [`Trainer::step`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Steps completed after this one (1 after the first).
    pub step: usize,
    /// Mean MLM loss over all masked tokens of the step.
    pub loss: f64,
    /// Per-language losses, languages absent from the step left out.
    pub languages: Vec<LangLoss>,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// Something run after every training step, e.g. a probe of the model.
pub trait StepHook {
    /// Called after step `report.step` with the trainer in its new state.
    fn after_step(&mut self, trainer: &Trainer, report: &StepReport) -> Result<()>;
}

/// Trains an [`MlmModel`] on [`MlmData`] step by step.
///
/// Every random draw of step `t` (languages, sentences, masks, dropout) comes from streams
/// keyed by `(seed, t)`, so a run resumed from a checkpoint continues exactly as an
/// uninterrupted run would.
pub struct Trainer {
    pub(super) model: MlmModel,
    pub(super) data: MlmData,
    pub(super) config: TrainConfig,
    pub(super) optimizer: AdamW,
    pub(super) step: usize,
    masker: MlmMasker,
    sampler: TemperatureSampler,
    trainable: Vec<usize>,
    checkpoint_dir: Option<PathBuf>,
}

impl Trainer {
    /// A trainer at step 0. Every language of `data` must be one of the model's.
    pub fn new(model: MlmModel, data: MlmData, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        for lang in data.langs().iter() {
            model.config().languages.index(lang)?;
        }
        match (config.method, model.config().has_adapters()) {
            (Method::Adapters, false) => {
                return Err(Error::Config("method \"adapters\" needs a model with adapter_bottleneck > 0".into()))
            }
            (Method::Joint, true) => {
                return Err(Error::Config("method \"joint\" trains a model without adapters; use \"adapters\"".into()))
            }
            _ => {}
        }
        if config.seq_len > model.config().max_len {
            return Err(Error::Config(format!(
                "seq_len {} exceeds the model's max_len {}",
                config.seq_len,
                model.config().max_len
            )));
        }
        if data.vocab_size() != model.config().vocab_size {
            return Err(Error::Config(format!(
                "tokenizer has {} ids but the model's vocab_size is {}",
                data.vocab_size(),
                model.config().vocab_size
            )));
        }
        let masker = MlmMasker::new(config.masking, data.specials(), data.vocab_size())?;
        let counts: Vec<usize> = (0..data.langs().len()).map(|i| data.train(i).len()).collect();
        let sampler = TemperatureSampler::new(&counts, config.alpha)?;
        let trainable = (0..model.registry().len()).collect();
        let optimizer = AdamW::new(config.adamw, model.registry().len());
        Ok(Trainer { model, data, config, optimizer, step: 0, masker, sampler, trainable, checkpoint_dir: None })
    }

    /// The model being trained.
    pub fn model(&self) -> &MlmModel {
        &self.model
    }

    /// The data.
    pub fn data(&self) -> &MlmData {
        &self.data
    }

    /// The training configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Steps completed so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The probability of sampling each language (temperature sampling).
    pub fn language_probs(&self) -> &[f64] {
        self.sampler.probs()
    }

    /// The batches of step `step`: one per language drawn, rows allotted by temperature sampling.
    pub fn batches_at(&self, step: usize) -> Result<Vec<MlmBatch>> {
        let mut rng = stream(self.config.seed, Purpose::Batch, step as u64);
        let mut rows = vec![0usize; self.data.langs().len()];
        for _ in 0..self.config.batch_size {
            rows[self.sampler.sample(&mut rng)] += 1;
        }
        let mut batches = Vec::new();
        for (li, &n) in rows.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let sentences = self.data.train(li);
            let mut tokens = Vec::with_capacity(n * self.config.seq_len);
            for _ in 0..n {
                let start = rng.random_range(0..sentences.len());
                self.masker.pack_row(sentences, start, self.config.seq_len, true, &mut tokens);
            }
            let lang = self.data.langs().as_slice()[li].clone();
            batches.push(self.masker.mask(lang, tokens, self.config.seq_len, &mut rng)?);
        }
        Ok(batches)
    }

    /// Runs one optimiser step and returns the per-language losses.
    pub fn step(&mut self) -> Result<StepReport> {
        let batches = self.batches_at(self.step)?;
        let total_targets: usize = batches.iter().map(|b| b.targets.len()).sum();
        let mut dropout_rng = stream(self.config.seed, Purpose::Dropout, self.step as u64);
        let params = self.model.registry().tensors();
        let mut total: Option<Tensor> = None;
        let mut languages = Vec::with_capacity(batches.len());
        for batch in &batches {
            let loss = self.model.loss_with(&params, batch, Some(&mut dropout_rng))?;
            let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(Error::NonFinite { what: format!("loss for {}", batch.lang), step: self.step, value });
            }
            languages.push(LangLoss { lang: batch.lang.clone(), loss: value, rows: batch.rows });
            let weighted = (loss * (batch.targets.len() as f64 / total_targets as f64))?;
            total = Some(match total {
                Some(t) => (t + weighted)?,
                None => weighted,
            });
        }
        let total = total.ok_or_else(|| Error::Config("a step drew no batches".into()))?;
        let loss = total.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        let grads = total.backward()?;
        let vars = self.model.registry().vars();
        let mut step_grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        for &i in &self.trainable {
            step_grads[i] = grads.get(vars[i].as_tensor()).cloned();
        }
        drop(grads);
        let grad_norm = clip_global_norm(&mut step_grads, self.config.clip_norm)?;
        if !grad_norm.is_finite() {
            return Err(Error::NonFinite { what: "gradient norm".into(), step: self.step, value: grad_norm });
        }
        let lr = learning_rate(self.config.lr, self.step, self.config.warmup_steps, self.config.steps);
        let var_refs: Vec<&candle_core::Var> = vars.iter().collect();
        let decay: Vec<bool> =
            self.model.registry().infos().iter().zip(vars).map(|(info, v)| info.decays(v.rank())).collect();
        self.optimizer.step(&var_refs, &step_grads, &decay, lr)?;
        self.step += 1;
        Ok(StepReport { step: self.step, loss, languages, lr, grad_norm })
    }

    /// Makes [`Trainer::train`] save checkpoints into `dir` (every `checkpoint_every` steps
    /// and at the end).
    pub fn set_checkpoint_dir(&mut self, dir: impl Into<PathBuf>) {
        self.checkpoint_dir = Some(dir.into());
    }

    /// Runs steps until `config.steps` are done, evaluating every `eval_every` steps and at the
    /// end, checkpointing if a folder is set; reports each step to `progress`. Returns the
    /// evaluations.
    pub fn train(&mut self, progress: &mut dyn Progress) -> Result<Vec<EvalReport>> {
        self.train_with(progress, &mut [])
    }

    /// [`Trainer::train`] with `hooks` run after every step, in order.
    pub fn train_with(
        &mut self,
        progress: &mut dyn Progress,
        hooks: &mut [&mut dyn StepHook],
    ) -> Result<Vec<EvalReport>> {
        let mut evals = Vec::new();
        progress.start(self.step as u64, self.config.steps as u64);
        let due = |every: usize, step: usize| every > 0 && step % every == 0;
        while self.step < self.config.steps {
            let report = self.step()?;
            progress.step(&report);
            for hook in hooks.iter_mut() {
                hook.after_step(self, &report)?;
            }
            let last = self.step == self.config.steps;
            if due(self.config.eval_every, self.step) && !last {
                evals.push(self.evaluate()?);
            }
            if let Some(dir) = &self.checkpoint_dir {
                if due(self.config.checkpoint_every, self.step) || last {
                    self.save(dir)?;
                }
            }
        }
        progress.finish();
        evals.push(self.evaluate()?);
        Ok(evals)
    }

    /// Held-out loss, perplexity and accuracy of every language, with the training masking.
    pub fn evaluate(&self) -> Result<EvalReport> {
        evaluate(&self.model, &self.data, &EvalOptions::from(&self.config), self.step)
    }

    /// Rebuilds a trainer around restored parts (used by checkpoints).
    pub(super) fn restore(
        model: MlmModel,
        data: MlmData,
        config: TrainConfig,
        optimizer: AdamW,
        step: usize,
    ) -> Result<Self> {
        let mut trainer = Trainer::new(model, data, config)?;
        trainer.optimizer = optimizer;
        trainer.step = step;
        Ok(trainer)
    }
}
