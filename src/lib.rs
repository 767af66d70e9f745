//! # interference
//!
//! A lab for studying *negative interference* in multilingual masked language models
//! (Wang, Lipton & Tsvetkov, EMNLP 2020). Data flows one way:
//!
//! `data` → `tokenize` → `batch` → `model` → `train`
//!
//! - [`data`]: corpora (plain text, CoNLL-U, IOB2) and synthetic languages with knobs.
//! - [`tokenize`]: one shared subword tokenizer for all languages, and its statistics.
//! - [`batch`]: MLM masking and temperature sampling across languages.
//! - [`kernels`]: the hot operations, as composite reference ops or fused kernels (CPU and CUDA).
//! - [`model`]: a post-LN transformer MLM with optional language embeddings and
//!   language-specific adapters, and the parameter registry.
//! - [`train`]: one trainer with a stepping API, AdamW, evaluation and checkpoints.
//! - [`plot`]: figures of results (conflict heatmaps, curves, bar charts, mask overlap) as SVG.

pub mod batch;
pub mod data;
pub mod device;
pub mod error;
pub mod grads;
pub mod io;
pub mod kernels;
pub mod lang;
pub mod model;
pub mod plot;
pub mod probe;
pub mod progress;
pub mod rng;
pub mod run;
pub mod task;
pub mod tokenize;
pub mod train;

pub use error::{Error, Result};
pub use lang::{Lang, LangSet};
