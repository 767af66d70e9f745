//! Gradients of the MLM loss with respect to every parameter: the one source of
//! per-language gradients that probes and gradient-surgery methods build on.

use crate::batch::MlmBatch;
use crate::error::Result;
use crate::model::MlmModel;
use candle_core::Tensor;

/// The loss of one batch and the gradient of every parameter, in registry order.
#[derive(Clone, Debug)]
pub struct BatchGradients {
    /// Mean MLM cross-entropy of the batch.
    pub loss: f64,
    /// One gradient per registry parameter; zeros for parameters the batch does not use
    /// (other languages' adapters). The tied `tok.weight` holds the sum of both its uses.
    pub grads: Vec<Tensor>,
}

/// Computes the loss of `batch` and all parameter gradients with dropout off.
pub fn mlm_gradients(model: &MlmModel, batch: &MlmBatch) -> Result<BatchGradients> {
    let loss = model.loss(batch, None)?;
    let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    let store = loss.backward()?;
    let grads = model
        .registry()
        .vars()
        .iter()
        .map(|v| match store.get(v.as_tensor()) {
            Some(g) => Ok(g.detach()),
            None => v.as_tensor().zeros_like(),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(BatchGradients { loss: value, grads })
}
