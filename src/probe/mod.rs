//! Probes of interference: per-language gradient similarity and its conflicts over training,
//! and language-specific parameters found by pruning (learned masks) or by importance (Fisher).

mod batches;
mod conflicts;
mod fisher;
mod masks;
mod overlap;
mod similarity;

pub use batches::{ProbeBatchConfig, ProbeBatches};
pub use conflicts::{ConflictSeries, GroupConflicts, PairConflict, ProbeHook};
pub use fisher::{fisher_importance, fisher_overlap};
pub use masks::{
    learn_mask, learned_mask_overlap, straight_through_gradients, LearnedMask, MaskLearningConfig, ParamMask,
    ScoreGradients,
};
pub use overlap::{
    jaccard, keep_count, random_jaccard, top_k_mask, LayerOverlap, MaskScope, OverlapReport, PairOverlap,
};
pub use similarity::{slot_name, GradientProbe, GroupKind, GroupSimilarity, SimilarityReport};
