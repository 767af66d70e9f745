//! A training run from a [`RunConfig`]: text → tokenizer → data → model → trainer → results,
//! resumable from its output folder.

use super::config::{LanguageText, RunConfig, TokenizerSource};
use crate::data::Corpus;
use crate::error::{Error, Result};
use crate::io::write_json_atomic;
use crate::lang::LangSet;
use crate::model::{MlmModel, ModelConfig};
use crate::progress::Progress;
use crate::tokenize::{tokenizer_stats, SharedTokenizer, TokenizerStats};
use crate::train::{EvalReport, MlmData, Trainer, TRAINER_FILE};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the tokenizer in a run folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Sub-folder of the checkpoint in a run folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// File name of the results in a run folder.
pub const RESULTS_FILE: &str = "results.json";
/// File name of the run's own config in a run folder (for `eval` and resuming).
pub const RUN_CONFIG_FILE: &str = "run.json";

/// Everything a run needs before training: tokenizer, tokenised data and model shape.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The shared tokenizer.
    pub tokenizer: SharedTokenizer,
    /// Tokenised training and held-out data.
    pub data: MlmData,
    /// The model config with `vocab_size` and `languages` filled in.
    pub model: ModelConfig,
    /// Tokenizer statistics on the training text.
    pub stats: TokenizerStats,
}

/// What `interference train` writes to `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResults {
    /// The configuration of the run.
    pub config: RunConfig,
    /// Tokenizer statistics on the training text.
    pub tokenizer: TokenizerStats,
    /// Evaluations during and after training; the last is the final one.
    pub evals: Vec<EvalReport>,
}

/// Builds the tokenizer (trained, or loaded from `tokenizer` if given), tokenises the text and
/// completes the model config.
pub fn prepare(config: &RunConfig, text: &[LanguageText], tokenizer: Option<SharedTokenizer>) -> Result<Prepared> {
    let train: Vec<Corpus> = text.iter().map(|t| t.train.clone()).collect();
    let valid: Vec<Corpus> = text.iter().map(|t| t.valid.clone()).collect();
    let tokenizer = match (tokenizer, &config.tokenizer) {
        (Some(t), _) => t,
        (None, TokenizerSource::Path(path)) => SharedTokenizer::load(path)?,
        (None, TokenizerSource::Train { vocab_size }) => SharedTokenizer::train(&train, *vocab_size)?,
    };
    let data = MlmData::encode(&tokenizer, &train, &valid)?;
    let stats = tokenizer_stats(&tokenizer, &train)?;
    let model = complete_model_config(&config.model, tokenizer.vocab_size(), data.langs())?;
    Ok(Prepared { tokenizer, data, model, stats })
}

/// Fills `vocab_size` and `languages` of a model config from the tokenizer and the data;
/// values given in the config must agree.
pub fn complete_model_config(model: &ModelConfig, vocab_size: usize, langs: &LangSet) -> Result<ModelConfig> {
    let mut model = model.clone();
    if model.vocab_size != 0 && model.vocab_size != vocab_size {
        return Err(Error::Config(format!(
            "model vocab_size {} differs from the tokenizer's {vocab_size}",
            model.vocab_size
        )));
    }
    if !model.languages.is_empty() && &model.languages != langs {
        return Err(Error::Config(format!("model languages [{}] differ from the data's [{langs}]", model.languages)));
    }
    model.vocab_size = vocab_size;
    model.languages = langs.clone();
    model.validate()?;
    Ok(model)
}

/// Runs (or resumes) the training of `config` in folder `out`: writes `tokenizer.json`,
/// `checkpoint/` and `results.json`. A folder holding a finished or partial run resumes it.
pub fn train_run(config: &RunConfig, out: &Path, device: &Device, progress: &mut dyn Progress) -> Result<RunResults> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_json_atomic(&out.join(RUN_CONFIG_FILE), config)?;
    let text = config.load_text()?;
    let checkpoint = out.join(CHECKPOINT_DIR);
    let tokenizer_path = out.join(TOKENIZER_FILE);
    let resuming = checkpoint.join(TRAINER_FILE).exists();
    let saved = if resuming { Some(SharedTokenizer::load(&tokenizer_path)?) } else { None };
    let prepared = prepare(config, &text, saved)?;
    prepared.tokenizer.save(&tokenizer_path)?;
    let mut trainer = if resuming {
        Trainer::resume(&checkpoint, prepared.data, DType::F32, device)?
    } else {
        let model = MlmModel::new(prepared.model, config.train.seed, DType::F32, device)?;
        Trainer::new(model, prepared.data, config.train.clone())?
    };
    trainer.set_checkpoint_dir(&checkpoint);
    let evals = trainer.train(progress)?;
    let results = RunResults { config: config.clone(), tokenizer: prepared.stats, evals };
    write_json_atomic(&out.join(RESULTS_FILE), &results)?;
    Ok(results)
}

/// A trained run read back from its folder: the model, the step it reached, and `config`'s
/// text tokenised with the run's tokenizer (every language must be one the model knows).
pub struct LoadedRun {
    /// The trained model.
    pub model: MlmModel,
    /// Steps the run had completed.
    pub step: usize,
    /// Tokenizer, data and model config of `config`'s languages.
    pub prepared: Prepared,
}

/// Loads run folder `run` (tokenizer, checkpoint) for the languages and text of `config`.
pub fn load_run(config: &RunConfig, run: &Path, device: &Device) -> Result<LoadedRun> {
    let tokenizer = SharedTokenizer::load(&run.join(TOKENIZER_FILE))?;
    let checkpoint = run.join(CHECKPOINT_DIR);
    let mut model = MlmModel::load(&checkpoint.join(crate::train::MODEL_FILE), DType::F32, device)?;
    model.set_kernels(config.train.kernels);
    model.set_precision(config.train.precision);
    let state: crate::train::TrainerState = crate::io::read_json(&checkpoint.join(TRAINER_FILE))?;
    let prepared = prepare(config, &config.load_text()?, Some(tokenizer))?;
    for lang in prepared.data.langs().iter() {
        model.config().languages.index(lang)?;
    }
    Ok(LoadedRun { model, step: state.step, prepared })
}

/// Scores the model saved in run folder `run` on the held-out text of `config`'s languages
/// (each must be one the model knows), with the run's tokenizer and evaluation settings.
pub fn eval_run(config: &RunConfig, run: &Path, device: &Device) -> Result<EvalReport> {
    let loaded = load_run(config, run, device)?;
    let options = crate::train::EvalOptions::from(&config.train);
    crate::train::evaluate(&loaded.model, &loaded.prepared.data, &options, loaded.step)
}
