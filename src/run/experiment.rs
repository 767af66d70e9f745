//! The interference experiment: a grid of language sets, methods and seeds; each model is
//! pretrained, fine-tuned on every task and language it knows, and scored within-language and
//! zero-shot; interference Δ = multilingual − monolingual per language and task, with a 95%
//! interval over seeds. Finished runs are kept in the output folder and not redone.

use super::config::{LanguageSource, RunConfig, TokenizerSource};
use super::pipeline::{complete_model_config, prepare};
use crate::error::{Error, Result};
use crate::io::{read_json, write_json_atomic};
use crate::lang::Lang;
use crate::model::{MlmModel, ModelConfig};
use crate::progress::Progress;
use crate::task::{finetune, FineTuneConfig, LabelSet, RawTask, TaskKind, TaskSet};
use crate::train::{Method, TrainConfig, Trainer};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One downstream task of the grid: files per language.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// A name for tables (`pos`, `ner`, …).
    pub name: String,
    /// The kind of task, which fixes the file format and the metric.
    pub kind: TaskKind,
    /// Training file per language (languages without one are only tested, zero-shot).
    pub train: BTreeMap<Lang, PathBuf>,
    /// Test file per language.
    pub test: BTreeMap<Lang, PathBuf>,
}

/// The experiment grid (`interference experiment GRID.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentGrid {
    /// Pretraining text of every language.
    pub languages: Vec<LanguageSource>,
    /// Downstream tasks.
    pub tasks: Vec<TaskSpec>,
    /// Language sets to pretrain on; empty means each language alone and all together.
    #[serde(default)]
    pub models: Vec<Vec<Lang>>,
    /// Training methods (adapter methods use `model.adapter_bottleneck`, the others none).
    #[serde(default = "default_methods")]
    pub methods: Vec<Method>,
    /// Seeds; every (language set, method) is run once per seed.
    pub seeds: Vec<u64>,
    /// The shared tokenizer (trained once on all languages).
    #[serde(default)]
    pub tokenizer: TokenizerSource,
    /// Model shape.
    pub model: ModelConfig,
    /// Pretraining settings (method and seed are set per run).
    #[serde(default)]
    pub train: TrainConfig,
    /// Held-out sentences per language for MLM evaluation.
    #[serde(default = "default_held_out")]
    pub held_out: usize,
    /// Fine-tuning settings (seed set per run).
    #[serde(default)]
    pub finetune: FineTuneConfig,
}

fn default_methods() -> Vec<Method> {
    vec![Method::Joint]
}

fn default_held_out() -> usize {
    200
}

/// One score of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunScore {
    /// Task name.
    pub task: String,
    /// Pretraining method.
    pub method: Method,
    /// The pretraining languages.
    pub model: Vec<Lang>,
    /// Seed of pretraining and fine-tuning.
    pub seed: u64,
    /// Fine-tuning language.
    pub train_lang: Lang,
    /// Test language (zero-shot when it differs from `train_lang`).
    pub test_lang: Lang,
    /// Metric name.
    pub metric: String,
    /// Metric value.
    pub value: f64,
}

/// Interference on one language and task: multilingual − monolingual, paired by seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterferenceCell {
    /// Task name.
    pub task: String,
    /// Pretraining method.
    pub method: Method,
    /// The language, fine-tuned and tested on itself.
    pub lang: Lang,
    /// The multilingual model's languages.
    pub multi: Vec<Lang>,
    /// Mean score of the monolingual model.
    pub mono_mean: f64,
    /// Mean score of the multilingual model.
    pub multi_mean: f64,
    /// Mean of the per-seed Δ = multi − mono.
    pub delta_mean: f64,
    /// Half-width of the 95% interval of Δ (Student t over seeds; 0 with one seed).
    pub delta_ci95: f64,
    /// Seeds paired.
    pub seeds: usize,
}

/// What `experiment` writes to `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExperimentResults {
    /// The grid.
    pub grid: ExperimentGrid,
    /// Every score of every run.
    pub scores: Vec<RunScore>,
    /// Interference per task, method and language.
    pub interference: Vec<InterferenceCell>,
}

