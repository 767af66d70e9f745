//! Weight files: safetensors under the registry's stable names, the config in the metadata.

use super::config::ModelConfig;
use super::mlm::MlmModel;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The safetensors metadata key holding the model config as JSON.
pub const CONFIG_KEY: &str = "config";

/// Writes named tensors and string metadata to a safetensors file, atomically.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Result<()> {
    // safetensors wants contiguous CPU data; `View for Tensor` copies to the host as needed.
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
        .map_err(|e| Error::Config(format!("{}: cannot serialise tensors: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Reads every tensor of a safetensors file and its metadata; a missing file is
/// [`Error::MissingCheckpoint`].
pub fn load_tensors(path: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    if !path.exists() {
        return Err(Error::MissingCheckpoint { path: path.into() });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad =
        |e: &dyn std::fmt::Display| Error::Config(format!("{}: not a valid safetensors file: {e}", path.display()));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(&e))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| bad(&e))?;
    Ok((tensors, meta.metadata().clone().unwrap_or_default()))
}

impl MlmModel {
    /// Saves the weights under their registry names with the config in the metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors = self.registry().named_tensors();
        let config = serde_json::to_string(self.config()).map_err(|e| Error::Json { path: path.into(), source: e })?;
        save_tensors(path, &tensors, HashMap::from([(CONFIG_KEY.to_string(), config)]))
    }

    /// An independent copy of the model (new storage), e.g. to fine-tune one pretrained
    /// encoder several times.
    pub fn duplicate(&self) -> Result<Self> {
        let copy = MlmModel::new(self.config().clone(), 0, self.dtype(), self.device())?;
        let values: HashMap<String, Tensor> = self.registry().named_tensors().into_iter().collect();
        copy.registry().load_from(&values, "copy")?;
        Ok(copy)
    }

    /// Loads a model saved by [`MlmModel::save`], casting to `dtype` on `device`.
    pub fn load(path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let (tensors, meta) = load_tensors(path, device)?;
        let json = meta
            .get(CONFIG_KEY)
            .ok_or_else(|| Error::Config(format!("{}: no model config in the safetensors metadata", path.display())))?;
        let config: ModelConfig =
            serde_json::from_str(json).map_err(|e| Error::Json { path: path.into(), source: e })?;
        let model = MlmModel::new(config, 0, dtype, device)?;
        model.registry().load_from(&tensors, &path.display().to_string())?;
        Ok(model)
    }
}
