//! Pieces shared by the bench binaries: model sizes, random data, timing and memory.

// Each bench binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use candle_core::Device;
use interference::model::{MlmModel, ModelConfig};
use interference::rng::{stream, Purpose};
use interference::tokenize::SpecialIds;
use interference::train::{Method, MlmData, TrainConfig, Trainer};
use interference::LangSet;
use rand::Rng;
use std::time::Instant;

/// One benchmarked model size.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub d: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub seq: usize,
    pub batch: usize,
    /// Adapter bottleneck (0: none); adapters come with 2 languages.
    pub adapters: usize,
}

/// The reference size: d=256, 4 layers, 4 heads, FFN 1024, vocab 8000, seq 128, batch 32.
pub const SMALL: Case = Case { d: 256, layers: 4, heads: 4, ffn: 1024, vocab: 8000, seq: 128, batch: 32, adapters: 0 };

/// A base-sized model: d=768, 12 layers, 12 heads, FFN 3072, vocab 32000, seq 256, batch 32.
pub const BASE: Case =
    Case { d: 768, layers: 12, heads: 12, ffn: 3072, vocab: 32000, seq: 256, batch: 32, adapters: 0 };

impl Case {
    /// The JSON `config` object of conventions.md.
    pub fn json(&self) -> String {
        format!(
            "{{\"d\":{},\"layers\":{},\"heads\":{},\"seq\":{},\"batch\":{},\"adapters\":{}}}",
            self.d, self.layers, self.heads, self.seq, self.batch, self.adapters
        )
    }

    /// The `config` object of conventions.md as a JSON value.
    pub fn json_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.json()).expect("valid JSON")
    }

    /// A short label for tables.
    pub fn label(&self) -> String {
        format!("d{} L{} h{} seq{} b{} r{}", self.d, self.layers, self.heads, self.seq, self.batch, self.adapters)
    }

    /// The languages: one, or two when the case has adapters.
    pub fn langs(&self) -> LangSet {
        LangSet::parse(if self.adapters > 0 { &["aa", "bb"] } else { &["aa"] }).expect("valid codes")
    }

    /// The model config of this size.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            vocab_size: self.vocab,
            d_model: self.d,
            layers: self.layers,
            heads: self.heads,
            d_ff: self.ffn,
            max_len: self.seq,
            dropout: 0.1,
            lang_embeddings: false,
            adapter_bottleneck: self.adapters,
            languages: self.langs(),
            ln_eps: 1e-12,
        }
    }

    /// A trainer of this size on random sentences, on `device` (joint, or adapters).
    pub fn trainer(&self, device: &Device) -> Trainer {
        let method = if self.adapters > 0 { Method::Adapters } else { Method::Joint };
        self.trainer_with(device, TrainConfig { method, ..TrainConfig::default() })
    }

    /// A trainer of this size with `config`'s method and settings (steps, batch size and
    /// sequence length taken from the case).
    pub fn trainer_with(&self, device: &Device, config: TrainConfig) -> Trainer {
        let model = MlmModel::new(self.model_config(), 0, candle_core::DType::F32, device).expect("model");
        let train = TrainConfig { steps: 1_000_000, batch_size: self.batch, seq_len: self.seq, ..config };
        Trainer::new(model, random_data(self.vocab, &self.langs()), train).expect("trainer")
    }
}

/// 2000 random sentences of 8 to 40 regular ids per language, for training and held out.
pub fn random_data(vocab: usize, langs: &LangSet) -> MlmData {
    let specials = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };
    let mut rng = stream(1, Purpose::Init, 99);
    let mut sentences = || -> Vec<Vec<u32>> {
        (0..2000).map(|_| (0..rng.random_range(8..40)).map(|_| rng.random_range(5..vocab as u32)).collect()).collect()
    };
    let train = langs.iter().map(|_| sentences()).collect();
    let valid = langs.iter().map(|_| sentences()).collect();
    MlmData::from_ids(langs.clone(), train, valid, specials, vocab).expect("valid random data")
}

/// Median milliseconds of `runs` calls of `f`, after one warm-up call.
pub fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The value after `flag` on the command line, if any.
pub fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}
