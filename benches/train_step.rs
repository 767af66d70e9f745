//! Training-step throughput and peak memory.
//!
//! `cargo bench --bench train_step` prints a table; `-- --json` prints one JSON object per
//! line (`shared/design/conventions.md`); `-- --steps N` sets the timed steps and
//! `-- --device cuda` the device. Config: d=256, 4 layers, 4 heads, FFN 1024, vocab 8000,
//! seq 128, batch 32, AdamW with clipping; without adapters and with adapters (r=64, 2 languages).

mod common;

use common::{arg, median_ms, peak_rss_mb, Case, SMALL};
use interference::device::parse_device;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let steps: usize = arg(&args, "--steps").and_then(|s| s.parse().ok()).unwrap_or(5);
    let device_name = arg(&args, "--device").unwrap_or_else(|| "cpu".into());
    let device = parse_device(&device_name).expect("--device cpu|cuda[:N]");
    if !json {
        println!("{:<32} {:>10} {:>12} {:>12}", "config", "ms/step", "tokens/s", "peak RSS MB");
    }
    for case in [SMALL, Case { adapters: 64, ..SMALL }] {
        let mut trainer = case.trainer(&device);
        let ms = median_ms(steps, || {
            trainer.step().expect("step");
        });
        let tokens_per_s = (case.batch * case.seq) as f64 / (ms / 1000.0);
        let rss = peak_rss_mb();
        if json {
            println!(
                "{{\"bench\":\"train_step\",\"device\":\"{device_name}\",\"config\":{},\"tokens_per_s\":{tokens_per_s:.1},\"ms_per_step\":{ms:.1},\"peak_rss_mb\":{rss:.0}}}",
                case.json()
            );
        } else {
            println!("{:<32} {ms:>10.1} {tokens_per_s:>12.1} {rss:>12.0}", case.label());
        }
    }
}
