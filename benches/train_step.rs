//! Training-step throughput and peak memory on the CPU (or `--device cuda`).
//!
//! `cargo bench --bench train_step` prints a table; `-- --json` prints one JSON object per
//! line (see `shared/design/conventions.md`); `-- --steps N` sets the timed steps.
//! Config: d=256, 4 layers, 4 heads, FFN 1024, vocab 8000, seq 128, batch 32, AdamW with
//! clipping; without adapters and with adapters (r=64, 2 languages).

use interference::device::parse_device;
use interference::model::{MlmModel, ModelConfig};
use interference::rng::{stream, Purpose};
use interference::tokenize::SpecialIds;
use interference::train::{Method, MlmData, TrainConfig, Trainer};
use interference::LangSet;
use rand::Rng;
use std::time::Instant;

struct Case {
    d: usize,
    layers: usize,
    heads: usize,
    ffn: usize,
    vocab: usize,
    seq: usize,
    batch: usize,
    adapters: usize,
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn random_data(case: &Case, langs: &LangSet) -> MlmData {
    let specials = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };
    let mut rng = stream(1, Purpose::Init, 99);
    let mut sentences = || -> Vec<Vec<u32>> {
        (0..2000)
            .map(|_| (0..rng.random_range(8..40)).map(|_| rng.random_range(5..case.vocab as u32)).collect())
            .collect()
    };
    let train = langs.iter().map(|_| sentences()).collect();
    let valid = langs.iter().map(|_| sentences()).collect();
    MlmData::from_ids(langs.clone(), train, valid, specials, case.vocab).expect("valid random data")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let steps: usize = value("--steps").and_then(|s| s.parse().ok()).unwrap_or(5);
    let device_name = value("--device").unwrap_or_else(|| "cpu".into());
    let device = parse_device(&device_name).expect("--device cpu|cuda[:N]");
    let cases = [
        Case { d: 256, layers: 4, heads: 4, ffn: 1024, vocab: 8000, seq: 128, batch: 32, adapters: 0 },
        Case { d: 256, layers: 4, heads: 4, ffn: 1024, vocab: 8000, seq: 128, batch: 32, adapters: 64 },
    ];
    if !json {
        println!("{:<44} {:>10} {:>12} {:>12}", "config", "ms/step", "tokens/s", "peak RSS MB");
    }
    for case in cases {
        let langs = LangSet::parse(if case.adapters > 0 { &["aa", "bb"] } else { &["aa"] }).expect("codes");
        let data = random_data(&case, &langs);
        let config = ModelConfig {
            vocab_size: case.vocab,
            d_model: case.d,
            layers: case.layers,
            heads: case.heads,
            d_ff: case.ffn,
            max_len: case.seq,
            dropout: 0.1,
            lang_embeddings: false,
            adapter_bottleneck: case.adapters,
            languages: langs,
            ln_eps: 1e-12,
        };
        let model = MlmModel::new(config, 0, candle_core::DType::F32, &device).expect("model");
        let method = if case.adapters > 0 { Method::Adapters } else { Method::Joint };
        let train = TrainConfig {
            method,
            steps: 1_000_000,
            batch_size: case.batch,
            seq_len: case.seq,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(model, data, train).expect("trainer");
        trainer.step().expect("warm-up step");
        let mut times: Vec<f64> = (0..steps)
            .map(|_| {
                let t = Instant::now();
                trainer.step().expect("step");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        let tokens_per_s = (case.batch * case.seq) as f64 / (ms / 1000.0);
        let rss = peak_rss_mb();
        if json {
            println!(
                "{{\"bench\":\"train_step\",\"device\":\"{device_name}\",\"config\":{{\"d\":{},\"layers\":{},\"heads\":{},\"seq\":{},\"batch\":{},\"adapters\":{}}},\"tokens_per_s\":{tokens_per_s:.1},\"ms_per_step\":{ms:.1},\"peak_rss_mb\":{rss:.0}}}",
                case.d, case.layers, case.heads, case.seq, case.batch, case.adapters
            );
        } else {
            let name = format!(
                "d{} L{} h{} seq{} b{} adapters {}",
                case.d, case.layers, case.heads, case.seq, case.batch, case.adapters
            );
            println!("{name:<44} {ms:>10.1} {tokens_per_s:>12.1} {rss:>12.0}");
        }
    }
}
