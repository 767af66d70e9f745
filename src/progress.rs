//! Progress reporting for long work: a terminal bar, plain lines (for notebooks, whose
//! output is line-buffered), or nothing.

use crate::train::StepReport;
use indicatif::{ProgressBar, ProgressStyle};

/// Receives the progress of a training run.
pub trait Progress {
    /// Work begins with `done` of `total` steps already done.
    fn start(&mut self, done: u64, total: u64);
    /// One step finished.
    fn step(&mut self, report: &StepReport);
    /// The work is done.
    fn finish(&mut self);
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: &StepReport) {}
    fn finish(&mut self) {}
}

/// An indicatif progress bar on stderr, labelled, showing the latest loss.
#[derive(Debug)]
pub struct Bar {
    label: String,
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar labelled `label` (e.g. `"joint"`).
    pub fn new(label: impl Into<String>) -> Self {
        Bar { label: label.into(), bar: None }
    }
}

impl Progress for Bar {
    fn start(&mut self, done: u64, total: u64) {
        let bar = ProgressBar::new(total);
        bar.set_position(done);
        let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(self.label.clone());
        self.bar = Some(bar);
    }

    fn step(&mut self, report: &StepReport) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {:.3}", report.loss));
            bar.inc(1);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Prints one line every `every` steps (`label step 40/200 loss 3.215`).
#[derive(Clone, Debug)]
pub struct Lines {
    label: String,
    every: usize,
    total: u64,
}

impl Lines {
    /// Prints every `every` steps (at least 1).
    pub fn new(label: impl Into<String>, every: usize) -> Self {
        Lines { label: label.into(), every: every.max(1), total: 0 }
    }
}

impl Progress for Lines {
    fn start(&mut self, _: u64, total: u64) {
        self.total = total;
    }

    fn step(&mut self, report: &StepReport) {
        if report.step % self.every == 0 {
            println!("{} step {}/{} loss {:.4}", self.label, report.step, self.total, report.loss);
        }
    }

    fn finish(&mut self) {}
}
