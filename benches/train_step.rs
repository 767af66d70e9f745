//! Training-step throughput and peak memory, beside the PyTorch twin.
//!
//! `cargo bench --bench train_step` prints a table; flags after `--`:
//! - `--json`: one JSON object per line (`shared/design/conventions.md`);
//! - `--vs-torch`: after each case, the PyTorch twin (`benches/torch/twin.py bench`, venv of
//!   `benches/torch/setup.sh`, or `--python PATH`) runs the same config and one line per pair
//!   gives both figures and the ratio ours/PyTorch in tokens/s;
//! - `--kernels fused|reference|both` (default `fused`), `--steps N`, `--device cpu|cuda`;
//! - `--precision fp32|bf16` (default `fp32`): bf16 mixed precision, ours and the twin's
//!   (`--dtype bf16`, `torch.autocast`);
//! - `--rounds N` (default 1): N alternating runs of the twin and ours per case; each side's
//!   median run is reported, their ratio, and the ratio of every round;
//! - `--cases 0,1,2` (default `0,1`): which configs run.
//!
//! Configs: (0) d=256, 4 layers, 4 heads, FFN 1024, vocab 8000, seq 128, batch 32, AdamW with
//! clipping; (1) the same with adapters (r=64, 2 languages); (2) d=768, 12 layers, 12 heads,
//! FFN 3072, vocab 32000, seq 256, batch 32 (for GPUs). Every measurement runs in
//! a fresh process (this binary re-runs itself with `--case`), so peak RSS is that run's own.

mod common;

use common::{arg, median_ms, peak_rss_mb, Case, BASE, SMALL};
use interference::device::parse_device;
use interference::kernels::{Kernels, Precision};
use interference::train::{Method, TrainConfig};
use serde_json::{json, Value};
use std::process::Command;

/// The cases `--cases` picks from (by index; default `0,1`): the size without and with
/// adapters, and the base size (GPU).
const CASES: [Case; 3] = [SMALL, Case { adapters: 64, ..SMALL }, BASE];

