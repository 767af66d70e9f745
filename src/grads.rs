//! Gradients of the MLM loss with respect to every parameter: the one source of
//! per-language gradients that probes and gradient-surgery methods build on, their Gram
//! matrices, and the second-order switch the meta step needs.

use crate::batch::MlmBatch;
use crate::error::{Error, Result};
use crate::model::MlmModel;
use candle_core::{DType, Device, Tensor, Var};

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
    let params = model.registry().tensors();
    let (loss, grads) = model.loss_and_grads(&params, batch, None)?;
    let grads = grads
        .into_iter()
        .zip(&params)
        .map(|(g, p)| match g {
            Some(g) => Ok(g.detach()),
            None => p.zeros_like(),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(BatchGradients { loss: scalar(&loss)?, grads })
}

/// A scalar tensor's value as f64.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Gram matrices of several gradient sets on the parameters `params`: for parameter `p` and
/// sets `i`, `j`, entry `[p][i][j]` is `⟨sets[i][p], sets[j][p]⟩`, computed on the device as one
/// `G·Gᵀ` per parameter (`G` stacks the flattened gradients) and copied to the host once.
/// Grams add over parameters, so any group's Gram is a sum of these (see [`group_gram`]).
pub fn param_grams(sets: &[&[Tensor]], params: &[usize]) -> Result<Vec<f64>> {
    if sets.is_empty() || params.is_empty() {
        return Ok(Vec::new());
    }
    let mut host = Vec::with_capacity(params.len() * sets.len() * sets.len());
    let mut on_device = Vec::new();
    for &p in params {
        let rows = sets.iter().map(|s| s[p].flatten_all()).collect::<candle_core::Result<Vec<_>>>()?;
        // On the CPU, all pairwise dot products in one cache-friendly pass (crate::kernels).
        if let Some(gram) = crate::kernels::gram::gram(&rows)? {
            host.extend(gram);
            continue;
        }
        let g = Tensor::stack(&rows, 0)?;
        on_device.push(g.matmul(&g.t()?)?);
    }
    if on_device.is_empty() {
        return Ok(host);
    }
    if !host.is_empty() {
        return Err(Error::Shape("gradient sets mix CPU and GPU tensors or dtypes".into()));
    }
    Ok(Tensor::stack(&on_device, 0)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// The `n × n` Gram matrix of a group: the sum of the per-parameter Grams (from
/// [`param_grams`], `n` sets) at positions `members` of the parameter list.
pub fn group_gram(grams: &[f64], n: usize, members: &[usize]) -> Vec<f64> {
    let mut sum = vec![0.0; n * n];
    for &m in members {
        for (s, v) in sum.iter_mut().zip(&grams[m * n * n..(m + 1) * n * n]) {
            *s += v;
        }
    }
    sum
}

/// Adds `g` into `sum` (which starts as `None`): how gradients of one parameter are summed
/// over the uses, batches or sets that contribute to it.
pub fn accumulate(sum: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *sum = Some(match sum.take() {
        Some(a) => crate::kernels::elementwise::combine(&[&a, &g], None)?,
        None => g,
    });
    Ok(())
}

/// `Σ_i coeffs[i] · sets[i][p]`: a linear combination of gradient sets for one parameter.
pub fn combine(sets: &[&[Tensor]], p: usize, coeffs: &[f64]) -> Result<Tensor> {
    let mut acc: Option<Tensor> = None;
    for (set, &c) in sets.iter().zip(coeffs) {
        if c == 0.0 {
            continue;
        }
        accumulate(&mut acc, (&set[p] * c)?)?;
    }
    match acc {
        Some(a) => Ok(a),
        None => Ok(sets[0][p].zeros_like()?),
    }
}

/// The environment switch that makes candle keep the graph of the gradients it returns.
pub const SECOND_ORDER_SWITCH: &str = "CANDLE_GRAD_DO_NOT_DETACH";

/// Turns on exact second-order gradients for threads that have not run a backward pass yet.
///
/// candle reads [`SECOND_ORDER_SWITCH`] once per thread, at that thread's first backward pass;
/// call this at start-up, before any training. While it is on, every backward pass keeps its
/// graph until its gradients are dropped, which costs memory.
pub fn enable_second_order() {
    // Setting the variable before other threads read it; later readers see "1".
    std::env::set_var(SECOND_ORDER_SWITCH, "1");
}

/// Whether gradients taken on this thread can be differentiated again (the switch of
/// [`enable_second_order`] was on at this thread's first backward pass).
pub fn second_order_enabled() -> Result<bool> {
    let x = Var::new(&[1.5f64], &Device::Cpu)?;
    let y = x.as_tensor().sqr()?.sum_all()?;
    let g = y.backward()?.get(x.as_tensor()).cloned().ok_or_else(|| Error::Shape("no gradient of x².".into()))?;
    Ok(g.sum_all()?.backward()?.get(x.as_tensor()).is_some())
}
