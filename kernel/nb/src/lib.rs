//! # interference_nb
//!
//! The notebooks' facade over the [`interference`] library: notebooks `:dep` this crate and
//! nothing else, then `use interference_nb::prelude::*;`.
//!
//! It is built as a `dylib` so that evcxr links one shared copy of the library, candle and
//! plotters into every cell. (Each evcxr cell is its own shared library; a statically linked
//! candle would be copied into each, with its own tensor-id counter and thread pool, and
//! backpropagation through tensors made in different cells would give wrong gradients.) No
//! logic lives here: everything is the library's.
//!
//! ```text
//! :dep interference_nb = { path = "../kernel/nb" }
//! use interference_nb::prelude::*;
//! ```

pub use candle_core;
pub use candle_nn;
pub use interference;
pub use plotters;
pub use serde_json;

/// Everything a notebook usually needs, in one import (the crates themselves included, so
/// `interference::grads::…` or `candle_core::…` paths work after it).
pub mod prelude {
    pub use candle_core;
    pub use candle_nn;
    pub use interference;
    pub use plotters;
    pub use serde_json;

    pub use candle_core::{DType, Device, Tensor, Var, D};
    pub use interference::batch::{MaskingConfig, MlmBatch};
    pub use interference::data::{generate_synthetic, Corpus, SyntheticSpec, WordOrder};
    pub use interference::grads::{mlm_gradients, BatchGradients};
    pub use interference::model::{LayerSlot, MlmModel, ModelConfig, ParamGroup};
    pub use interference::plot::*;
    pub use interference::probe::{
        fisher_overlap, learned_mask_overlap, ConflictSeries, GradientProbe, GroupKind, MaskLearningConfig, MaskScope,
        OverlapReport, ProbeBatchConfig, ProbeBatches, ProbeHook, SimilarityReport,
    };
    pub use interference::progress::{Lines, Progress, Silent};
    pub use interference::run::{
        demo_config, prepare, run_interference, DemoResults, LanguageSource, LanguageText, Prepared, RunConfig,
        TokenizerSource,
    };
    pub use interference::train::{
        EvalReport, LangEval, MetaConfig, MetaOrder, Method, StepHook, StepReport, TrainConfig, Trainer,
    };
    // Not `interference::Result`: evcxr names a kept variable's type as rust-analyzer prints
    // it, and a `std::result::Result<T, E>` printed as `Result<T, E>` would then resolve to
    // the one-parameter alias and fail to compile. Write `interference::Result<T>` in full.
    pub use interference::{Error, Lang, LangSet};
    pub use std::path::{Path, PathBuf};
}
