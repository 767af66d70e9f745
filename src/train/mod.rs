//! Training: one trainer with a stepping API, AdamW, per-language evaluation and checkpoints.

mod checkpoint;
mod config;
mod data;
mod eval;
mod meta;
mod optim;
mod surgery;
mod trainer;

pub use checkpoint::{RngState, TrainerState, MODEL_FILE, OPTIMIZER_FILE, TRAINER_FILE};
pub use config::{Granularity, MetaConfig, MetaOrder, Method, SurgeryConfig, TrainConfig};
pub use data::{split_held_out, MlmData};
pub use eval::{evaluate, EvalOptions, EvalReport, LangEval, EVAL_SEED};
pub use meta::{meta_gradient, MetaGradient};
pub use optim::{clip_global_norm, clip_scale, global_norm, learning_rate, AdamW, AdamWConfig, Moments};
pub use surgery::{gradvac, pcgrad};
pub use trainer::{LangLoss, StepHook, StepReport, Trainer};
