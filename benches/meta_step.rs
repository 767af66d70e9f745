//! Cost of one step of each method relative to one joint step with adapters (target for the
//! meta step: at most 3×), measured back to back in one run.
//!
//! `cargo bench --bench meta_step [-- --json] [-- --runs N] [-- --device cuda]`.
//! Model: d=256, 4 layers, 4 heads, FFN 1024, vocab 8000, seq 128, batch 32, adapters r=64,
//! 2 languages; meta batches of 4 sequences per language.

mod common;

use common::{arg, median_ms, Case, SMALL};
use interference::device::parse_device;
use interference::grads::SECOND_ORDER_SWITCH;
use interference::train::{MetaConfig, MetaOrder, Method, TrainConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let runs: usize = arg(&args, "--runs").and_then(|s| s.parse().ok()).unwrap_or(3);
    let lookahead: usize = arg(&args, "--lookahead").and_then(|s| s.parse().ok()).unwrap_or(8);
    let only: Option<String> = arg(&args, "--only");
    let device_name = arg(&args, "--device").unwrap_or_else(|| "cpu".into());
    let device = parse_device(&device_name).expect("--device cpu|cuda[:N]");
    let case = Case { adapters: 64, ..SMALL };
    let meta = |order| TrainConfig {
        method: Method::Meta,
        meta: MetaConfig { order, meta_sentences: 100, lookahead_batch_size: lookahead, ..MetaConfig::default() },
        ..TrainConfig::default()
    };
    let methods: Vec<(&str, TrainConfig)> = vec![
        ("adapters (joint)", TrainConfig { method: Method::Adapters, ..TrainConfig::default() }),
        ("meta exact", meta(MetaOrder::Exact)),
        ("meta finite difference", meta(MetaOrder::FiniteDifference)),
        ("meta first order", meta(MetaOrder::FirstOrder)),
        ("pcgrad", TrainConfig { method: Method::Pcgrad, ..TrainConfig::default() }),
        ("gradvac", TrainConfig { method: Method::Gradvac, ..TrainConfig::default() }),
    ];
    if !json {
        println!("{:<24} {:>12} {:>14}", "method", "ms/step", "ratio to joint");
    }
    let mut joint_ms = f64::NAN;
    for (name, config) in methods {
        if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
            continue;
        }
        // candle reads the second-order switch once per thread, at its first backward pass: run
        // each method on a fresh thread, with the switch on only for the exact meta step (whose
        // trainer turns it on), so the others are timed without its memory cost.
        std::env::remove_var(SECOND_ORDER_SWITCH);
        let ms = std::thread::scope(|s| {
            s.spawn(|| {
                let mut trainer = case.trainer_with(&device, config);
                median_ms(runs, || {
                    trainer.step().expect("step");
                    device.synchronize().expect("synchronize");
                })
            })
            .join()
            .expect("bench thread")
        });
        if joint_ms.is_nan() {
            joint_ms = ms;
        }
        let ratio = ms / joint_ms;
        if json {
            println!("{{\"bench\":\"meta_step\",\"device\":\"{device_name}\",\"method\":\"{name}\",\"config\":{},\"ms_per_step\":{ms:.1},\"ratio_to_joint\":{ratio:.3}}}", case.json());
        } else {
            println!("{name:<24} {ms:>12.1} {ratio:>14.3}");
        }
    }
}