/// Runs case `index` with `kernels` and `precision` in this process and returns its JSON record.
fn measure(index: usize, kernels: Kernels, precision: Precision, steps: usize, device_name: &str) -> Value {
    let case = CASES[index];
    let device = parse_device(device_name).expect("--device cpu|cuda[:N]");
    let method = if case.adapters > 0 { Method::Adapters } else { Method::Joint };
    let mut trainer = case.trainer_with(&device, TrainConfig { method, kernels, precision, ..TrainConfig::default() });
    let ms = median_ms(steps, || {
        trainer.step().expect("step");
        device.synchronize().expect("synchronize");
    });
    json!({
        "bench": "train_step", "impl": "interference", "device": device_name, "kernels": kernels,
        "precision": precision,
        "config": case.json_value(),
        "tokens_per_s": round1((case.batch * case.seq) as f64 / (ms / 1000.0)),
        "ms_per_step": round1(ms), "peak_rss_mb": peak_rss_mb().round(),
        "threads": rayon::current_num_threads(),
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs one measurement in a child process (fresh memory), returning its JSON line.
fn in_child(program: &str, args: &[String]) -> Value {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{'));
    match (out.status.success(), line) {
        (true, Some(line)) => serde_json::from_str(line).expect("a JSON line"),
        _ => panic!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)),
    }
}

/// The twin's command line for case `index`.
fn twin_args(index: usize, steps: usize, device_name: &str, threads: usize, precision: &str) -> Vec<String> {
    let case = CASES[index];
    // The repository's copy when run from its root (a binary built elsewhere), else the build's.
    let here = "benches/torch/twin.py";
    let twin = if std::path::Path::new(here).exists() {
        here
    } else {
        concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch/twin.py")
    };
    let langs = if case.adapters > 0 { 2 } else { 1 };
    let flags = [
        ("--d", case.d),
        ("--layers", case.layers),
        ("--heads", case.heads),
        ("--ffn", case.ffn),
        ("--vocab", case.vocab),
        ("--seq", case.seq),
        ("--batch", case.batch),
        ("--adapters", case.adapters),
        ("--langs", langs),
        ("--steps", steps),
        ("--threads", threads),
    ];
    let dtype = if precision == "bf16" { "bf16" } else { "fp32" };
    let mut args = vec![twin.to_string(), "bench".into(), "--json".into(), "--device".into(), device_name.into()];
    args.extend(["--dtype".to_string(), dtype.to_string()]);
    for (flag, value) in flags {
        args.extend([flag.to_string(), value.to_string()]);
    }
    args
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args.iter().any(|a| a == "--json");
    let steps: usize = arg(&args, "--steps").and_then(|s| s.parse().ok()).unwrap_or(5);
    let device_name = arg(&args, "--device").unwrap_or_else(|| "cpu".into());
    let kernels: Vec<Kernels> = match arg(&args, "--kernels").as_deref() {
        None | Some("fused") => vec![Kernels::Fused],
        Some("reference") => vec![Kernels::Reference],
        Some("both") => vec![Kernels::Reference, Kernels::Fused],
        Some(other) => panic!("--kernels {other:?}: use fused, reference or both"),
    };
    let precision_name = arg(&args, "--precision").unwrap_or_else(|| "fp32".into());
    let precision: Precision = serde_json::from_value(json!(precision_name)).expect("--precision fp32|bf16");
    if let Some(index) = arg(&args, "--case") {
        let index: usize = index.parse().expect("--case N");
        println!("{}", measure(index, kernels[0], precision, steps, &device_name));
        return;
    }
    let python = arg(&args, "--python")
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/target/torch-venv/bin/python").to_string());
    let vs_torch = args.iter().any(|a| a == "--vs-torch");
    if vs_torch && !std::path::Path::new(&python).exists() {
        eprintln!("no PyTorch at {python}: run `bash benches/torch/setup.sh` or pass --python PATH");
        std::process::exit(2);
    }
    let me = std::env::current_exe().expect("own path").to_string_lossy().into_owned();
    if !json_out {
        println!(
            "{:<24} {:>9} {:>10} {:>11} {:>9} {:>14} {:>8}",
            "config", "kernels", "ms/step", "tokens/s", "RSS MB", "PyTorch ms", "ratio"
        );
    }
    let rounds: usize = arg(&args, "--rounds").and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let threads = rayon::current_num_threads();
    let cases: Vec<usize> = arg(&args, "--cases")
        .unwrap_or_else(|| "0,1".into())
        .split(',')
        .map(|i| {
            i.trim().parse().ok().filter(|&i| i < CASES.len()).expect("--cases: indices 0, 1 or 2, comma-separated")
        })
        .collect();
    for (index, case) in cases.into_iter().map(|i| (i, &CASES[i])) {
        let child_args = |k: Kernels| -> Vec<String> {
            let kernels = serde_json::to_value(k).expect("kernels").as_str().expect("a name").to_string();
            let steps = steps.to_string();
            let args = ["--case", &index.to_string(), "--kernels", &kernels, "--steps", &steps];
            let device = ["--device", device_name.as_str(), "--precision", precision_name.as_str()];
            args.iter().chain(&device).map(|s| s.to_string()).collect()
        };
        // Rounds alternate the twin and ours, so that a slow spell of a shared machine hits both.
        let (mut twins, mut ours) = (Vec::new(), vec![Vec::new(); kernels.len()]);
        for _ in 0..rounds {
            if vs_torch {
                twins.push(in_child(&python, &twin_args(index, steps, &device_name, threads, &precision_name)));
            }
            for (runs, &k) in ours.iter_mut().zip(&kernels) {
                runs.push(in_child(&me, &child_args(k)));
            }
        }
        let twin = (!twins.is_empty()).then(|| median_run(&twins));
        for (runs, &k) in ours.iter().zip(&kernels) {
            let ours = median_run(runs);
            let tokens = |r: &Value| r["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
            let ratio = twin.as_ref().map(|t| round3(tokens(&ours) / tokens(t)));
            let per_round: Vec<f64> = runs.iter().zip(&twins).map(|(o, t)| round3(tokens(o) / tokens(t))).collect();
            if json_out {
                match (&twin, ratio) {
                    (Some(t), Some(r)) => println!(
                        "{}",
                        json!({"bench": "train_step_vs_pytorch", "device": device_name, "config": case.json_value(),
                               "kernels": k, "precision": precision, "rounds": rounds, "ours": ours, "pytorch": t,
                               "ratio": r, "ratio_per_round": per_round})
                    ),
                    _ => println!("{ours}"),
                }
            } else {
                let torch_ms = twin.as_ref().map_or("-".into(), |t| format!("{}", t["ms_per_step"]));
                let ratio = ratio.map_or("-".into(), |r| format!("{r:.3}"));
                println!(
                    "{:<24} {:>9} {:>10} {:>11} {:>9} {:>14} {:>8}",
                    case.label(),
                    format!("{k:?}").to_lowercase(),
                    ours["ms_per_step"].to_string(),
                    ours["tokens_per_s"].to_string(),
                    ours["peak_rss_mb"].to_string(),
                    torch_ms,
                    ratio
                );
            }
        }
    }
}

/// The run with the median step time of `runs` (the lower middle one of an even count).
fn median_run(runs: &[Value]) -> Value {
    let mut sorted: Vec<&Value> = runs.iter().collect();
    sorted.sort_by(|a, b| a["ms_per_step"].as_f64().partial_cmp(&b["ms_per_step"].as_f64()).expect("step times"));
    sorted[(sorted.len() - 1) / 2].clone()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
