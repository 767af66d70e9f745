//! The treatment beside its baselines on synthetic languages built to conflict, over several
//! seeds: held-out MLM loss per language for joint, adapters, meta adapters, PCGrad and
//! GradVac, as mean ± standard deviation.
//!
//! `cargo bench --bench methods [-- --seeds 3] [-- --steps 300] [-- --json]`.
//! Languages: the demo's (`aa` base SVO; `bb` the same words verb-final with adjectives after
//! nouns; `cc` half its own words, a quarter of the data). Model: d=64, 2 layers, 4 heads,
//! FFN 256, language embeddings; adapters r=16 for the adapter methods.

mod common;

use common::arg;
use interference::grads::SECOND_ORDER_SWITCH;
use interference::model::MlmModel;
use interference::progress::Silent;
use interference::run::{complete_model_config, demo_config, prepare};
use interference::train::{Method, Trainer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let seeds: u64 = arg(&args, "--seeds").and_then(|s| s.parse().ok()).unwrap_or(3);
    let steps: usize = arg(&args, "--steps").and_then(|s| s.parse().ok()).unwrap_or(300);
    let methods = [Method::Joint, Method::Adapters, Method::Meta, Method::Pcgrad, Method::Gradvac];
    // losses[m][seed][lang]
    let mut losses: Vec<Vec<Vec<f64>>> = vec![Vec::new(); methods.len()];
    let mut langs = Vec::new();
    for seed in 0..seeds {
        let base = demo_config(steps, 0);
        let prepared = prepare(&base, &base.load_text().expect("text"), None).expect("data");
        langs = prepared.data.langs().as_slice().to_vec();
        for (m, &method) in methods.iter().enumerate() {
            let mut config = base.clone();
            config.train.method = method;
            config.train.seed = seed;
            config.model.adapter_bottleneck = if matches!(method, Method::Adapters | Method::Meta) { 16 } else { 0 };
            std::env::remove_var(SECOND_ORDER_SWITCH);
            let eval = std::thread::scope(|s| {
                s.spawn(|| {
                    let model_config =
                        complete_model_config(&config.model, prepared.data.vocab_size(), prepared.data.langs())
                            .expect("config");
                    let model = MlmModel::new(model_config, seed, candle_core::DType::F32, &candle_core::Device::Cpu)
                        .expect("model");
                    let mut trainer =
                        Trainer::new(model, prepared.data.clone(), config.train.clone()).expect("trainer");
                    trainer.train(&mut Silent).expect("training").pop().expect("evaluation")
                })
                .join()
                .expect("training thread")
            });
            let per_lang: Vec<f64> = eval.languages.iter().map(|e| e.loss).collect();
            if json {
                println!("{{\"bench\":\"methods\",\"method\":\"{}\",\"seed\":{seed},\"steps\":{steps},\"held_out_loss\":{per_lang:?}}}", method.name());
            } else {
                eprintln!("seed {seed} {:<9} {per_lang:.4?}", method.name());
            }
            losses[m].push(per_lang);
        }
    }
    if json {
        return;
    }
    let stats = |v: Vec<f64>| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        format!("{mean:.4} ± {sd:.4}")
    };
    print!("| method |");
    for l in &langs {
        print!(" {l} |");
    }
    println!(" mean |");
    println!("|---|{}---|", "---|".repeat(langs.len()));
    for (m, method) in methods.iter().enumerate() {
        print!("| {} |", method.name());
        for l in 0..langs.len() {
            print!(" {} |", stats(losses[m].iter().map(|s| s[l]).collect()));
        }
        println!(" {} |", stats(losses[m].iter().map(|s| s.iter().sum::<f64>() / s.len() as f64).collect()));
    }
}
