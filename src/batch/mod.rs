//! Batching for masked language modelling: packing, masking and sampling across languages.

mod mlm;
mod sampler;

pub use mlm::{MaskingConfig, MlmBatch, MlmBatchJson, MlmMasker};
pub use sampler::TemperatureSampler;
