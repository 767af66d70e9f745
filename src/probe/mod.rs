//! Probes of interference: per-language gradient similarity and its conflicts over training,
//! and language-specific parameters found by pruning (learned masks) or by importance (Fisher).

mod batches;
mod conflicts;
mod similarity;

pub use batches::{ProbeBatchConfig, ProbeBatches};
pub use conflicts::{ConflictSeries, GroupConflicts, PairConflict, ProbeHook};
pub use similarity::{slot_name, GradientProbe, GroupKind, GroupSimilarity, SimilarityReport};
