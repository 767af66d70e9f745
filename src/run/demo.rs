//! The built-in default job: synthetic languages, each trained alone and all together on the
//! same model, and the per-language interference table.

use super::config::{LanguageSource, LanguageText, RunConfig, TokenizerSource};
use super::pipeline::{complete_model_config, prepare};
use crate::data::{SyntheticSpec, WordOrder};
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::model::{MlmModel, ModelConfig};
use crate::progress::Progress;
use crate::tokenize::TokenizerStats;
use crate::train::{EvalReport, LangEval, Method, MlmData, TrainConfig, Trainer};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One language of the demo: monolingual vs joint held-out scores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterferenceRow {
    /// The language.
    pub lang: Lang,
    /// Training sentences of the language.
    pub train_sentences: usize,
    /// Share of the joint model's batches drawn from this language.
    pub sampling_prob: f64,
    /// Held-out scores of the model trained on this language alone.
    pub mono: LangEval,
    /// Held-out scores of the model trained on all languages.
    pub joint: LangEval,
    /// Interference on the loss: `joint.loss − mono.loss` (positive: sharing hurt).
    pub delta_loss: f64,
}

/// The demo's results (`results.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DemoResults {
    /// The run that was executed (languages, model, training).
    pub config: RunConfig,
    /// Tokenizer statistics on the training text.
    pub tokenizer: TokenizerStats,
    /// One row per language.
    pub rows: Vec<InterferenceRow>,
}

/// The demo's default run: three synthetic languages of one family — `aa` (base, SVO),
/// `bb` (the same words in verb-final order with adjectives after nouns: built to conflict)
/// and `cc` (half its words its own, a quarter of the data: low-resource) — on a small model.
pub fn demo_config(steps: usize, seed: u64) -> RunConfig {
    let lang = |code: &str, spec: SyntheticSpec| LanguageSource {
        code: Lang::new(code).expect("demo language codes are valid"),
        train: None,
        valid: None,
        synthetic: Some(spec),
    };
    let base = SyntheticSpec { family_seed: seed, sentences: 4000, ..SyntheticSpec::default() };
    RunConfig {
        languages: vec![
            lang("aa", SyntheticSpec { seed: 1, ..base.clone() }),
            lang(
                "bb",
                SyntheticSpec { seed: 2, word_order: WordOrder::Sov, adjective_after_noun: true, ..base.clone() },
            ),
            lang("cc", SyntheticSpec { seed: 3, shared_vocab: 0.5, sentences: 1000, ..base }),
        ],
        tokenizer: TokenizerSource::Train { vocab_size: 1000 },
        model: ModelConfig {
            vocab_size: 0,
            d_model: 64,
            layers: 2,
            heads: 4,
            d_ff: 256,
            max_len: 64,
            dropout: 0.1,
            lang_embeddings: true,
            adapter_bottleneck: 0,
            languages: Default::default(),
            ln_eps: 1e-12,
        },
        train: TrainConfig {
            method: Method::Joint,
            steps,
            batch_size: 16,
            seq_len: 64,
            lr: 1e-3,
            warmup_steps: steps / 10,
            alpha: 0.7,
            seed,
            eval_batches: 8,
            ..TrainConfig::default()
        },
        held_out: 200,
    }
}

/// Runs `config` once per language alone and once on all languages together (same model
/// shape, steps, batch size and seed: the joint model sees each language only in its sampled
/// share of every batch), and scores every model on the same held-out masks.
/// `progress(label)` gives the progress reporter of each training.
pub fn run_interference(
    config: &RunConfig,
    device: &Device,
    progress: &mut dyn FnMut(&str) -> Box<dyn Progress>,
) -> Result<DemoResults> {
    let text: Vec<LanguageText> = config.load_text()?;
    let prepared = prepare(config, &text, None)?;
    let (probs, joint) = train_and_score(config, prepared.data.clone(), device, progress("joint").as_mut())?;
    let mut rows = Vec::new();
    for (i, lang) in prepared.data.langs().iter().enumerate() {
        let alone = prepared.data.subset(std::slice::from_ref(lang))?;
        let (_, mono) = train_and_score(config, alone, device, progress(lang.as_str()).as_mut())?;
        let (Some(mono), Some(joint)) = (mono.get(lang).cloned(), joint.get(lang).cloned()) else {
            return Err(Error::Config(format!("no held-out score for {lang}")));
        };
        rows.push(InterferenceRow {
            lang: lang.clone(),
            train_sentences: prepared.data.train(i).len(),
            sampling_prob: probs[i],
            delta_loss: joint.loss - mono.loss,
            mono,
            joint,
        });
    }
    Ok(DemoResults { config: config.clone(), tokenizer: prepared.stats, rows })
}

/// Trains a fresh model of `config`'s shape on `data`; returns the language sampling
/// probabilities and the final held-out scores.
fn train_and_score(
    config: &RunConfig,
    data: MlmData,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<(Vec<f64>, EvalReport)> {
    let model_config = complete_model_config(&config.model, data.vocab_size(), data.langs())?;
    let model = MlmModel::new(model_config, config.train.seed, DType::F32, device)?;
    let mut trainer = Trainer::new(model, data, config.train.clone())?;
    let last = trainer.train(progress)?.pop().ok_or_else(|| Error::Config("training produced no evaluation".into()))?;
    Ok((trainer.language_probs().to_vec(), last))
}

impl fmt::Display for DemoResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<6} {:>9} {:>7} {:>10} {:>10} {:>9} {:>9} {:>9}",
            "lang", "sentences", "p(lang)", "mono loss", "joint loss", "Δ loss", "mono acc", "joint acc"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<6} {:>9} {:>7.3} {:>10.4} {:>10.4} {:>+9.4} {:>9.3} {:>9.3}",
                r.lang.as_str(),
                r.train_sentences,
                r.sampling_prob,
                r.mono.loss,
                r.joint.loss,
                r.delta_loss,
                r.mono.accuracy,
                r.joint.accuracy
            )?;
        }
        write!(f, "Δ loss = joint − monolingual held-out MLM loss (positive: the language lost by sharing)")
    }
}
