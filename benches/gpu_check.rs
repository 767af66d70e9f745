//! Checks and benchmarks that need a GPU, in one binary (CUDA binaries are large; one travels
//! to the GPU machine): CPU-vs-device agreement of the loss, every gradient and a few training
//! steps, then training-step throughput at two model sizes.
//!
//! `cargo bench --bench gpu_check -- --device cuda [--json] [--steps N]`; with `--device cpu`
//! it compares the CPU with itself (a smoke test of the harness).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{arg, median_ms, peak_rss_mb, random_data, Case, BASE, SMALL};
use interference::device::parse_device;
use interference::grads::mlm_gradients;
use interference::kernels::Precision;
use interference::model::{MlmModel, ModelConfig};
use interference::train::{meta_gradient, MetaConfig, Method, TrainConfig, Trainer};
use interference::LangSet;

/// A tensor's elements on the host, flattened.
fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1()).expect("host copy")
}

/// The L2 norm, summed in f64.
fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

/// Relative L2 difference, or the absolute one when both sides are ~0 (the key bias).
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (host(a), host(b));
    let diff = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>().sqrt();
    let scale = norm(&a).max(norm(&b));
    if scale < 1e-6 {
        diff
    } else {
        diff / scale
    }
}

/// Tolerance of f32 CPU-vs-GPU agreement (different summation orders and TF32-free cuBLAS).
const TOLERANCE: f64 = 1e-3;

/// Cosine of two tensors' directions, or `None` when the reference `a` is ~0 (a gradient that
/// is zero in exact arithmetic, such as the key biases', has no direction to compare).
fn cosine(a: &Tensor, b: &Tensor) -> Option<f64> {
    let (a, b) = (host(a), host(b));
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let (na, nb) = (norm(&a), norm(&b));
    (na >= 1e-6).then(|| dot / (na * nb).max(1e-300))
}

