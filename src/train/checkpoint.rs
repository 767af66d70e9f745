//! Checkpoints: a directory with the weights, the optimiser state and the trainer state,
//! each file written atomically, `trainer.json` last (it marks a complete checkpoint).

use super::config::TrainConfig;
use super::data::MlmData;
use super::optim::{AdamW, Moments};
use super::trainer::Trainer;
use crate::error::{Error, Result};
use crate::io::{read_json, write_json_atomic};
use crate::model::{load_tensors, save_tensors, MlmModel};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// File of the weights (safetensors, registry names, config in the metadata).
pub const MODEL_FILE: &str = "model.safetensors";
/// File of the AdamW moments (`m.{name}`, `v.{name}`).
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of the trainer state; written last.
pub const TRAINER_FILE: &str = "trainer.json";

/// The JSON part of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// The training configuration.
    pub config: TrainConfig,
    /// Steps completed.
    pub step: usize,
    /// AdamW update count per parameter (registry name → count), for bias correction.
    pub adam_steps: HashMap<String, u64>,
    /// The same for the adapters' optimiser of method `meta` (moments under `meta_m.`/`meta_v.`).
    #[serde(default)]
    pub meta_adam_steps: HashMap<String, u64>,
    /// GradVac's moving-average cosine targets.
    #[serde(default)]
    pub surgery_state: Vec<f64>,
    /// The random state: every draw of step `t` is keyed by `(seed, t)`, so the seed and
    /// the next step are the whole state.
    pub rng: RngState,
}

/// The trainer's random state.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngState {
    /// The run's seed.
    pub seed: u64,
    /// The next step's stream index.
    pub next_step: usize,
}

impl Trainer {
    /// Writes a checkpoint into directory `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.model.save(&dir.join(MODEL_FILE))?;
        let mut moments: Vec<(String, Tensor)> = Vec::new();
        let adam_steps = self.moments_of(&self.optimizer, "", &mut moments)?;
        let meta_adam_steps = self.moments_of(&self.meta_optimizer, "meta_", &mut moments)?;
        save_tensors(&dir.join(OPTIMIZER_FILE), &moments, HashMap::new())?;
        let state = TrainerState {
            config: self.config.clone(),
            step: self.step,
            adam_steps,
            meta_adam_steps,
            surgery_state: self.surgery_state.clone(),
            rng: RngState { seed: self.config.seed, next_step: self.step },
        };
        write_json_atomic(&dir.join(TRAINER_FILE), &state)
    }

    /// Resumes from a checkpoint directory written by [`Trainer::save`], on `data` (the same
    /// data as the original run, for an exact continuation).
    pub fn resume(dir: &Path, data: MlmData, dtype: DType, device: &Device) -> Result<Self> {
        let state_path = dir.join(TRAINER_FILE);
        if !state_path.exists() {
            return Err(Error::MissingCheckpoint { path: state_path });
        }
        let state: TrainerState = read_json(&state_path)?;
        let model = MlmModel::load(&dir.join(MODEL_FILE), dtype, device)?;
        let (tensors, _) = load_tensors(&dir.join(OPTIMIZER_FILE), device)?;
        let file = dir.join(OPTIMIZER_FILE);
        let optimizer = restore_optimizer(&model, &state, &state.adam_steps, "", &tensors, dtype, &file)?;
        let meta_optimizer =
            restore_optimizer(&model, &state, &state.meta_adam_steps, "meta_", &tensors, dtype, &file)?;
        let mut trainer = Trainer::new(model, data, state.config)?;
        trainer.optimizer = optimizer;
        trainer.meta_optimizer = meta_optimizer;
        trainer.surgery_state = state.surgery_state;
        trainer.step = state.rng.next_step;
        Ok(trainer)
    }

    /// Appends `optimizer`'s moments under `{prefix}m.{name}` / `{prefix}v.{name}` and returns
    /// the update counts by name.
    fn moments_of(
        &self,
        optimizer: &AdamW,
        prefix: &str,
        out: &mut Vec<(String, Tensor)>,
    ) -> Result<HashMap<String, u64>> {
        let mut steps = HashMap::new();
        for (info, st) in self.model.registry().infos().iter().zip(optimizer.state()) {
            if let Some(st) = st {
                out.push((format!("{prefix}m.{}", info.name), st.m()?));
                out.push((format!("{prefix}v.{}", info.name), st.v()?));
                steps.insert(info.name.clone(), st.t);
            }
        }
        Ok(steps)
    }
}

/// Rebuilds an AdamW from the moments saved under `prefix` and their update counts.
fn restore_optimizer(
    model: &MlmModel,
    state: &TrainerState,
    steps: &HashMap<String, u64>,
    prefix: &str,
    tensors: &HashMap<String, Tensor>,
    dtype: DType,
    file: &Path,
) -> Result<AdamW> {
    let mut restored = Vec::with_capacity(model.registry().len());
    for info in model.registry().infos() {
        let moment = |kind: &str| -> Result<Tensor> {
            let key = format!("{prefix}{kind}.{}", info.name);
            let t = tensors
                .get(&key)
                .ok_or_else(|| Error::Config(format!("{}: optimiser state {key} is missing", file.display())))?;
            Ok(t.to_dtype(dtype)?)
        };
        restored.push(match steps.get(&info.name) {
            Some(&t) => Some(Moments::new(&moment("m")?, &moment("v")?, t)?),
            None => None,
        });
    }
    let mut optimizer = AdamW::new(state.config.adamw, model.registry().len());
    optimizer.set_state(restored)?;
    Ok(optimizer)
}
