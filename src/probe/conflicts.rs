//! Gradient conflicts over training: a time series of probes, a trainer hook that fills it,
//! and the share of negative cosines per group, per pair and over time.

use super::similarity::{GradientProbe, SimilarityReport};
use crate::error::Result;
use crate::lang::Lang;
use crate::train::{StepHook, StepReport, Trainer};
use serde::{Deserialize, Serialize};

/// Probes of one run, in step order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConflictSeries {
    /// One similarity report per probe.
    pub points: Vec<SimilarityReport>,
}

/// One pair of languages' conflicts on one group over the series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairConflict {
    /// First language.
    pub a: Lang,
    /// Second language.
    pub b: Lang,
    /// Share of probes where their cosine was negative.
    pub negative_share: f64,
    /// Mean cosine over the probes.
    pub mean_cosine: f64,
    /// Lowest cosine seen.
    pub min_cosine: f64,
}

/// Conflicts on one group of parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupConflicts {
    /// The group (`model`, `layer.0`, a parameter name, …).
    pub group: String,
    /// Share of negative cosines over all pairs and probes.
    pub negative_share: f64,
    /// Per pair of languages (i < j).
    pub pairs: Vec<PairConflict>,
    /// `(step, share of pairs with a negative cosine)` at each probe.
    pub over_time: Vec<(usize, f64)>,
}

impl ConflictSeries {
    /// Appends a probe.
    pub fn push(&mut self, report: SimilarityReport) {
        self.points.push(report);
    }

    /// `(step, cosine)` of languages `a` and `b` on `group` at each probe that has them.
    pub fn cosine_curve(&self, group: &str, a: &Lang, b: &Lang) -> Vec<(usize, f64)> {
        self.points
            .iter()
            .filter_map(|p| {
                let (i, j) = (p.langs.iter().position(|l| l == a)?, p.langs.iter().position(|l| l == b)?);
                Some((p.step, p.group(group)?.cosine[i][j]))
            })
            .collect()
    }

    /// Conflict statistics of every group of the first probe, over all probes.
    pub fn summary(&self) -> Vec<GroupConflicts> {
        let Some(first) = self.points.first() else { return Vec::new() };
        let langs = &first.langs;
        let pairs: Vec<(usize, usize)> =
            (0..langs.len()).flat_map(|i| (i + 1..langs.len()).map(move |j| (i, j))).collect();
        first
            .groups
            .iter()
            .map(|g| {
                let cos: Vec<(usize, Vec<f64>)> = self
                    .points
                    .iter()
                    .filter_map(|p| {
                        Some((
                            p.step,
                            pairs
                                .iter()
                                .map(|&(i, j)| p.group(&g.name).map(|s| s.cosine[i][j]))
                                .collect::<Option<Vec<_>>>()?,
                        ))
                    })
                    .collect();
                let share = |v: &mut dyn Iterator<Item = f64>| {
                    let (neg, n) = v.fold((0usize, 0usize), |(neg, n), c| (neg + usize::from(c < 0.0), n + 1));
                    neg as f64 / n.max(1) as f64
                };
                let pair_stats = pairs
                    .iter()
                    .enumerate()
                    .map(|(k, &(i, j))| {
                        let series: Vec<f64> = cos.iter().map(|(_, c)| c[k]).collect();
                        PairConflict {
                            a: langs[i].clone(),
                            b: langs[j].clone(),
                            negative_share: share(&mut series.iter().copied()),
                            mean_cosine: series.iter().sum::<f64>() / series.len().max(1) as f64,
                            min_cosine: series.iter().copied().fold(f64::INFINITY, f64::min),
                        }
                    })
                    .collect();
                GroupConflicts {
                    group: g.name.clone(),
                    negative_share: share(&mut cos.iter().flat_map(|(_, c)| c.iter().copied())),
                    pairs: pair_stats,
                    over_time: cos.iter().map(|(step, c)| (*step, share(&mut c.iter().copied()))).collect(),
                }
            })
            .collect()
    }
}

/// A trainer hook that probes every `every` steps and keeps the series.
#[derive(Clone, Debug)]
pub struct ProbeHook {
    probe: GradientProbe,
    every: usize,
    series: ConflictSeries,
}

impl ProbeHook {
    /// Probes with `probe` after every `every`-th step (at least 1).
    pub fn new(probe: GradientProbe, every: usize) -> Self {
        ProbeHook { probe, every: every.max(1), series: ConflictSeries::default() }
    }

    /// Probes `trainer`'s model now (e.g. before training) and records it.
    pub fn probe_now(&mut self, trainer: &Trainer) -> Result<()> {
        let report = self.probe.run(trainer.model(), trainer.steps_done())?;
        self.series.push(report);
        Ok(())
    }

    /// The series so far.
    pub fn series(&self) -> &ConflictSeries {
        &self.series
    }

    /// Takes the series out of the hook.
    pub fn into_series(self) -> ConflictSeries {
        self.series
    }
}

impl StepHook for ProbeHook {
    fn after_step(&mut self, trainer: &Trainer, report: &StepReport) -> Result<()> {
        if report.step % self.every == 0 {
            self.probe_now(trainer)?;
        }
        Ok(())
    }
}
