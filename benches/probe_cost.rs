//! Cost of a gradient-similarity probe of L = 2, 4, 8 languages relative to one backward pass
//! (forward + backward of one language's batch). Target: at most L + 0.2.
//!
//! `cargo bench --bench probe_cost [-- --json] [-- --runs N] [-- --device cuda]`.
//! Model: d=256, 4 layers, 4 heads, FFN 1024, vocab 8000; probe batches of 8 × 128 tokens.

mod common;

use common::{arg, median_ms, random_data, SMALL};
use interference::device::parse_device;
use interference::grads::mlm_gradients;
use interference::model::{MlmModel, ModelConfig};
use interference::probe::{GradientProbe, ProbeBatchConfig, ProbeBatches};
use interference::LangSet;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let runs: usize = arg(&args, "--runs").and_then(|s| s.parse().ok()).unwrap_or(3);
    let device_name = arg(&args, "--device").unwrap_or_else(|| "cpu".into());
    let device = parse_device(&device_name).expect("--device cpu|cuda[:N]");
    if !json {
        println!("{:>5} {:>14} {:>14} {:>18} {:>8}", "langs", "backward ms", "probe ms", "ratio to backward", "target");
    }
    for l in [2usize, 4, 8] {
        let codes: Vec<String> = (0..l).map(|i| format!("l{i}")).collect();
        let langs = LangSet::parse(&codes.iter().map(String::as_str).collect::<Vec<_>>()).expect("codes");
        let config = ModelConfig { languages: langs.clone(), dropout: 0.0, ..SMALL.model_config() };
        let model = MlmModel::new(config, 0, candle_core::DType::F32, &device).expect("model");
        let data = random_data(SMALL.vocab, &langs);
        let batches = ProbeBatches::new(
            &data,
            &ProbeBatchConfig { batches: 1, batch_size: 8, seq_len: SMALL.seq, ..Default::default() },
        )
        .expect("batches");
        let probe = GradientProbe::new(&model, batches.clone()).expect("probe");
        let sync = || device.synchronize().expect("synchronize");
        let backward = median_ms(runs, || {
            mlm_gradients(&model, &batches.of(0)[0]).expect("gradients");
            sync();
        });
        let probing = median_ms(runs, || {
            probe.run(&model, 0).expect("probe");
        });
        let ratio = probing / backward;
        if json {
            println!("{{\"bench\":\"probe_cost\",\"device\":\"{device_name}\",\"langs\":{l},\"backward_ms\":{backward:.1},\"probe_ms\":{probing:.1},\"ratio_to_backward\":{ratio:.3}}}");
        } else {
            println!("{l:>5} {backward:>14.1} {probing:>14.1} {ratio:>18.3} {:>8.1}", l as f64 + 0.2);
        }
    }
}
