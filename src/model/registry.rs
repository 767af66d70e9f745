//! The parameter registry: every trainable tensor with its stable name, layer and group.

use crate::error::{Error, Result};
use crate::lang::Lang;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Which part of the network a parameter belongs to, for per-layer probes and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerSlot {
    /// Token, position and language embeddings and the embedding LayerNorm.
    Embeddings,
    /// Transformer block `i` (0-based), its adapters included.
    Layer(usize),
    /// The output projection's own bias (its weight is tied to the token embedding).
    Output,
}

/// Whether a parameter is shared by all languages or belongs to one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamGroup {
    /// Used by every language.
    Shared,
    /// Used only by this language (its adapters).
    Specific(Lang),
}

/// What the registry knows about one parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// Stable name, e.g. `layers.0.attn.q.weight` (PyTorch layout, `weight` is `[out, in]`).
    pub name: String,
    /// The part of the network.
    pub slot: LayerSlot,
    /// Shared or language-specific.
    pub group: ParamGroup,
}

impl ParamInfo {
    /// Whether AdamW's weight decay applies (matrices yes; biases and norms no).
    pub fn decays(&self, shape_rank: usize) -> bool {
        shape_rank >= 2
    }
}

/// All parameters of a model, in a fixed order; a parameter's index is its id everywhere
/// (optimiser state, gradients, probes, checkpoints).
#[derive(Clone, Debug, Default)]
pub struct ParamRegistry {
    vars: Vec<Var>,
    infos: Vec<ParamInfo>,
    by_name: HashMap<String, usize>,
}

impl ParamRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter and returns its index; a repeated name is an error.
    pub fn push(&mut self, info: ParamInfo, value: Tensor) -> Result<usize> {
        if self.by_name.contains_key(&info.name) {
            return Err(Error::Config(format!("parameter {} registered twice", info.name)));
        }
        let idx = self.vars.len();
        self.by_name.insert(info.name.clone(), idx);
        self.vars.push(Var::from_tensor(&value)?);
        self.infos.push(info);
        Ok(idx)
    }

    /// Number of parameters tensors.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The index of the parameter called `name`.
    pub fn index(&self, name: &str) -> Result<usize> {
        self.by_name.get(name).copied().ok_or_else(|| Error::Config(format!("no parameter named {name:?}")))
    }

    /// The variables, in registry order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The metadata, in registry order.
    pub fn infos(&self) -> &[ParamInfo] {
        &self.infos
    }

    /// The current values as tensors that track gradients (for training).
    pub fn tensors(&self) -> Vec<Tensor> {
        self.vars.iter().map(|v| v.as_tensor().clone()).collect()
    }

    /// `(name, current value)` of every parameter, in registry order.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.infos.iter().zip(&self.vars).map(|(info, var)| (info.name.clone(), var.as_tensor().clone())).collect()
    }

    /// The current values detached from the graph (for evaluation: no graph is built).
    pub fn detached(&self) -> Vec<Tensor> {
        self.vars.iter().map(|v| v.as_tensor().detach()).collect()
    }

    /// Indices of the parameters in `group`, compared exactly (never by name substring).
    pub fn indices_in(&self, group: &ParamGroup) -> Vec<usize> {
        (0..self.infos.len()).filter(|&i| &self.infos[i].group == group).collect()
    }

    /// The parts of the network that the parameters `indices` belong to, in order, each with
    /// the positions (into `indices`) of its members.
    pub fn slots_of(&self, indices: &[usize]) -> Vec<(LayerSlot, Vec<usize>)> {
        let mut slots: Vec<LayerSlot> = indices.iter().map(|&i| self.infos[i].slot).collect();
        slots.sort();
        slots.dedup();
        slots
            .into_iter()
            .map(|slot| (slot, (0..indices.len()).filter(|&k| self.infos[indices[k]].slot == slot).collect()))
            .collect()
    }

    /// Total number of scalar parameters.
    pub fn num_scalars(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }

    /// Overwrites every parameter from `values` (by name); missing names and shape
    /// mismatches are errors naming the parameter, and extra names are errors too.
    pub fn load_from(&self, values: &HashMap<String, Tensor>, source: &str) -> Result<()> {
        for name in values.keys() {
            if !self.by_name.contains_key(name) {
                return Err(Error::Config(format!("{source}: unexpected parameter {name:?} for this model")));
            }
        }
        for (var, info) in self.vars.iter().zip(&self.infos) {
            let value = values
                .get(&info.name)
                .ok_or_else(|| Error::Config(format!("{source}: parameter {:?} is missing", info.name)))?;
            if value.dims() != var.dims() {
                return Err(Error::Shape(format!(
                    "{source}: parameter {} has shape {:?}, the model needs {:?}",
                    info.name,
                    value.dims(),
                    var.dims()
                )));
            }
            var.set(&value.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
        Ok(())
    }
}
