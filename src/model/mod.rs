//! The model: a post-LN transformer MLM with optional language embeddings and
//! language-specific adapters, its layers, parameter registry and weight files.

mod config;
pub mod layers;
mod mlm;
mod registry;
mod weights;

pub use config::ModelConfig;
pub use mlm::MlmModel;
pub use registry::{LayerSlot, ParamGroup, ParamInfo, ParamRegistry};
pub use weights::{load_tensors, save_tensors, CONFIG_KEY};
