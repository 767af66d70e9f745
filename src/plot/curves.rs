//! Curves over training steps: gradient cosines of language pairs, per-language losses, or any
//! named series of points.

use super::figure::Figure;
use super::style::series_color;
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::probe::{ConflictSeries, GroupKind};
use crate::train::StepReport;
use plotters::prelude::*;
// plotters' line series, renamed: this module has its own [`LineSeries`].
use plotters::series::LineSeries as LineSeries_;
use std::collections::BTreeMap;

/// One named line of a [`line_chart`]: `(x, y)` points in order of x.
#[derive(Clone, Debug, PartialEq)]
pub struct LineSeries {
    /// The name shown in the legend.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

impl LineSeries {
    /// A series called `name`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        LineSeries { name: name.into(), points }
    }
}

/// A line chart of `series` with a legend; non-finite points are left out. With
/// `zero_line`, a dashed line marks y = 0 (and the y range includes it).
///
/// # Errors
/// [`Error::Config`] when no series has a finite point.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[LineSeries], zero_line: bool) -> Result<Figure> {
    let finite: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect())
        .collect();
    let all = || finite.iter().flatten();
    if all().next().is_none() {
        return Err(Error::Config(format!("line chart {title:?} has no finite points to draw")));
    }
    let (mut x0, mut x1) = bounds(all().map(|p| p.0));
    let (mut y0, mut y1) = bounds(all().map(|p| p.1));
    if zero_line {
        y0 = y0.min(0.0);
        y1 = y1.max(0.0);
    }
    if x1 <= x0 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    let pad = if y1 > y0 { (y1 - y0) * 0.06 } else { 0.5 };
    let (y0, y1) = (y0 - pad, y1 + pad);
    let (width, height) = (720, 440);
    Figure::draw(width, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        // Steps and other whole-number x values are labelled without decimals.
        let whole = all().all(|p| p.0.fract() == 0.0);
        let x_format = |x: &f64| match (whole, x.fract() == 0.0) {
            (true, true) => format!("{x:.0}"),
            (true, false) => String::new(),
            (false, _) => format!("{x}"),
        };
        chart
            .configure_mesh()
            .x_label_formatter(&x_format)
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(TRANSPARENT)
            .draw()?;
        if zero_line {
            let dashed = DashedLineSeries::new(vec![(x0, 0.0), (x1, 0.0)], 6, 4, BLACK.mix(0.6).stroke_width(1));
            chart.draw_series(dashed)?;
        }
        for (i, (s, points)) in series.iter().zip(&finite).enumerate() {
            let color = series_color(i);
            chart
                .draw_series(LineSeries_::new(points.clone(), color.stroke_width(2)))?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
        Ok(())
    })
}

/// The cosine over training of each pair of languages on `group` (`model`, `layer.0`, …)
/// in a conflict series, one line per pair (`"aa–bb"`). `pairs` names the pairs as language
/// codes; empty means every pair.
///
/// # Errors
/// [`Error::Config`] for an empty series or a group the probes lack (naming it);
/// [`Error::UnknownLanguage`] for a code the probes lack.
pub fn similarity_curves(series: &ConflictSeries, group: &str, pairs: &[(&str, &str)]) -> Result<Figure> {
    let first = series.points.first().ok_or_else(|| Error::Config("the conflict series has no probes".into()))?;
    if first.group(group).is_none() {
        let known: Vec<&str> =
            first.groups.iter().filter(|g| !matches!(g.kind, GroupKind::Matrix(_))).map(|g| g.name.as_str()).collect();
        return Err(Error::Config(format!(
            "no parameter group {group:?} in the conflict series (groups: {}, or a parameter name)",
            known.join(", ")
        )));
    }
    let find = |code: &str| -> Result<Lang> {
        first.langs.iter().find(|l| l.as_str() == code).cloned().ok_or_else(|| Error::UnknownLanguage {
            code: code.to_string(),
            known: first.langs.iter().map(Lang::as_str).collect::<Vec<_>>().join(", "),
        })
    };
    let chosen: Vec<(Lang, Lang)> = if pairs.is_empty() {
        let l = &first.langs;
        (0..l.len()).flat_map(|i| (i + 1..l.len()).map(move |j| (l[i].clone(), l[j].clone()))).collect()
    } else {
        pairs.iter().map(|(a, b)| Ok((find(a)?, find(b)?))).collect::<Result<_>>()?
    };
    let lines: Vec<LineSeries> = chosen
        .iter()
        .map(|(a, b)| {
            let points = series.cosine_curve(group, a, b).into_iter().map(|(s, c)| (s as f64, c)).collect();
            LineSeries::new(format!("{a}–{b}"), points)
        })
        .collect();
    line_chart(&format!("Gradient cosine over training · {group}"), "step", "cosine", &lines, true)
}

/// Training loss over steps: the step's mean loss (`all`) and each language's loss in it.
///
/// # Errors
/// [`Error::Config`] when `reports` is empty.
pub fn loss_curves(reports: &[StepReport]) -> Result<Figure> {
    if reports.is_empty() {
        return Err(Error::Config("no step reports to draw loss curves from".into()));
    }
    let mut lines = vec![LineSeries::new("all", reports.iter().map(|r| (r.step as f64, r.loss)).collect())];
    let mut per_lang: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in reports {
        for l in &r.languages {
            per_lang.entry(l.lang.as_str()).or_default().push((r.step as f64, l.loss));
        }
    }
    lines.extend(per_lang.into_iter().map(|(lang, points)| LineSeries::new(lang, points)));
    line_chart("Training loss", "step", "MLM loss", &lines, false)
}

/// The smallest and largest of `values` (which must not be empty).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}
