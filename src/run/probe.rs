//! `interference probe`: gradient similarity (and, on request, language-specific parameters)
//! of a trained run on its languages' held-out text.

use super::config::RunConfig;
use super::pipeline::{prepare, CHECKPOINT_DIR, TOKENIZER_FILE};
use crate::error::Result;
use crate::io::read_json;
use crate::model::MlmModel;
use crate::probe::{GradientProbe, ProbeBatchConfig, ProbeBatches, SimilarityReport};
use crate::tokenize::SharedTokenizer;
use crate::train::{TrainerState, MODEL_FILE, TRAINER_FILE};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What `interference probe` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeResults {
    /// How the probe batches were drawn.
    pub batches: ProbeBatchConfig,
    /// Gradient cosines per group, with their spread over batches.
    pub similarity: SimilarityReport,
}

/// Probes the model of run folder `run` on the held-out text of `config`'s languages.
pub fn probe_run(config: &RunConfig, run: &Path, device: &Device, batches: &ProbeBatchConfig) -> Result<ProbeResults> {
    let tokenizer = SharedTokenizer::load(&run.join(TOKENIZER_FILE))?;
    let checkpoint = run.join(CHECKPOINT_DIR);
    let model = MlmModel::load(&checkpoint.join(MODEL_FILE), DType::F32, device)?;
    let state: TrainerState = read_json(&checkpoint.join(TRAINER_FILE))?;
    let prepared = prepare(config, &config.load_text()?, Some(tokenizer))?;
    let probe = GradientProbe::new(&model, ProbeBatches::new(&prepared.data, batches)?)?;
    Ok(ProbeResults { batches: *batches, similarity: probe.run(&model, state.step)? })
}
