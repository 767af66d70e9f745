//! The JSON configuration of a training run (`interference train --config FILE.json`).

use crate::data::{generate_synthetic, read_text_corpus, Corpus, SyntheticSpec};
use crate::error::{Error, Result};
use crate::io::read_json;
use crate::lang::Lang;
use crate::model::ModelConfig;
use crate::train::{split_held_out, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where one language's text comes from: a file (with an optional held-out file) or a
/// synthetic language.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageSource {
    /// The language code.
    pub code: Lang,
    /// Training text, one sentence per line (relative paths are taken from the config's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    /// Held-out text; when absent, `held_out` sentences are split off the training text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<PathBuf>,
    /// A synthetic language instead of a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticSpec>,
}

/// Where the shared tokenizer comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum TokenizerSource {
    /// Train a BPE tokenizer of about this many ids on the training text of all languages.
    Train {
        /// Target vocabulary size, specials included.
        vocab_size: usize,
    },
    /// Load a `tokenizer.json`.
    Path(PathBuf),
}

impl Default for TokenizerSource {
    fn default() -> Self {
        TokenizerSource::Train { vocab_size: 4000 }
    }
}

/// A whole training run: data, tokenizer, model and training settings.
///
/// ```
/// let json = r#"{
///   "languages": [{"code": "aa", "synthetic": {"sentences": 300}},
///                 {"code": "bb", "synthetic": {"sentences": 300, "seed": 1, "word_order": "sov"}}],
///   "tokenizer": {"train": {"vocab_size": 500}},
///   "model": {"d_model": 32, "layers": 1, "heads": 2, "d_ff": 64, "max_len": 32},
///   "train": {"steps": 10, "batch_size": 4, "seq_len": 32}
/// }"#;
/// let config: interference::run::RunConfig = serde_json::from_str(json).unwrap();
/// assert_eq!(config.languages.len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The languages and their text.
    pub languages: Vec<LanguageSource>,
    /// The tokenizer.
    #[serde(default)]
    pub tokenizer: TokenizerSource,
    /// The model shape (`vocab_size` and `languages` are filled in by the run).
    pub model: ModelConfig,
    /// Training settings.
    #[serde(default)]
    pub train: TrainConfig,
    /// Sentences held out per language when no `valid` file is given.
    #[serde(default = "default_held_out")]
    pub held_out: usize,
}

fn default_held_out() -> usize {
    200
}

/// The text of one language, split for training and evaluation.
#[derive(Clone, Debug)]
pub struct LanguageText {
    /// Training sentences.
    pub train: Corpus,
    /// Held-out sentences.
    pub valid: Corpus,
}

impl RunConfig {
    /// Reads a config file; relative paths inside it are resolved against its folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut config: RunConfig = read_json(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for source in &mut config.languages {
            for p in [&mut source.train, &mut source.valid].into_iter().flatten() {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        if let TokenizerSource::Path(p) = &mut config.tokenizer {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Reads (or generates) every language's text and splits off held-out sentences.
    pub fn load_text(&self) -> Result<Vec<LanguageText>> {
        if self.languages.is_empty() {
            return Err(Error::Config("the run lists no languages".into()));
        }
        self.languages.iter().map(|s| self.load_language(s)).collect()
    }

    fn load_language(&self, source: &LanguageSource) -> Result<LanguageText> {
        let code = source.code.clone();
        let corpus = match (&source.train, &source.synthetic) {
            (Some(path), None) => read_text_corpus(path, code.clone())?,
            (None, Some(spec)) => generate_synthetic(spec, code.clone())?,
            _ => {
                return Err(Error::Config(format!(
                    "language {code}: give exactly one of \"train\" (a file) or \"synthetic\""
                )))
            }
        };
        let (train, valid) = match &source.valid {
            Some(path) => (corpus, read_text_corpus(path, code)?),
            None => split_held_out(&corpus, self.held_out, self.train.seed)?,
        };
        Ok(LanguageText { train, valid })
    }
}
