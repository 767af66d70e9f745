//! `interference probe`: gradient similarity (and, on request, language-specific parameters)
//! of a trained run on its languages' held-out text.

use super::config::RunConfig;
use super::pipeline::{prepare, CHECKPOINT_DIR, TOKENIZER_FILE};
use crate::error::Result;
use crate::io::read_json;
use crate::model::MlmModel;
use crate::probe::{
    fisher_overlap, learned_mask_overlap, GradientProbe, MaskLearningConfig, MaskScope, OverlapReport,
    ProbeBatchConfig, ProbeBatches, SimilarityReport,
};
use crate::tokenize::SharedTokenizer;
use crate::train::{TrainerState, MODEL_FILE, TRAINER_FILE};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which probes `interference probe` runs besides gradient similarity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeOptions {
    /// How the probe batches are drawn.
    pub batches: ProbeBatchConfig,
    /// Fisher-importance overlap at these keep shares (none: skipped).
    pub fisher_keeps: Option<Vec<f64>>,
    /// Learned-mask overlap with these settings (none: skipped).
    pub masks: Option<MaskLearningConfig>,
}

/// What `interference probe` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeResults {
    /// How the probe batches were drawn.
    pub batches: ProbeBatchConfig,
    /// Gradient cosines per group, with their spread over batches.
    pub similarity: SimilarityReport,
    /// Overlap of per-language Fisher-importance masks, if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fisher: Option<OverlapReport>,
    /// Overlap of per-language learned pruning masks, if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masks: Option<OverlapReport>,
}

/// Probes the model of run folder `run` on the held-out text of `config`'s languages.
pub fn probe_run(config: &RunConfig, run: &Path, device: &Device, options: &ProbeOptions) -> Result<ProbeResults> {
    let batches = &options.batches;
    let tokenizer = SharedTokenizer::load(&run.join(TOKENIZER_FILE))?;
    let checkpoint = run.join(CHECKPOINT_DIR);
    let model = MlmModel::load(&checkpoint.join(MODEL_FILE), DType::F32, device)?;
    let state: TrainerState = read_json(&checkpoint.join(TRAINER_FILE))?;
    let prepared = prepare(config, &config.load_text()?, Some(tokenizer))?;
    let probe_batches = ProbeBatches::new(&prepared.data, batches)?;
    let fisher = match &options.fisher_keeps {
        Some(keeps) => Some(fisher_overlap(&model, &probe_batches, keeps, MaskScope::Blocks)?),
        None => None,
    };
    let masks = match &options.masks {
        Some(settings) => Some(learned_mask_overlap(&model, &probe_batches, settings)?),
        None => None,
    };
    let probe = GradientProbe::new(&model, probe_batches)?;
    Ok(ProbeResults { batches: *batches, similarity: probe.run(&model, state.step)?, fisher, masks })
}
