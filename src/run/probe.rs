//! `interference probe`: gradient similarity (and, on request, language-specific parameters)
//! of a trained run on its languages' held-out text.

use super::config::RunConfig;
use super::pipeline::{load_run, LoadedRun};
use crate::error::Result;
use crate::probe::{
    fisher_overlap, learned_mask_overlap, GradientProbe, MaskLearningConfig, MaskScope, OverlapReport,
    ProbeBatchConfig, ProbeBatches, SimilarityReport,
};
use candle_core::Device;
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
    let LoadedRun { model, step, prepared } = load_run(config, run, device)?;
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
    Ok(ProbeResults { batches: *batches, similarity: probe.run(&model, step)?, fisher, masks })
}
