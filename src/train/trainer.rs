//! The trainer: one stepping API for every method, for notebooks and the CLI alike.

use super::config::{MetaOrder, Method, TrainConfig};
use super::data::MlmData;
use super::eval::{evaluate, EvalOptions, EvalReport};
use super::optim::{clip_scale, global_norm, learning_rate, AdamW};
use crate::batch::{MlmBatch, MlmMasker, TemperatureSampler};
use crate::error::{Error, Result};
use crate::grads::scalar;
use crate::lang::Lang;
use crate::model::MlmModel;
use crate::progress::Progress;
use crate::rng::{stream, Purpose};
use candle_core::{Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
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
    /// The meta loss (mean held-apart MLM loss after the look-ahead), for method `meta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_loss: Option<f64>,
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
    pub(super) masker: MlmMasker,
    pub(super) sampler: TemperatureSampler,
    /// The optimiser of the adapters in the meta step (method `meta` only).
    pub(super) meta_optimizer: AdamW,
    /// GradVac's moving averages of cosine targets (method `gradvac` only).
    pub(super) surgery_state: Vec<f64>,
    checkpoint_dir: Option<PathBuf>,
}

/// Clips `grads` to `clip` global norm and applies one AdamW update at `lr`; returns the norm
/// before clipping, or an error naming the step if it is not finite.
pub(super) fn update(
    model: &MlmModel,
    optimizer: &mut AdamW,
    grads: Vec<Option<Tensor>>,
    clip: f64,
    lr: f64,
    step: usize,
) -> Result<f64> {
    let grad_norm = global_norm(&grads)?;
    if !grad_norm.is_finite() {
        return Err(Error::NonFinite { what: "gradient norm".into(), step, value: grad_norm });
    }
    let vars = model.registry().vars();
    let var_refs: Vec<&Var> = vars.iter().collect();
    let decay: Vec<bool> = model.registry().infos().iter().zip(vars).map(|(info, v)| info.decays(v.rank())).collect();
    optimizer.step_scaled(&var_refs, &grads, &decay, lr, clip_scale(grad_norm, clip))?;
    Ok(grad_norm)
}

impl Trainer {
    /// A trainer at step 0. Every language of `data` must be one of the model's.
    pub fn new(mut model: MlmModel, data: MlmData, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        model.set_kernels(config.kernels);
        model.set_precision(config.precision);
        for lang in data.langs().iter() {
            model.config().languages.index(lang)?;
        }
        match (config.method, model.config().has_adapters()) {
            (Method::Adapters | Method::Meta, false) => {
                return Err(Error::Config(format!(
                    "method {:?} needs a model with adapter_bottleneck > 0",
                    config.method.name()
                )))
            }
            (Method::Joint, true) => {
                return Err(Error::Config("method \"joint\" trains a model without adapters; use \"adapters\"".into()))
            }
            _ => {}
        }
        let data = if config.method == Method::Meta {
            if config.meta.order == MetaOrder::Exact {
                // Takes effect for threads that have not yet run a backward pass; the meta step
                // checks and says so otherwise.
                crate::grads::enable_second_order();
            }
            data.split_meta(config.meta.meta_sentences, config.seed)?
        } else {
            data
        };
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
        let optimizer = AdamW::new(config.adamw, model.registry().len());
        let meta_optimizer = AdamW::new(config.adamw, model.registry().len());
        Ok(Trainer {
            model,
            data,
            config,
            optimizer,
            step: 0,
            masker,
            sampler,
            meta_optimizer,
            surgery_state: Vec::new(),
            checkpoint_dir: None,
        })
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
            if n > 0 {
                batches.push(self.lang_batch(li, n, self.data.train(li), &mut rng)?);
            }
        }
        Ok(batches)
    }

    /// A masked batch of `rows` sequences of language `li`, packed from `sentences` at random
    /// starting sentences.
    pub(super) fn lang_batch(
        &self,
        li: usize,
        rows: usize,
        sentences: &[Vec<u32>],
        rng: &mut ChaCha8Rng,
    ) -> Result<MlmBatch> {
        let mut tokens = Vec::with_capacity(rows * self.config.seq_len);
        for _ in 0..rows {
            let start = rng.random_range(0..sentences.len());
            self.masker.pack_row(sentences, start, self.config.seq_len, true, &mut tokens);
        }
        let lang = self.data.langs().as_slice()[li].clone();
        self.masker.mask(lang, tokens, self.config.seq_len, rng)
    }

    /// Runs one optimiser step of the configured method and returns the per-language losses.
    ///
    /// The step runs on a thread of rayon's pool, so that the kernels' parallel loops and
    /// matrix products started from it share work with the pool's other threads instead of
    /// waking them and putting the calling thread to sleep each time.
    pub fn step(&mut self) -> Result<StepReport> {
        rayon::scope(|_| self.step_here())
    }

    /// [`Trainer::step`] on the calling thread.
    fn step_here(&mut self) -> Result<StepReport> {
        let report = match self.config.method {
            Method::Joint | Method::Adapters => self.joint_step()?,
            Method::Pcgrad | Method::Gradvac => self.surgery_step()?,
            Method::Meta => self.meta_step()?,
        };
        self.step += 1;
        Ok(report)
    }

    /// Joint training: one loss over the step's batches (weighted by their masked tokens),
    /// one backward pass, one AdamW update of every parameter.
    fn joint_step(&mut self) -> Result<StepReport> {
        let batches = self.batches_at(self.step)?;
        let total_targets: usize = batches.iter().map(|b| b.targets.len()).sum();
        let mut dropout_rng = stream(self.config.seed, Purpose::Dropout, self.step as u64);
        let params = self.model.registry().tensors();
        let (losses, step_grads) = self.model.joint_loss_and_grads(&params, &batches, Some(&mut dropout_rng))?;
        let (mut loss, mut languages) = (0.0, Vec::with_capacity(batches.len()));
        for (batch, batch_loss) in batches.iter().zip(&losses) {
            let language = self.checked(batch_loss, batch)?;
            loss += language.loss * batch.targets.len() as f64 / total_targets as f64;
            languages.push(language);
        }
        if languages.is_empty() {
            return Err(Error::Config("a step drew no batches".into()));
        }
        let lr = self.lr();
        let grad_norm = update(&self.model, &mut self.optimizer, step_grads, self.config.clip_norm, lr, self.step)?;
        Ok(StepReport { step: self.step + 1, loss, languages, lr, grad_norm, meta_loss: None })
    }

    /// The language loss of `batch` as a number, or an error if it is not finite.
    pub(super) fn checked(&self, loss: &Tensor, batch: &MlmBatch) -> Result<LangLoss> {
        let value = scalar(loss)?;
        if !value.is_finite() {
            return Err(Error::NonFinite { what: format!("loss for {}", batch.lang), step: self.step, value });
        }
        Ok(LangLoss { lang: batch.lang.clone(), loss: value, rows: batch.rows })
    }

    /// The learning rate of the current step.
    pub(super) fn lr(&self) -> f64 {
        learning_rate(self.config.lr, self.step, self.config.warmup_steps, self.config.steps)
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
}
