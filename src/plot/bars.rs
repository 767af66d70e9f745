//! Grouped bar charts with error bars: one group of bars per label (a language, a layer, a
//! method), one bar per series, each a mean with a spread.

use super::figure::Figure;
use super::style::series_color;
use crate::error::{Error, Result};
use crate::run::DemoResults;
use plotters::prelude::*;

/// One bar: a label (the group it belongs to), a mean and a spread (drawn as mean ± spread;
/// 0 or NaN draws no error bar).
#[derive(Clone, Debug, PartialEq)]
pub struct BarRow {
    /// The group on the x axis.
    pub label: String,
    /// The bar's height.
    pub mean: f64,
    /// Half the error bar's length (e.g. a standard deviation over seeds).
    pub spread: f64,
}

impl BarRow {
    /// A bar of `mean ± spread` in group `label`.
    pub fn new(label: impl Into<String>, mean: f64, spread: f64) -> Self {
        BarRow { label: label.into(), mean, spread }
    }

    /// The mean and sample standard deviation of `values` (spread 0 for fewer than two).
    pub fn from_samples(label: impl Into<String>, values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let spread =
            if n < 2 { 0.0 } else { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() };
        BarRow { label: label.into(), mean, spread }
    }
}

/// The bars of one series (one colour, one legend entry).
#[derive(Clone, Debug, PartialEq)]
pub struct BarSeries {
    /// The name shown in the legend.
    pub name: String,
    /// Its bars; a label missing from a series leaves a gap.
    pub rows: Vec<BarRow>,
}

impl BarSeries {
    /// A series called `name`.
    pub fn new(name: impl Into<String>, rows: Vec<BarRow>) -> Self {
        BarSeries { name: name.into(), rows }
    }
}

/// A grouped bar chart: the x axis holds every label in order of first appearance, each group
/// one bar per series that has the label, with error bars of ± spread.
///
/// # Errors
/// [`Error::Config`] when there are no bars or a mean is not finite.
pub fn bar_chart(title: &str, y_label: &str, series: &[BarSeries]) -> Result<Figure> {
    let mut labels: Vec<&str> = Vec::new();
    for row in series.iter().flat_map(|s| &s.rows) {
        if !row.mean.is_finite() {
            return Err(Error::Config(format!("bar {:?} of {title:?} has a non-finite mean {}", row.label, row.mean)));
        }
        if !labels.contains(&row.label.as_str()) {
            labels.push(&row.label);
        }
    }
    if labels.is_empty() {
        return Err(Error::Config(format!("bar chart {title:?} has no bars")));
    }
    let spread = |r: &BarRow| if r.spread.is_finite() { r.spread.abs() } else { 0.0 };
    let rows = || series.iter().flat_map(|s| &s.rows);
    let lo = rows().map(|r| r.mean - spread(r)).fold(0.0f64, f64::min);
    let hi = rows().map(|r| r.mean + spread(r)).fold(0.0f64, f64::max);
    let n = labels.len();
    let k = series.len().max(1);
    // Head room for the legend (about 18 px a series of a ~340 px high plot).
    let span = if hi > lo { hi - lo } else { 1.0 };
    let legend = ((18 * k + 24) as f64 / 340.0).min(0.6);
    let (y0, y1) = (if lo < 0.0 { lo - span * 0.05 } else { 0.0 }, hi + span * legend / (1.0 - legend));
    let width = (160 + n * (24 * k + 40)).max(title.chars().count() * 9 + 40).clamp(480, 1200) as u32;
    // x in thousandths of a category (integer coordinates take a label formatter): category i
    // spans [1000 i, 1000 (i + 1)], labelled at its centre.
    const UNIT: i32 = 1000;
    let keys: Vec<i32> = (0..n as i32).map(|i| i * UNIT + UNIT / 2).collect();
    Figure::draw(width, 440, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n as i32 * UNIT).with_key_points(keys.clone()), y0..y1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| labels.get((x / UNIT).max(0) as usize).map_or(String::new(), |l| l.to_string()))
            .y_desc(y_label)
            .light_line_style(TRANSPARENT)
            .draw()?;
        let slot = UNIT * 8 / 10 / k as i32;
        for (si, s) in series.iter().enumerate() {
            let color = series_color(si);
            let placed: Vec<(i32, &BarRow)> = s
                .rows
                .iter()
                .filter_map(|r| {
                    let i = labels.iter().position(|l| *l == r.label)? as i32;
                    Some((i * UNIT + UNIT / 10 + slot * si as i32, r))
                })
                .collect();
            chart
                .draw_series(placed.iter().map(|&(x, r)| {
                    Rectangle::new([(x + slot / 12, 0.0), (x + slot * 11 / 12, r.mean)], color.filled())
                }))?
                .label(s.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
            // Error bars: a vertical stroke with caps a third of the bar wide.
            let (cap, stroke) = (slot / 6, BLACK.stroke_width(1));
            for &(x, r) in placed.iter().filter(|(_, r)| spread(r) > 0.0) {
                let (c, lo, hi) = (x + slot / 2, r.mean - spread(r), r.mean + spread(r));
                chart.draw_series([
                    PathElement::new(vec![(c, lo), (c, hi)], stroke),
                    PathElement::new(vec![(c - cap, lo), (c + cap, lo)], stroke),
                    PathElement::new(vec![(c - cap, hi), (c + cap, hi)], stroke),
                ])?;
            }
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

/// Monolingual vs joint held-out loss per language of one interference run (no error bars).
///
/// # Errors
/// [`Error::Config`] when the results have no rows.
pub fn interference_bars(results: &DemoResults) -> Result<Figure> {
    interference_bars_over_seeds(std::slice::from_ref(results))
}

/// Monolingual vs joint held-out loss per language, mean ± standard deviation over several
/// runs of the same setup (e.g. one per seed). Languages are taken in the first run's order.
///
/// # Errors
/// [`Error::Config`] when there are no runs or no rows, or a later run lacks a language of
/// the first (naming it).
pub fn interference_bars_over_seeds(runs: &[DemoResults]) -> Result<Figure> {
    let first = runs.first().ok_or_else(|| Error::Config("no interference results to draw".into()))?;
    if first.rows.is_empty() {
        return Err(Error::Config("the interference results have no languages".into()));
    }
    let mut mono = Vec::new();
    let mut joint = Vec::new();
    for row in &first.rows {
        let mut m = Vec::new();
        let mut j = Vec::new();
        for run in runs {
            let r = run.rows.iter().find(|r| r.lang == row.lang).ok_or_else(|| {
                Error::Config(format!("a run of the interference results has no row for {}", row.lang))
            })?;
            m.push(r.mono.loss);
            j.push(r.joint.loss);
        }
        mono.push(BarRow::from_samples(row.lang.as_str(), &m));
        joint.push(BarRow::from_samples(row.lang.as_str(), &j));
    }
    let title = if runs.len() > 1 {
        format!("Held-out MLM loss, monolingual vs joint (mean ± sd over {} runs)", runs.len())
    } else {
        "Held-out MLM loss, monolingual vs joint".to_string()
    };
    bar_chart(&title, "loss (nats)", &[BarSeries::new("monolingual", mono), BarSeries::new("joint", joint)])
}