fn agreement(device: &Device, json: bool) -> bool {
    // Sizes that are not multiples of a warp or a block, to reach every kernel's edges.
    let config = ModelConfig {
        vocab_size: 301,
        d_model: 100,
        layers: 2,
        heads: 4,
        d_ff: 130,
        max_len: 29,
        // Dropout masks come from different generators on CPU and GPU; compare without them.
        dropout: 0.0,
        lang_embeddings: true,
        adapter_bottleneck: 8,
        languages: LangSet::parse(&["aa", "bb"]).expect("codes"),
        ln_eps: 1e-12,
    };
    let dir = std::env::temp_dir().join(format!("gpu_check_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.safetensors");
    let cpu_model = MlmModel::new(config.clone(), 1, DType::F32, &Device::Cpu).expect("model");
    cpu_model.save(&path).expect("save");
    let dev_model = MlmModel::load(&path, DType::F32, device).expect("load on device");
    let train =
        TrainConfig { method: Method::Adapters, steps: 100, batch_size: 16, seq_len: 29, ..TrainConfig::default() };
    let data = random_data(config.vocab_size, &config.languages);
    let mut cpu = Trainer::new(cpu_model, data.clone(), train.clone()).expect("trainer");
    let mut dev = Trainer::new(dev_model, data, train).expect("trainer");

    let mut ok = true;
    let mut worst_grad = 0.0f64;
    let mut worst_loss = 0.0f64;
    for batch in cpu.batches_at(0).expect("batches") {
        let a = mlm_gradients(cpu.model(), &batch).expect("cpu grads");
        let b = mlm_gradients(dev.model(), &batch).expect("device grads");
        worst_loss = worst_loss.max((a.loss - b.loss).abs() / a.loss.abs());
        for ((info, ga), gb) in cpu.model().registry().infos().iter().zip(&a.grads).zip(&b.grads) {
            let d = rel_diff(ga, gb);
            if d > TOLERANCE {
                ok = false;
                eprintln!("gradient of {} ({}) differs: {d:e}", info.name, batch.lang);
            }
            worst_grad = worst_grad.max(d);
        }
    }
    // The exact meta-gradient (second order through the look-ahead) on both devices.
    let lang = interference::Lang::new("aa").expect("code");
    let meta_batches = cpu.batches_at(1).expect("batches");
    let lookahead = cpu.batches_at(2).expect("batches").into_iter().find(|b| b.lang == lang).expect("a batch of aa");
    let meta_config = MetaConfig { inner_lr: 0.1, ..MetaConfig::default() };
    let ma =
        meta_gradient(cpu.model(), &lang, &lookahead, &meta_batches, &meta_config, None).expect("cpu meta-gradient");
    let mb =
        meta_gradient(dev.model(), &lang, &lookahead, &meta_batches, &meta_config, None).expect("device meta-gradient");
    let worst_meta = ma.grads.iter().zip(&mb.grads).map(|((_, a), (_, b))| rel_diff(a, b)).fold(0.0f64, f64::max);
    ok &= worst_meta < TOLERANCE;
    let mut worst_step = 0.0f64;
    for _ in 0..5 {
        let a = cpu.step().expect("cpu step");
        let b = dev.step().expect("device step");
        worst_step = worst_step.max((a.loss - b.loss).abs() / a.loss.abs());
    }
    let weights = cpu
        .model()
        .registry()
        .vars()
        .iter()
        .zip(dev.model().registry().vars())
        .map(|(a, b)| rel_diff(a.as_tensor(), b.as_tensor()))
        .fold(0.0f64, f64::max);
    ok &= worst_loss < TOLERANCE && worst_step < TOLERANCE && weights < TOLERANCE;
    // Mixed precision on the device (bf16 products) against fp32 on the CPU: the loss and the
    // direction of every gradient (cosine), tolerances of the bf16 CPU test (tests/precision.rs).
    let mut bf16_model = MlmModel::load(&path, DType::F32, device).expect("load on device");
    bf16_model.set_precision(Precision::Bf16);
    let cpu_model = MlmModel::load(&path, DType::F32, &Device::Cpu).expect("load on the CPU");
    let (mut bf16_loss, mut bf16_cos) = (0.0f64, 1.0f64);
    for batch in cpu.batches_at(0).expect("batches") {
        let a = mlm_gradients(&cpu_model, &batch).expect("cpu grads");
        let b = mlm_gradients(&bf16_model, &batch).expect("device bf16 grads");
        bf16_loss = bf16_loss.max((a.loss - b.loss).abs() / a.loss.abs());
        for (ga, gb) in a.grads.iter().zip(&b.grads) {
            bf16_cos = cosine(ga, gb).map_or(bf16_cos, |c| bf16_cos.min(c));
        }
    }
    ok &= bf16_loss < 1e-2 && bf16_cos > 0.99;
    let _ = std::fs::remove_dir_all(&dir);
    if json {
        println!("{{\"bench\":\"device_agreement\",\"loss_rel\":{worst_loss:e},\"max_grad_rel\":{worst_grad:e},\"max_step_loss_rel\":{worst_step:e},\"weights_rel_after_5_steps\":{weights:e},\"meta_grad_rel\":{worst_meta:e},\"tolerance\":{TOLERANCE:e},\"bf16_loss_rel\":{bf16_loss:e},\"bf16_min_grad_cosine\":{bf16_cos},\"pass\":{ok}}}");
    } else {
        println!("CPU vs device (f32): loss {worst_loss:.2e}, max gradient {worst_grad:.2e}, 5 step losses {worst_step:.2e}, weights after 5 steps {weights:.2e}, exact meta-gradient {worst_meta:.2e} (tolerance {TOLERANCE:e}); bf16 on the device: loss {bf16_loss:.2e}, min gradient cosine {bf16_cos:.5}: {}", if ok { "PASS" } else { "FAIL" });
    }
    ok
}

/// Median milliseconds of the forward pass (autograd-free loss) and of the loss with every
/// gradient (the pass a step runs) of one step's batches (dropout on), to see where a step's
/// time goes.
fn phases(trainer: &Trainer, device: &Device, runs: usize) -> (f64, f64) {
    let batches = trainer.batches_at(0).expect("batches");
    let params = trainer.model().registry().tensors();
    let rng = || interference::rng::stream(0, interference::rng::Purpose::Dropout, 0);
    let fwd = median_ms(runs, || {
        let mut rng = rng();
        for b in &batches {
            trainer.model().loss_with(&params, b, Some(&mut rng)).expect("loss");
        }
        device.synchronize().expect("synchronize");
    });
    let fwd_bwd = median_ms(runs, || {
        trainer.model().joint_loss_and_grads(&params, &batches, Some(&mut rng())).expect("loss and gradients");
        device.synchronize().expect("synchronize");
    });
    (fwd, fwd_bwd)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let steps: usize = arg(&args, "--steps").and_then(|s| s.parse().ok()).unwrap_or(10);
    let device_name = arg(&args, "--device").unwrap_or_else(|| "cuda".into());
    let device = parse_device(&device_name).expect("--device cpu|cuda[:N]");
    // The exact meta-gradient needs candle's second-order switch, read once per thread at its
    // first backward pass: check agreement on a thread with it on, then time on a thread
    // without it.
    interference::grads::enable_second_order();
    let ok = std::thread::scope(|s| s.spawn(|| agreement(&device, json)).join().expect("agreement thread"));
    std::env::remove_var(interference::grads::SECOND_ORDER_SWITCH);
    std::thread::scope(|s| {
        s.spawn(|| benchmarks(&device, &device_name, &args, json, steps)).join().expect("bench thread")
    });
    if !ok {
        std::process::exit(1);
    }
}

/// Training-step throughput and phases at each size.
fn benchmarks(device: &Device, device_name: &str, args: &[String], json: bool, steps: usize) {
    let device = device.clone();
    let cases: Vec<Case> = if args.iter().any(|a| a == "--small-only") {
        vec![SMALL]
    } else {
        vec![SMALL, Case { adapters: 64, ..SMALL }, BASE]
    };
    for case in cases {
        let mut trainer = case.trainer(&device);
        let ms = median_ms(steps, || {
            trainer.step().expect("step");
            device.synchronize().expect("synchronize");
        });
        let tokens_per_s = (case.batch * case.seq) as f64 / (ms / 1000.0);
        let (fwd, fwd_bwd) = phases(&trainer, &device, steps);
        if json {
            println!(
                "{{\"bench\":\"step_phases\",\"device\":\"{device_name}\",\"config\":{},\"forward_ms\":{fwd:.2},\"forward_backward_ms\":{fwd_bwd:.2},\"step_ms\":{ms:.2}}}",
                case.json()
            );
        } else {
            println!("  forward {fwd:.2} ms, forward+backward {fwd_bwd:.2} ms, whole step {ms:.2} ms");
        }
        if json {
            println!(
                "{{\"bench\":\"train_step\",\"impl\":\"candle\",\"device\":\"{device_name}\",\"dtype\":\"fp32\",\"config\":{},\"tokens_per_s\":{tokens_per_s:.1},\"ms_per_step\":{ms:.2},\"peak_rss_mb\":{:.0}}}",
                case.json(),
                peak_rss_mb()
            );
        } else {
            println!("{:<32} {ms:>10.2} ms/step {tokens_per_s:>12.1} tokens/s", case.label());
        }
    }
}
