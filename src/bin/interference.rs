//! The `interference` command line: a thin shell over the library.

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
use interference::batch::MlmBatchJson;
use interference::device::{default_device, parse_device, set_tf32};
use interference::grads::mlm_gradients;
use interference::io::{read_json, write_json_atomic};
use interference::model::{save_tensors, MlmModel};
use interference::probe::{GroupKind, MaskLearningConfig, OverlapReport, ProbeBatchConfig, SimilarityReport};
use interference::progress::{Bar, Progress};
use interference::run::{
    demo_config, eval_run, probe_run, run_experiment, run_interference, train_run, ExperimentGrid, ProbeOptions,
    RunConfig, RUN_CONFIG_FILE,
};
use interference::tokenize::SharedTokenizer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A lab for negative interference in multilingual language models.
#[derive(Parser)]
#[command(name = "interference", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The built-in default: synthetic languages trained alone and together; prints the
    /// per-language interference table and writes it as JSON.
    Demo {
        /// Training steps of every model.
        #[arg(long, default_value_t = 400)]
        steps: usize,
        /// Seed of the languages, the models and the batches.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the results JSON.
        #[arg(long, default_value = "runs/demo/results.json")]
        out: PathBuf,
        /// cpu, cuda or cuda:N (default: CUDA if built with it and present).
        #[arg(long)]
        device: Option<String>,
        /// Let CUDA f32 matrix products use TF32 tensor cores.
        #[arg(long)]
        tf32: bool,
    },
    /// Trains (or resumes) a model from a JSON run config.
    Train {
        /// The run config (languages, tokenizer, model, train).
        #[arg(long)]
        config: PathBuf,
        /// Output folder (tokenizer, checkpoint, results); default runs/<config name>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overrides the config's train.seed.
        #[arg(long)]
        seed: Option<u64>,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        device: Option<String>,
        /// Let CUDA f32 matrix products use TF32 tensor cores.
        #[arg(long)]
        tf32: bool,
    },
    /// Scores a trained run on held-out text: loss, perplexity, accuracy per language.
    Eval {
        /// The run folder written by `train`.
        #[arg(long)]
        run: PathBuf,
        /// A run config naming the languages and text to score (default: the run's own).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write the scores JSON (default <run>/eval.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        device: Option<String>,
    },
    /// Probes a trained run: cosines between languages' gradients per layer and matrix.
    Probe {
        /// The run folder written by `train`.
        #[arg(long)]
        run: PathBuf,
        /// A run config naming the languages and text to probe (default: the run's own).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write the probe JSON (default <run>/probe.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Probe batches per language (results are averaged over them).
        #[arg(long, default_value_t = 4)]
        batches: usize,
        /// Sequences per probe batch.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 64)]
        seq_len: usize,
        /// Seed of the probe batches.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also the overlap of per-language Fisher-importance masks (layers' matrices).
        #[arg(long)]
        fisher: bool,
        /// Also the overlap of per-language learned pruning masks (straight-through estimator).
        #[arg(long)]
        masks: bool,
        /// Keep shares of the masks, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![0.1, 0.3, 0.5])]
        keeps: Vec<f64>,
        /// Optimisation steps of each learned mask.
        #[arg(long, default_value_t = 100)]
        mask_steps: usize,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        device: Option<String>,
    },
    /// Runs an interference experiment grid: pretrain each language alone and together,
    /// fine-tune and test every task within-language and zero-shot, and tabulate
    /// Δ = multilingual − monolingual with a 95% interval over seeds. Resumable.
    Experiment {
        /// The grid (languages, tasks, models, methods, seeds, model, train, finetune).
        grid: PathBuf,
        /// Output folder (default runs/<grid name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        device: Option<String>,
    },
    /// Writes the loss and every parameter's gradient for one MLM batch (dropout off).
    Grads {
        /// Weights (safetensors with the config in its metadata).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The batch: {"tokens": [[…]], "lang": "en", "positions": [[r, c]], "targets": […]}.
        #[arg(long)]
        batch: PathBuf,
        /// The gradients file (safetensors, loss in the metadata key "loss").
        #[arg(long)]
        out: PathBuf,
        /// A tokenizer.json whose [PAD] id marks padding (default: the checkpoint's run folder's, else id 0).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        device: Option<String>,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn device(spec: &Option<String>) -> Result<candle_core::Device> {
    Ok(match spec {
        Some(s) => parse_device(s)?,
        None => default_device(),
    })
}