impl ExperimentGrid {
    /// Reads a grid file; relative paths inside it are resolved against its folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut grid: ExperimentGrid = read_json(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for source in &mut grid.languages {
            source.train.iter_mut().chain(source.valid.iter_mut()).for_each(resolve);
        }
        for task in &mut grid.tasks {
            task.train.values_mut().chain(task.test.values_mut()).for_each(resolve);
        }
        if let TokenizerSource::Path(p) = &mut grid.tokenizer {
            resolve(p);
        }
        Ok(grid)
    }

    /// The language sets to pretrain on.
    pub fn language_sets(&self) -> Vec<Vec<Lang>> {
        if !self.models.is_empty() {
            return self.models.clone();
        }
        let all: Vec<Lang> = self.languages.iter().map(|l| l.code.clone()).collect();
        let mut sets: Vec<Vec<Lang>> = all.iter().map(|l| vec![l.clone()]).collect();
        if all.len() > 1 {
            sets.push(all);
        }
        sets
    }

    /// A short hash of everything that shapes a run except seeds, methods and language sets.
    fn fingerprint(&self) -> Result<String> {
        let shaping = ExperimentGrid { seeds: Vec::new(), methods: Vec::new(), models: Vec::new(), ..self.clone() };
        let json =
            serde_json::to_string(&shaping).map_err(|e| Error::Config(format!("cannot fingerprint the grid: {e}")))?;
        // FNV-1a: stable across platforms and releases, unlike std's hasher.
        let hash =
            json.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        Ok(format!("{hash:016x}"))
    }

    fn run_config(&self) -> RunConfig {
        RunConfig {
            languages: self.languages.clone(),
            tokenizer: self.tokenizer.clone(),
            model: self.model.clone(),
            train: self.train.clone(),
            held_out: self.held_out,
        }
    }
}

/// Runs (or resumes) the grid in folder `out`: `runs/{fingerprint}/{id}.json` per finished run,
/// `tokenizer.json`, and `results.json`. `progress(label)` reports each pretraining.
pub fn run_experiment(
    grid: &ExperimentGrid,
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(&str) -> Box<dyn Progress>,
) -> Result<ExperimentResults> {
    if grid.seeds.is_empty() || grid.methods.is_empty() || grid.tasks.is_empty() {
        return Err(Error::Config("the grid needs at least one seed, method and task".into()));
    }
    let known: Vec<&Lang> = grid.languages.iter().map(|l| &l.code).collect();
    for task in &grid.tasks {
        if let Some(lang) = task.train.keys().chain(task.test.keys()).find(|l| !known.contains(l)) {
            return Err(Error::UnknownLanguage {
                code: lang.to_string(),
                known: format!("the grid's languages (task {})", task.name),
            });
        }
    }
    for set in grid.language_sets() {
        if let Some(lang) = set.iter().find(|l| !known.contains(l)) {
            return Err(Error::UnknownLanguage {
                code: lang.to_string(),
                known: "the grid's languages (models)".into(),
            });
        }
    }
    // Finished runs are kept per fingerprint of the settings that shape them, so a changed
    // grid never reuses stale runs; seeds, methods and language sets only add runs.
    let runs = out.join("runs").join(grid.fingerprint()?);
    std::fs::create_dir_all(&runs).map_err(|e| Error::io(&runs, e))?;
    let config = grid.run_config();
    let prepared = prepare(&config, &config.load_text()?, None)?;
    prepared.tokenizer.save(&out.join(super::pipeline::TOKENIZER_FILE))?;
    let tasks = load_tasks(grid, &prepared.tokenizer)?;
    let mut scores = Vec::new();
    for seed in &grid.seeds {
        for method in &grid.methods {
            for langs in grid.language_sets() {
                let id = format!(
                    "{}-{}-s{seed}",
                    method.name(),
                    langs.iter().map(Lang::as_str).collect::<Vec<_>>().join("+")
                );
                let path = runs.join(format!("{id}.json"));
                let run_scores: Vec<RunScore> = if path.exists() {
                    read_json(&path)?
                } else {
                    let s =
                        run_one(grid, &prepared.data, &tasks, &langs, *method, *seed, device, progress(&id).as_mut())?;
                    write_json_atomic(&path, &s)?;
                    s
                };
                scores.extend(run_scores);
            }
        }
    }
    let results = ExperimentResults { grid: grid.clone(), interference: interference(&scores), scores };
    write_json_atomic(&out.join(super::pipeline::RESULTS_FILE), &results)?;
    Ok(results)
}

/// A task's label set and its encoded train and test sets per language.
struct LoadedTask {
    spec: TaskSpec,
    labels: LabelSet,
    train: BTreeMap<Lang, TaskSet>,
    test: BTreeMap<Lang, TaskSet>,
}

fn load_tasks(grid: &ExperimentGrid, tokenizer: &crate::tokenize::SharedTokenizer) -> Result<Vec<LoadedTask>> {
    grid.tasks
        .iter()
        .map(|spec| {
            let read = |files: &BTreeMap<Lang, PathBuf>| -> Result<BTreeMap<Lang, RawTask>> {
                files.iter().map(|(l, p)| Ok((l.clone(), RawTask::read(spec.kind, p)?))).collect()
            };
            let (train_raw, test_raw) = (read(&spec.train)?, read(&spec.test)?);
            let labels = LabelSet::from_labels(train_raw.values().flat_map(RawTask::labels))?;
            let encode = |raw: BTreeMap<Lang, RawTask>| -> Result<BTreeMap<Lang, TaskSet>> {
                raw.into_iter()
                    .map(|(l, r)| {
                        let set = TaskSet::encode(spec.kind, l.clone(), &r, tokenizer, &labels, grid.finetune.max_len)?;
                        Ok((l, set))
                    })
                    .collect()
            };
            Ok(LoadedTask { spec: spec.clone(), train: encode(train_raw)?, test: encode(test_raw)?, labels })
        })
        .collect()
}

