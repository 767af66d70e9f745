//! The fused kernels against the composite reference ops: forward values and every
//! parameter's gradient, in f32 (the training dtype) and f64, with padding, adapters,
//! language embeddings and dropout.

use candle_core::{DType, Device, Tensor};
use interference::batch::MlmBatch;
use interference::grads::{mlm_gradients, BatchGradients};
use interference::kernels::Kernels;
use interference::model::{MlmModel, ModelConfig};
use interference::rng::{stream, Purpose};
use interference::{Lang, LangSet};
use rand::Rng;

fn config() -> ModelConfig {
    ModelConfig {
        vocab_size: 97,
        d_model: 32,
        layers: 2,
        heads: 4,
        d_ff: 64,
        max_len: 16,
        dropout: 0.1,
        lang_embeddings: true,
        adapter_bottleneck: 8,
        languages: LangSet::parse(&["en", "sw"]).unwrap(),
        ln_eps: 1e-5,
    }
}

/// Three rows of 16 random ids, the last two rows padded at their ends (pad id 0).
fn batch() -> MlmBatch {
    let mut rng = stream(7, Purpose::Batch, 0);
    let (rows, cols) = (3, 16);
    let mut tokens: Vec<u32> = (0..rows * cols).map(|_| rng.random_range(5..97)).collect();
    tokens[cols + 12..2 * cols].fill(0);
    tokens[2 * cols + 5..].fill(0);
    let positions: Vec<u32> = vec![1, 3, 7, 15, 17, 20, 27, 33, 36];
    let targets = positions.iter().map(|_| rng.random_range(5..97)).collect();
    MlmBatch { lang: Lang::new("sw").unwrap(), rows, cols, tokens, positions, targets, pad: Some(0) }
}

/// Largest `|a − b| / max(|a|, |b|, floor)` over the elements of two tensors.
fn gap(a: &Tensor, b: &Tensor, floor: f64) -> f64 {
    let a: Vec<f64> = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f64> = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(floor)).fold(0.0, f64::max)
}

/// Runs both paths on the same weights and batch; returns the worst forward and gradient gaps.
fn compare(dtype: DType, dropout: bool) -> (f64, f64) {
    let mut model = MlmModel::new(config(), 11, dtype, &Device::Cpu).unwrap();
    // Make the adapters matter (they start near the identity).
    for (info, var) in model.registry().infos().iter().zip(model.registry().vars()) {
        if info.name.ends_with("up.weight") {
            var.set(&(var.as_tensor() * 100.0).unwrap()).unwrap();
        }
    }
    let batch = batch();
    let params = model.registry().tensors();
    let mut run = |kernels: Kernels| {
        model.set_kernels(kernels);
        let mut rng = stream(3, Purpose::Dropout, 0);
        let logits = model.logits_with(&params, &batch, dropout.then_some(&mut rng)).unwrap();
        // The hand-written pass of the fused path (with the same dropout masks when on) and
        // candle's autograd on the reference path.
        let mut rng = stream(3, Purpose::Dropout, 0);
        let (loss, grads) = model.loss_and_grads(&params, &batch, dropout.then_some(&mut rng)).unwrap();
        let grads = grads.into_iter().zip(&params).map(|(g, p)| g.unwrap_or_else(|| p.zeros_like().unwrap())).collect();
        (logits, BatchGradients { loss: loss.to_dtype(DType::F64).unwrap().to_scalar().unwrap(), grads })
    };
    let (fused_logits, fused_grads) = run(Kernels::Fused);
    let (ref_logits, ref_grads) = run(Kernels::Reference);
    let forward = gap(&fused_logits, &ref_logits, 1e-3);
    let mut worst = 0.0f64;
    let (f, r) = (fused_grads, ref_grads);
    {
        assert!((f.loss - r.loss).abs() <= 1e-5 * r.loss.abs(), "loss {} vs {}", f.loss, r.loss);
        let max_abs =
            |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        let largest = r.grads.iter().map(max_abs).fold(0.0, f64::max);
        for (info, (a, b)) in model.registry().infos().iter().zip(f.grads.iter().zip(&r.grads)) {
            // Relative to the tensor's largest gradient, so near-zero entries do not dominate;
            // tensors whose exact gradient is 0 (the key bias) relative to the model's largest.
            let g = gap(a, b, max_abs(b).max(1e-6 * largest));
            assert!(g < if dtype == DType::F64 { 1e-10 } else { 2e-4 }, "{}: gap {g:e}", info.name);
            worst = worst.max(g);
        }
    }
    (forward, worst)
}