fn bar(label: &str) -> Box<dyn Progress> {
    Box::new(Bar::new(label))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { steps, seed, out, device: d, tf32 } => {
            set_tf32(tf32);
            let device = device(&d)?;
            let config = demo_config(steps, seed);
            let results = run_interference(&config, &device, &mut bar)?;
            println!("{results}");
            ensure_parent(&out)?;
            write_json_atomic(&out, &results)?;
            println!("results written to {}", out.display());
        }
        Command::Train { config, out, seed, device: d, tf32 } => {
            set_tf32(tf32);
            let device = device(&d)?;
            let mut run_config = RunConfig::from_file(&config)?;
            if let Some(seed) = seed {
                run_config.train.seed = seed;
            }
            let out = out.unwrap_or_else(|| Path::new("runs").join(config.file_stem().unwrap_or_default()));
            let results = train_run(&run_config, &out, &device, &mut Bar::new("train"))?;
            if let Some(last) = results.evals.last() {
                print_eval(last);
            }
            println!("run written to {}", out.display());
        }
        Command::Eval { run, config, out, device: d } => {
            let device = device(&d)?;
            let config = RunConfig::from_file(&config.unwrap_or_else(|| run.join(RUN_CONFIG_FILE)))?;
            let report = eval_run(&config, &run, &device)?;
            print_eval(&report);
            let out = out.unwrap_or_else(|| run.join("eval.json"));
            write_json_atomic(&out, &report)?;
            println!("scores written to {}", out.display());
        }
        Command::Probe {
            run,
            config,
            out,
            batches,
            batch_size,
            seq_len,
            seed,
            fisher,
            masks,
            keeps,
            mask_steps,
            device: d,
        } => {
            let device = device(&d)?;
            let config = RunConfig::from_file(&config.unwrap_or_else(|| run.join(RUN_CONFIG_FILE)))?;
            let options = ProbeOptions {
                batches: ProbeBatchConfig { batches, batch_size, seq_len, seed, held_out: true },
                fisher_keeps: fisher.then(|| keeps.clone()),
                masks: masks.then(|| MaskLearningConfig {
                    keeps: keeps.clone(),
                    steps: mask_steps,
                    ..Default::default()
                }),
            };
            let results = probe_run(&config, &run, &device, &options)?;
            print_similarity(&results.similarity);
            for report in results.fisher.iter().chain(&results.masks) {
                print_overlap(report);
            }
            let out = out.unwrap_or_else(|| run.join("probe.json"));
            write_json_atomic(&out, &results)?;
            println!("probe written to {}", out.display());
        }
        Command::Experiment { grid, out, device: d } => {
            let device = device(&d)?;
            let parsed = ExperimentGrid::from_file(&grid)?;
            let out = out.unwrap_or_else(|| Path::new("runs").join(grid.file_stem().unwrap_or_default()));
            let results = run_experiment(&parsed, &out, &device, &mut bar)?;
            println!(
                "{:<8} {:<9} {:<6} {:>10} {:>10} {:>18} {:>6}",
                "task", "method", "lang", "mono", "multi", "Δ (95% CI)", "seeds"
            );
            for c in &results.interference {
                println!(
                    "{:<8} {:<9} {:<6} {:>10.4} {:>10.4} {:>18} {:>6}",
                    c.task,
                    c.method.name(),
                    c.lang.as_str(),
                    c.mono_mean,
                    c.multi_mean,
                    format!("{:+.4} ± {:.4}", c.delta_mean, c.delta_ci95),
                    c.seeds
                );
            }
            println!("results written to {}", out.join(interference::run::RESULTS_FILE).display());
        }
        Command::Grads { checkpoint, batch, out, tokenizer, device: d } => {
            let device = device(&d)?;
            let model = MlmModel::load(&checkpoint, candle_core::DType::F32, &device)?;
            let pad = pad_id(&checkpoint, tokenizer.as_deref())?;
            let json: MlmBatchJson = read_json(&batch)?;
            let batch =
                json.into_batch(model.config().vocab_size, pad).map_err(|e| anyhow!("{}: {e}", batch.display()))?;
            let g = mlm_gradients(&model, &batch)?;
            let named: Vec<(String, candle_core::Tensor)> =
                model.registry().infos().iter().map(|i| i.name.clone()).zip(g.grads).collect();
            save_tensors(&out, &named, HashMap::from([("loss".to_string(), g.loss.to_string())]))?;
            println!("loss {:.6}; gradients of {} parameters written to {}", g.loss, named.len(), out.display());
        }
    }
    Ok(())
}

/// The padding id: from `--tokenizer`, else a `tokenizer.json` in the checkpoint's folder or
/// its parent (a run folder), else 0.
fn pad_id(checkpoint: &Path, tokenizer: Option<&Path>) -> Result<u32> {
    let candidates: Vec<PathBuf> = match tokenizer {
        Some(t) => vec![t.to_path_buf()],
        None => {
            checkpoint.ancestors().skip(1).take(2).map(|d| d.join("tokenizer.json")).filter(|p| p.exists()).collect()
        }
    };
    match candidates.first() {
        Some(path) => Ok(SharedTokenizer::load(path)?.specials().pad),
        None => Ok(0),
    }
}

fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(())
}

fn print_eval(report: &interference::train::EvalReport) {
    println!("{:<8} {:>9} {:>11} {:>9} {:>8}", "lang", "loss", "perplexity", "accuracy", "masked");
    for e in &report.languages {
        println!(
            "{:<8} {:>9.4} {:>11.2} {:>9.3} {:>8}",
            e.lang.as_str(),
            e.loss,
            e.perplexity,
            e.accuracy,
            e.masked_tokens
        );
    }
}

/// Mean cosine of every language pair on the whole model and on each layer.
fn print_similarity(report: &SimilarityReport) {
    let n = report.langs.len();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect();
    print!("{:<12}", "group");
    for &(i, j) in &pairs {
        print!(" {:>12}", format!("{}-{}", report.langs[i], report.langs[j]));
    }
    println!();
    for g in report.groups.iter().filter(|g| !matches!(g.kind, GroupKind::Matrix(_))) {
        print!("{:<12}", g.name);
        for &(i, j) in &pairs {
            print!(" {:>12}", format!("{:+.3}±{:.3}", g.cosine[i][j], g.cosine_std[i][j]));
        }
        println!();
    }
}

/// Per layer and keep share: mean cross-language Jaccard against the same-language and random
/// baselines.
fn print_overlap(report: &OverlapReport) {
    println!("{} masks: mean Jaccard between languages vs same language (other seed/half) vs random", report.method);
    for layer in &report.layers {
        println!(
            "  keep {:.2} {:<12} {:.3}  vs {:.3}  vs {:.3}",
            layer.keep,
            interference::probe::slot_name(layer.slot),
            layer.mean_pair_jaccard(),
            layer.same_language_baseline,
            layer.random_baseline
        );
    }
}
