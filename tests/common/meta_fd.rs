//! The meta-gradient check shared by `tests/meta.rs` (exact order, reference ops) and
//! `tests/meta_fused.rs` (finite-difference order on the fused kernels, in a process where
//! candle's second-order switch stays off).

use candle_core::{DType, Device, Tensor};
use interference::batch::MlmBatch;
use interference::kernels::Kernels;
use interference::model::{MlmModel, ModelConfig, ParamGroup};
use interference::train::{meta_gradient, MetaConfig, MetaOrder};
use interference::{Lang, LangSet};

fn host(t: &Tensor) -> Vec<f64> {
    t.to_vec1().unwrap()
}

/// A tiny f64 model running `kernels`, with adapters that matter.
pub fn tiny_model(kernels: Kernels) -> MlmModel {
    let config = ModelConfig {
        vocab_size: 17,
        d_model: 8,
        layers: 1,
        heads: 2,
        d_ff: 12,
        max_len: 8,
        dropout: 0.0,
        lang_embeddings: true,
        adapter_bottleneck: 3,
        languages: LangSet::parse(&["aa", "bb"]).unwrap(),
        ln_eps: 1e-5,
    };
    let mut model = MlmModel::new(config, 4, DType::F64, &Device::Cpu).unwrap();
    model.set_kernels(kernels);
    // Adapters start near the identity; make them matter so the meta-gradient is well resolved.
    for (info, var) in model.registry().infos().iter().zip(model.registry().vars()) {
        if info.name.ends_with("up.weight") {
            var.set(&(var.as_tensor() * 200.0).unwrap()).unwrap();
        }
    }
    model
}

/// One row of six tokens in `lang`, predicting `targets` at `positions`.
pub fn batch(lang: &str, tokens: [u32; 6], positions: Vec<u32>, targets: Vec<u32>) -> MlmBatch {
    MlmBatch {
        lang: Lang::new(lang).unwrap(),
        rows: 1,
        cols: 6,
        tokens: tokens.to_vec(),
        positions,
        targets,
        pad: None,
    }
}

/// The meta objective M(φ) = mean_k L_meta_k(θ − α∇θ L_train(θ, φ), φ) at adapter values φ
/// (only the look-ahead's gradient is taken; no second-order code).
fn meta_objective(model: &MlmModel, params: &[Tensor], lookahead: &MlmBatch, meta: &[MlmBatch], alpha: f64) -> f64 {
    let grads = model.loss_with(params, lookahead, None).unwrap().backward().unwrap();
    let mut lifted: Vec<Tensor> = params.to_vec();
    for p in model.registry().indices_in(&ParamGroup::Shared) {
        if let Some(g) = grads.get(&params[p]) {
            lifted[p] = (params[p].detach() - (g * alpha).unwrap()).unwrap();
        }
    }
    let losses: f64 = meta.iter().map(|b| model.loss_with(&lifted, b, None).unwrap().to_scalar::<f64>().unwrap()).sum();
    losses / meta.len() as f64
}

/// Relative error of the meta-gradient of `orders` against central finite differences of the
/// meta objective, on a tiny f64 model running `kernels`.
pub fn meta_gradient_errors(kernels: Kernels, orders: &[MetaOrder]) -> Vec<f64> {
    let model = tiny_model(kernels);
    let lang = Lang::new("aa").unwrap();
    let lookahead = batch("aa", [2, 5, 4, 9, 3, 11], vec![2, 4], vec![6, 13]);
    let meta =
        vec![batch("aa", [2, 7, 4, 8, 3, 12], vec![2], vec![10]), batch("bb", [2, 14, 16, 4, 3, 6], vec![3], vec![15])];
    let config = MetaConfig { inner_lr: 0.5, fd_radius: 1e-4, ..MetaConfig::default() };

    let registry = model.registry();
    let phi = registry.indices_in(&ParamGroup::Specific(lang.clone()));
    let base = registry.tensors();
    let h = 1e-5;
    let mut oracle: Vec<Vec<f64>> = Vec::new();
    for &p in &phi {
        let flat = host(&base[p].flatten_all().unwrap());
        let mut g = Vec::with_capacity(flat.len());
        for j in 0..flat.len() {
            let at = |d: f64| {
                let mut values = flat.clone();
                values[j] += d;
                let mut params = base.clone();
                params[p] = Tensor::from_vec(values, base[p].shape(), &Device::Cpu).unwrap();
                meta_objective(&model, &params, &lookahead, &meta, config.inner_lr)
            };
            g.push((at(h) - at(-h)) / (2.0 * h));
        }
        oracle.push(g);
    }
    let rel = |order: MetaOrder| -> f64 {
        let mg =
            meta_gradient(&model, &lang, &lookahead, &meta, &MetaConfig { order, ..config.clone() }, None).unwrap();
        let (mut diff, mut norm) = (0.0, 0.0);
        for ((p, g), o) in mg.grads.iter().zip(&oracle) {
            assert!(phi.contains(p));
            for (a, b) in host(&g.flatten_all().unwrap()).iter().zip(o) {
                diff += (a - b).powi(2);
                norm += b * b;
            }
        }
        (diff / norm).sqrt()
    };
    orders.iter().map(|&o| rel(o)).collect()
}
