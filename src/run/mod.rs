//! Whole jobs built from the library's parts: a training run from a JSON config, and the
//! built-in interference demo (monolingual vs joint on synthetic languages).

mod config;
mod demo;
mod experiment;
mod pipeline;
mod probe;

pub use config::{LanguageSource, LanguageText, RunConfig, TokenizerSource};
pub use demo::{demo_config, run_interference, DemoResults, InterferenceRow};
pub use experiment::{run_experiment, ExperimentGrid, ExperimentResults, InterferenceCell, RunScore, TaskSpec};
pub use pipeline::{
    complete_model_config, eval_run, load_run, prepare, train_run, LoadedRun, Prepared, RunResults, CHECKPOINT_DIR,
    RESULTS_FILE, RUN_CONFIG_FILE, TOKENIZER_FILE,
};
pub use probe::{probe_run, ProbeOptions, ProbeResults};
