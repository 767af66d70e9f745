//! The model's gradients against central finite differences in f64, over every parameter, on
//! both implementations of the hot operations (fused kernels and composite reference ops).

use candle_core::{DType, Device, Tensor};
use interference::batch::MlmBatch;
use interference::grads::mlm_gradients;
use interference::kernels::Kernels;
use interference::model::{MlmModel, ModelConfig};
use interference::{Lang, LangSet};

fn tiny_config(adapters: usize, lang_embeddings: bool) -> ModelConfig {
    ModelConfig {
        vocab_size: 17,
        d_model: 8,
        layers: 2,
        heads: 2,
        d_ff: 12,
        max_len: 8,
        dropout: 0.1,
        lang_embeddings,
        adapter_bottleneck: adapters,
        languages: LangSet::parse(&["en", "sw"]).unwrap(),
        ln_eps: 1e-5,
    }
}

/// Two rows of six tokens, the second padded at its end (pad id 0).
fn tiny_batch(lang: &str) -> MlmBatch {
    MlmBatch {
        lang: Lang::new(lang).unwrap(),
        rows: 2,
        cols: 6,
        tokens: vec![2, 5, 4, 9, 3, 11, 2, 7, 4, 16, 0, 0],
        positions: vec![2, 4, 8, 9],
        targets: vec![6, 13, 12, 15],
        pad: Some(0),
    }
}

fn loss_at(model: &MlmModel, params: &[Tensor], batch: &MlmBatch) -> f64 {
    model.loss_with(params, batch, None).unwrap().to_scalar::<f64>().unwrap()
}

/// Max over parameter tensors of ‖g − g_fd‖ / max(‖g‖, ‖g_fd‖), skipping tensors whose
/// exact gradient is zero (checked absolutely instead).
fn check_all_parameters(model: &MlmModel, batch: &MlmBatch) -> f64 {
    let analytic = mlm_gradients(model, batch).unwrap();
    let base: Vec<Tensor> = model.registry().detached();
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    for (i, info) in model.registry().infos().iter().enumerate() {
        let flat: Vec<f64> = base[i].flatten_all().unwrap().to_vec1().unwrap();
        let mut fd = Vec::with_capacity(flat.len());
        for j in 0..flat.len() {
            let shifted = |delta: f64| {
                let mut v = flat.clone();
                v[j] += delta;
                let mut params = base.clone();
                params[i] = Tensor::from_vec(v, base[i].shape(), &Device::Cpu).unwrap();
                loss_at(model, &params, batch)
            };
            fd.push((shifted(h) - shifted(-h)) / (2.0 * h));
        }
        let g: Vec<f64> = analytic.grads[i].flatten_all().unwrap().to_vec1().unwrap();
        let diff = g.iter().zip(&fd).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        let scale = g.iter().map(|a| a * a).sum::<f64>().sqrt().max(fd.iter().map(|a| a * a).sum::<f64>().sqrt());
        if scale < 1e-9 {
            // Exactly-zero gradients (the key bias; other languages' adapters): both must be ~0.
            assert!(diff < 1e-8, "{}: gradient should be 0, |g - fd| = {diff:e}", info.name);
            continue;
        }
        let rel = diff / scale;
        assert!(rel < 1e-4, "{}: relative error {rel:e} (|g| {scale:e})", info.name);
        if rel > worst {
            println!("  {}: relative error {rel:e}", info.name);
        }
        worst = worst.max(rel);
    }
    worst
}

fn check_with_adapters(kernels: Kernels) {
    let mut model = MlmModel::new(tiny_config(4, true), 3, DType::F64, &Device::Cpu).unwrap();
    model.set_kernels(kernels);
    // Adapters start near the identity (up-projection std 1e-3), which leaves the gradients of
    // their down-projections at ~1e-7, below what central differences resolve; scale them up.
    for (info, var) in model.registry().infos().iter().zip(model.registry().vars()) {
        if info.name.ends_with("up.weight") {
            var.set(&(var.as_tensor() * 100.0).unwrap()).unwrap();
        }
    }
    let worst = check_all_parameters(&model, &tiny_batch("sw"));
    println!("{kernels:?}: max relative error over {} tensors (adapters, lang emb): {worst:e}", model.registry().len());
    assert!(worst > 0.0, "no tensor was compared");
}

fn check_plain(kernels: Kernels) {
    let mut model = MlmModel::new(tiny_config(0, false), 5, DType::F64, &Device::Cpu).unwrap();
    model.set_kernels(kernels);
    let worst = check_all_parameters(&model, &tiny_batch("en"));
    println!("{kernels:?}: max relative error over {} tensors (plain): {worst:e}", model.registry().len());
    assert!(worst > 0.0, "no tensor was compared");
}

#[test]
fn every_gradient_matches_finite_differences_with_adapters_fused() {
    check_with_adapters(Kernels::Fused);
}

#[test]
fn every_gradient_matches_finite_differences_with_adapters_reference() {
    check_with_adapters(Kernels::Reference);
}

#[test]
fn every_gradient_matches_finite_differences_plain_fused() {
    check_plain(Kernels::Fused);
}

#[test]
fn every_gradient_matches_finite_differences_plain_reference() {
    check_plain(Kernels::Reference);
}

#[test]
fn unused_adapters_get_zero_gradients_and_used_ones_do_not() {
    let model = MlmModel::new(tiny_config(4, true), 3, DType::F64, &Device::Cpu).unwrap();
    let g = mlm_gradients(&model, &tiny_batch("en")).unwrap();
    for (info, grad) in model.registry().infos().iter().zip(&g.grads) {
        let norm = grad.sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        if info.name.starts_with("adapters.sw.") {
            assert_eq!(norm, 0.0, "{}", info.name);
        } else if info.name.starts_with("adapters.en.") && info.name.ends_with("weight") {
            assert!(norm > 0.0, "{}", info.name);
        }
    }
}

#[test]
fn unknown_language_and_bad_ids_are_errors() {
    let model = MlmModel::new(tiny_config(0, true), 0, DType::F32, &Device::Cpu).unwrap();
    let err = model.loss(&tiny_batch("fr"), None).unwrap_err();
    assert!(err.to_string().contains("\"fr\""), "{err}");
    let mut batch = tiny_batch("en");
    batch.tokens[3] = 99;
    let err = model.loss(&batch, None).unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
    let mut batch = tiny_batch("en");
    batch.cols = 9;
    batch.rows = 1;
    assert!(model.loss(&batch, None).is_err());
}