/// Pretrains one model and scores it on every task, within-language and zero-shot.
#[allow(clippy::too_many_arguments)]
fn run_one(
    grid: &ExperimentGrid,
    data: &crate::train::MlmData,
    tasks: &[LoadedTask],
    langs: &[Lang],
    method: Method,
    seed: u64,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Vec<RunScore>> {
    let data = data.subset(langs)?;
    let adapters = matches!(method, Method::Adapters | Method::Meta);
    let shape = ModelConfig {
        adapter_bottleneck: if adapters { grid.model.adapter_bottleneck } else { 0 },
        ..grid.model.clone()
    };
    let model_config = complete_model_config(&shape, data.vocab_size(), data.langs())?;
    let model = MlmModel::new(model_config, seed, DType::F32, device)?;
    let mut trainer = Trainer::new(model, data, TrainConfig { method, seed, ..grid.train.clone() })?;
    trainer.train(progress)?;
    let mut scores = Vec::new();
    for task in tasks {
        for (train_lang, train_set) in task.train.iter().filter(|(l, _)| langs.contains(l)) {
            let tuned =
                finetune(trainer.model(), train_set, &task.labels, &FineTuneConfig { seed, ..grid.finetune.clone() })?;
            for (test_lang, test_set) in task.test.iter().filter(|(l, _)| langs.contains(l)) {
                let score = tuned.evaluate(test_set)?;
                scores.push(RunScore {
                    task: task.spec.name.clone(),
                    method,
                    model: langs.to_vec(),
                    seed,
                    train_lang: train_lang.clone(),
                    test_lang: test_lang.clone(),
                    metric: score.metric,
                    value: score.value,
                });
            }
        }
    }
    Ok(scores)
}

/// Two-sided 95% Student t critical value for `df` degrees of freedom.
fn t95(df: usize) -> f64 {
    const TABLE: [f64; 10] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];
    match df {
        0 => 0.0,
        1..=10 => TABLE[df - 1],
        11..=20 => 2.086,
        21..=30 => 2.042,
        _ => 1.96,
    }
}

/// Pairs each language's monolingual and largest multilingual model by seed.
fn interference(scores: &[RunScore]) -> Vec<InterferenceCell> {
    let within: Vec<&RunScore> = scores.iter().filter(|s| s.train_lang == s.test_lang).collect();
    let mut cells = Vec::new();
    let mut keys: Vec<(String, Method, Lang)> =
        within.iter().map(|s| (s.task.clone(), s.method, s.test_lang.clone())).collect();
    keys.sort_by(|a, b| (&a.0, a.1.name(), &a.2).cmp(&(&b.0, b.1.name(), &b.2)));
    keys.dedup();
    for (task, method, lang) in keys {
        let of = |pred: &dyn Fn(&RunScore) -> bool| -> BTreeMap<u64, f64> {
            within
                .iter()
                .filter(|s| s.task == task && s.method == method && s.test_lang == lang && pred(s))
                .map(|s| (s.seed, s.value))
                .collect()
        };
        let multi_set = within
            .iter()
            .filter(|s| s.task == task && s.method == method && s.test_lang == lang && s.model.len() > 1)
            .map(|s| s.model.clone())
            .max_by_key(Vec::len);
        let Some(multi_set) = multi_set else { continue };
        let mono = of(&|s| s.model.len() == 1);
        let multi = of(&|s| s.model == multi_set);
        let deltas: Vec<f64> = mono.iter().filter_map(|(seed, m)| multi.get(seed).map(|x| x - m)).collect();
        if deltas.is_empty() {
            continue;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let n = deltas.len();
        let d_mean = mean(&deltas);
        let sd = if n > 1 {
            (deltas.iter().map(|d| (d - d_mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        cells.push(InterferenceCell {
            task,
            method,
            lang,
            multi: multi_set,
            mono_mean: mean(&mono.values().copied().collect::<Vec<_>>()),
            multi_mean: mean(&multi.values().copied().collect::<Vec<_>>()),
            delta_mean: d_mean,
            delta_ci95: t95(n - 1) * sd / (n as f64).sqrt(),
            seeds: n,
        });
    }
    cells
}