#[test]
fn fused_and_reference_agree_in_f32() {
    let (forward, grads) = compare(DType::F32, false);
    println!("f32: logits {forward:e}, gradients {grads:e}");
    assert!(forward < 1e-4, "logits differ by {forward:e}");
    assert!(grads > 0.0, "nothing compared");
}

#[test]
fn fused_and_reference_agree_in_f64() {
    let (forward, grads) = compare(DType::F64, false);
    println!("f64: logits {forward:e}, gradients {grads:e}");
    assert!(forward < 1e-12, "logits differ by {forward:e}");
}

#[test]
fn fused_and_reference_agree_with_dropout() {
    let (forward, grads) = compare(DType::F32, true);
    println!("f32 with dropout: logits {forward:e}, gradients {grads:e}");
    assert!(forward < 1e-4, "logits differ by {forward:e}");
}

#[test]
fn mlm_gradients_takes_the_hand_written_pass_on_fused_kernels() {
    // Same weights, dropout off: `mlm_gradients` (fused) against autograd on the reference ops.
    let mut model = MlmModel::new(config(), 5, DType::F64, &Device::Cpu).unwrap();
    let batch = batch();
    let fused = mlm_gradients(&model, &batch).unwrap();
    model.set_kernels(Kernels::Reference);
    let reference = mlm_gradients(&model, &batch).unwrap();
    assert!((fused.loss - reference.loss).abs() < 1e-12);
    for (a, b) in fused.grads.iter().zip(&reference.grads) {
        assert!(gap(a, b, 1e-9) < 1e-9);
    }
}

#[test]
fn kernels_parse_from_config_strings() {
    let k: Kernels = serde_json::from_str("\"reference\"").unwrap();
    assert_eq!(k, Kernels::Reference);
    assert_eq!(serde_json::to_string(&Kernels::Fused).unwrap(), "\"fused\"");
    assert!(serde_json::from_str::<Kernels>("\"fast\"").is_err());
    assert_eq!(Kernels::default(), Kernels::Fused);
}

#[test]
fn fused_ops_reject_mismatched_shapes_with_a_message() {
    let x = Tensor::zeros((4, 6), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((5, 7), DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap();
    let err = Kernels::Fused.linear(&x, &w, &b).unwrap_err().to_string();
    assert!(err.contains("[4, 6]") && err.contains("[5, 7]"), "{err}");
    let q = Tensor::zeros((6, 6), DType::F32, &Device::Cpu).unwrap();
    let err = Kernels::Fused.attention(&q, &q, &q, 4, 3, None).unwrap_err().to_string();
    assert!(err.contains("4 heads"), "{err}");
    let logits = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
    let targets = Tensor::new(&[1u32, 9], &Device::Cpu).unwrap();
    let err = Kernels::Fused.cross_entropy(&logits, &targets).unwrap_err().to_string();
    assert!(err.contains("target 9"), "{err}");
}

#[test]
fn fused_adamw_matches_the_update_rule_written_out() {
    use candle_core::Var;
    use interference::train::{AdamW, AdamWConfig};
    let config = AdamWConfig::default();
    let theta0: Vec<f64> = (0..40_000).map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0).collect();
    let var = Var::from_tensor(&Tensor::new(theta0.as_slice(), &Device::Cpu).unwrap()).unwrap();
    let mut adam = AdamW::new(config, 1);
    let (mut theta, mut m, mut v) = (theta0.clone(), vec![0.0; theta0.len()], vec![0.0; theta0.len()]);
    for t in 1..=3 {
        let g: Vec<f64> = (0..theta0.len()).map(|i| ((i * t * 13) % 17) as f64 / 8.0 - 1.0).collect();
        let lr = 0.01 * t as f64;
        adam.step(&[&var], &[Some(Tensor::new(g.as_slice(), &Device::Cpu).unwrap())], &[true], lr).unwrap();
        let (bc1, bc2) = (1.0 - config.beta1.powi(t as i32), 1.0 - config.beta2.powi(t as i32));
        for i in 0..theta.len() {
            m[i] = config.beta1 * m[i] + (1.0 - config.beta1) * g[i];
            v[i] = config.beta2 * v[i] + (1.0 - config.beta2) * g[i] * g[i];
            theta[i] =
                theta[i] * (1.0 - lr * config.weight_decay) - lr / bc1 * m[i] / ((v[i] / bc2).sqrt() + config.eps);
        }
    }
    let got: Vec<f64> = var.as_tensor().to_vec1().unwrap();
    let worst = got.iter().zip(&theta).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-12, "θ differs by {worst:e}");
    let state = adam.state()[0].as_ref().unwrap();
    let m_got: Vec<f64> = state.m().unwrap().to_vec1().unwrap();
    assert!(m_got.iter().zip(&m).all(|(a, b)| (a - b).abs() < 1e-12));
    // The update runs in place: a clone of the optimiser keeps its own moments.
    let before = adam.try_clone().unwrap();
    let g = Tensor::ones(theta0.len(), DType::F64, &Device::Cpu).unwrap();
    adam.step(&[&var], &[Some(g)], &[true], 0.01).unwrap();
    let kept: Vec<f64> = before.state()[0].as_ref().unwrap().m().unwrap().to_vec1().unwrap();
    assert_eq!(kept, m_got);
    let moved: Vec<f64> = adam.state()[0].as_ref().unwrap().m().unwrap().to_vec1().unwrap();
    assert_ne!(moved, m_got);
}

#[test]
fn train_config_key_kernels_reaches_the_model() {
    use interference::train::{TrainConfig, Trainer};
    let train: TrainConfig =
        serde_json::from_str(r#"{"kernels": "reference", "batch_size": 2, "seq_len": 8}"#).unwrap();
    assert_eq!(train.kernels, Kernels::Reference);
    assert_eq!(serde_json::from_str::<TrainConfig>("{}").unwrap().kernels, Kernels::Fused);
    let err = serde_json::from_str::<TrainConfig>(r#"{"kernels": "fast"}"#).unwrap_err().to_string();
    assert!(err.contains("fast"), "{err}");
    let mut model_config = config();
    model_config.adapter_bottleneck = 0;
    model_config.max_len = 8;
    let model = MlmModel::new(model_config.clone(), 0, DType::F32, &Device::Cpu).unwrap();
    let sentences: Vec<Vec<u32>> = (0..20).map(|i| vec![5 + i % 50, 6, 7]).collect();
    let data = interference::train::MlmData::from_ids(
        model_config.languages.clone(),
        vec![sentences.clone(), sentences.clone()],
        vec![sentences.clone(), sentences],
        interference::tokenize::SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
        model_config.vocab_size,
    )
    .unwrap();
    let trainer = Trainer::new(model, data, train).unwrap();
    assert_eq!(trainer.model().kernels(), Kernels::Reference);
}

#[test]
fn weighted_gradients_are_the_weighted_loss_gradients_on_both_paths() {
    let mut model = MlmModel::new(config(), 2, DType::F64, &Device::Cpu).unwrap();
    let (batch, params) = (batch(), model.registry().tensors());
    for kernels in [Kernels::Fused, Kernels::Reference] {
        model.set_kernels(kernels);
        let (loss, plain) = model.loss_and_grads(&params, &batch, None).unwrap();
        let (weighted_loss, weighted) = model.weighted_loss_and_grads(&params, &batch, None, 0.25).unwrap();
        let scalar = |t: &Tensor| t.to_scalar::<f64>().unwrap();
        assert_eq!(scalar(&loss), scalar(&weighted_loss), "{kernels:?}: the loss is reported unweighted");
        for (a, b) in plain.iter().zip(&weighted) {
            match (a, b) {
                (Some(a), Some(b)) => assert!(gap(&(a * 0.25).unwrap(), b, 1e-12) < 1e-12, "{kernels:?}"),
                (None, None) => {}
                _ => panic!("{kernels:?}: one path has a gradient the other lacks"),
            }
        }
    }
}

#[test]
fn clipping_inside_adamw_equals_clipping_before_it() {
    use candle_core::Var;
    use interference::train::{clip_global_norm, clip_scale, global_norm, AdamW, AdamWConfig};
    let values: Vec<f32> = (0..5000).map(|i| ((i * 31) % 97) as f32 / 40.0 - 1.2).collect();
    let grad = Tensor::new(values.as_slice(), &Device::Cpu).unwrap();
    let expected = values.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let norm = global_norm(&[Some(grad.clone()), None]).unwrap();
    // Chunks are summed in f32, then in f64.
    assert!((norm - expected).abs() < 1e-6 * expected, "{norm} vs {expected}");
    let theta = Tensor::ones(5000, DType::F32, &Device::Cpu).unwrap();
    let (a, b) = (Var::from_tensor(&theta).unwrap(), Var::from_tensor(&theta).unwrap());
    let (mut adam_a, mut adam_b) = (AdamW::new(AdamWConfig::default(), 1), AdamW::new(AdamWConfig::default(), 1));
    adam_a.step_scaled(&[&a], &[Some(grad.clone())], &[true], 0.1, clip_scale(norm, 1.0)).unwrap();
    let mut clipped = vec![Some(grad)];
    clip_global_norm(&mut clipped, 1.0).unwrap();
    adam_b.step(&[&b], &clipped, &[true], 0.1).unwrap();
    assert!(gap(a.as_tensor(), b.as_tensor(), 1e-6) < 1e-6);
}

#[test]
fn one_predicted_position_and_one_token_sequences_agree_with_reference() {
    // One-row matrix products (a single target; sequences of one token) take gemm's vector paths.
    let mut model = MlmModel::new(config(), 9, DType::F64, &Device::Cpu).unwrap();
    let mut one_target = batch();
    one_target.positions = vec![5];
    one_target.targets = vec![42];
    let one_token = MlmBatch {
        lang: Lang::new("en").unwrap(),
        rows: 3,
        cols: 1,
        tokens: vec![7, 8, 9],
        positions: vec![1],
        targets: vec![11],
        pad: None,
    };
    for b in [one_target, one_token] {
        model.set_kernels(Kernels::Fused);
        let fused = mlm_gradients(&model, &b).unwrap();
        model.set_kernels(Kernels::Reference);
        let reference = mlm_gradients(&model, &b).unwrap();
        assert!((fused.loss - reference.loss).abs() < 1e-12);
        for (x, y) in fused.grads.iter().zip(&reference.grads) {
            assert!(gap(x, y, 1e-9) < 1e-9);
        }
    }
}

#[test]
fn adamw_rejects_mismatched_lists_with_a_message() {
    use candle_core::Var;
    use interference::train::{AdamW, AdamWConfig};
    let var = Var::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let mut adam = AdamW::new(AdamWConfig::default(), 2);
    let err = adam.step(&[&var], &[None], &[true], 0.1).unwrap_err().to_string();
    assert!(err.contains("2 variables") && err.contains("1 variables"), "{err}");
}

#[test]
fn merged_languages_pass_equals_one_pass_per_language() {
    // Three batches (sw, en, sw) of one length: on the fused kernels they run as one merged
    // batch, each row through its own language's adapters and language embedding; on the
    // reference ops, one autograd pass per batch, weighted by its share of the targets.
    let mut model = MlmModel::new(config(), 5, DType::F64, &Device::Cpu).unwrap();
    for (info, var) in model.registry().infos().iter().zip(model.registry().vars()) {
        if info.name.ends_with("up.weight") {
            var.set(&(var.as_tensor() * 100.0).unwrap()).unwrap();
        }
    }
    let sw = batch();
    let mut en = batch();
    en.lang = Lang::new("en").unwrap();
    en.tokens.iter_mut().filter(|t| **t != 0).for_each(|t| *t = 5 + (*t * 7) % 92);
    en.positions.truncate(4);
    en.targets.truncate(4);
    let mut sw2 = batch();
    sw2.rows = 1;
    sw2.tokens.truncate(16);
    sw2.positions = vec![2, 9];
    sw2.targets = vec![40, 41];
    let batches = [sw, en, sw2];
    let params = model.registry().tensors();
    let mut run = |kernels: Kernels| {
        model.set_kernels(kernels);
        model.joint_loss_and_grads(&params, &batches, None).unwrap()
    };
    let (fused_losses, fused) = run(Kernels::Fused);
    let (ref_losses, reference) = run(Kernels::Reference);
    assert_eq!(fused_losses.len(), 3);
    for (f, r) in fused_losses.iter().zip(&ref_losses) {
        assert!(gap(f, r, 1e-12) < 1e-12, "loss {f} vs {r}");
    }
    let max_abs = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    // Relative to the largest gradient: some (the key bias's) are zero up to rounding.
    let largest = reference.iter().flatten().map(max_abs).fold(0.0, f64::max);
    for ((f, r), info) in fused.iter().zip(&reference).zip(model.registry().infos()) {
        let (f, r) = (f.as_ref().expect(&info.name), r.as_ref().expect(&info.name));
        let worst = max_abs(&(f - r).unwrap()) / largest;
        assert!(worst < 1e-10, "{}: gradient gap {worst:e}", info.name);
    }
    // A batch with nothing to predict is an error that names its language.
    let mut empty = batches.to_vec();
    empty[1].positions.clear();
    empty[1].targets.clear();
    model.set_kernels(Kernels::Fused);
    let err = model.joint_loss_and_grads(&params, &empty, None).unwrap_err().to_string();
    assert!(err.contains("en"), "{err}");
}
