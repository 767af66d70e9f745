//! Conflict heatmaps: the cosine between every two languages' gradients, language × language,
//! for one parameter group or for every layer side by side.

use super::figure::{DrawResult, Figure};
use super::style::{diverging_color, signed, text_on};
use crate::error::{Error, Result};
use crate::probe::{GroupKind, GroupSimilarity, SimilarityReport};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Pixel size of one heatmap cell.
const CELL: u32 = 54;
/// Width of the colour bar column.
const LEGEND: u32 = 80;

/// The heatmap of the gradient cosines on `group` (`model`, `embeddings`, `layer.0`, …, or a
/// parameter name) of a probe: one cell per pair of languages, coloured on a diverging scale
/// from −1 (red: the languages' gradients conflict) to +1 (blue), with the value written in it.
///
/// # Errors
/// [`Error::Config`] naming `group` when the report has no such group.
pub fn conflict_heatmap(report: &SimilarityReport, group: &str) -> Result<Figure> {
    let g = find_group(report, group)?;
    let n = report.langs.len() as u32;
    let label_w = label_width(report);
    let width = (label_w + n * CELL + 30 + LEGEND).max(360);
    let height = 70 + 24 + n * CELL + 20;
    let title = format!("Gradient cosine · {} · step {}", g.name, report.step);
    Figure::draw(width, height, |root| {
        let (body, legend) = root.split_horizontally(width - LEGEND);
        draw_title(&body, &title, &format!("mean over {} probe batches; red = conflict", report.batches))?;
        let panel = body.margin(50, 10, 0, 0);
        draw_panel(&panel, report, g, label_w, None)?;
        draw_color_bar(&legend, 70, n * CELL + 24)
    })
}

/// Conflict heatmaps of the whole model and of every part of the network (embeddings, each
/// layer, output) side by side, up to four panels a row, with one colour bar.
///
/// # Errors
/// [`Error::Config`] when the report has no per-layer groups.
pub fn layer_heatmaps(report: &SimilarityReport) -> Result<Figure> {
    let groups: Vec<&GroupSimilarity> =
        report.groups.iter().filter(|g| matches!(g.kind, GroupKind::Model | GroupKind::Layer(_))).collect();
    if !groups.iter().any(|g| matches!(g.kind, GroupKind::Layer(_))) {
        return Err(Error::Config("the similarity report has no per-layer groups to draw".into()));
    }
    let n = report.langs.len() as u32;
    let label_w = label_width(report);
    let per_row = groups.len().min(4) as u32;
    let rows = (groups.len() as u32).div_ceil(per_row);
    let panel_w = label_w + n * CELL + 16;
    let panel_h = 24 + 22 + n * CELL + 12;
    let width = per_row * panel_w + LEGEND;
    let height = 60 + rows * panel_h;
    let title = format!("Gradient cosine per layer · step {}", report.step);
    Figure::draw(width, height, |root| {
        let (body, legend) = root.split_horizontally(width - LEGEND);
        draw_title(&body, &title, &format!("mean over {} probe batches; red = conflict", report.batches))?;
        let grid = body.margin(50, 0, 0, 0);
        for (k, g) in groups.iter().enumerate() {
            let (r, c) = (k as u32 / per_row, k as u32 % per_row);
            let area = grid.clone().shrink(((c * panel_w) as i32, (r * panel_h) as i32), (panel_w, panel_h));
            draw_panel(&area, report, g, label_w, Some(&g.name))?;
        }
        draw_color_bar(&legend, 70, (n * CELL).max(120))
    })
}

/// The group called `name`, or an error naming it and the groups that exist.
fn find_group<'a>(report: &'a SimilarityReport, name: &str) -> Result<&'a GroupSimilarity> {
    report.group(name).ok_or_else(|| {
        let known: Vec<&str> =
            report.groups.iter().filter(|g| !matches!(g.kind, GroupKind::Matrix(_))).map(|g| g.name.as_str()).collect();
        Error::Config(format!(
            "no parameter group {name:?} in the similarity report (groups: {}, or a parameter name)",
            known.join(", ")
        ))
    })
}

/// Pixels for the row labels (language codes).
fn label_width(report: &SimilarityReport) -> u32 {
    let longest = report.langs.iter().map(|l| l.as_str().len()).max().unwrap_or(2) as u32;
    16 + 8 * longest
}

/// The figure's title and a smaller subtitle under it.
pub(crate) fn draw_title(area: &DrawingArea<SVGBackend<'_>, Shift>, title: &str, subtitle: &str) -> DrawResult {
    let centre = (area.dim_in_pixel().0 / 2) as i32;
    let style = ("sans-serif", 18).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
    area.draw(&Text::new(title.to_string(), (centre, 8), style))?;
    let small = ("sans-serif", 12).into_font().color(&RGBColor(90, 90, 90)).pos(Pos::new(HPos::Center, VPos::Top));
    area.draw(&Text::new(subtitle.to_string(), (centre, 30), small))?;
    Ok(())
}

/// One language × language grid with row and column labels (and a panel title if given).
fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    report: &SimilarityReport,
    group: &GroupSimilarity,
    label_w: u32,
    title: Option<&str>,
) -> DrawResult {
    let top = if title.is_some() { 24 } else { 0 };
    if let Some(t) = title {
        let style = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top));
        area.draw(&Text::new(t.to_string(), (label_w as i32, 4), style))?;
    }
    let (x0, y0) = (label_w as i32, top + 22);
    let cell = CELL as i32;
    let label = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, lang) in report.langs.iter().enumerate() {
        let i = i as i32;
        let col = label.clone().pos(Pos::new(HPos::Center, VPos::Bottom));
        area.draw(&Text::new(lang.to_string(), (x0 + i * cell + cell / 2, y0 - 4), col))?;
        let row = label.clone().pos(Pos::new(HPos::Right, VPos::Center));
        area.draw(&Text::new(lang.to_string(), (x0 - 6, y0 + i * cell + cell / 2), row))?;
    }
    for (i, row) in group.cosine.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (cx, cy) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
            let fill = diverging_color(v);
            area.draw(&Rectangle::new([(cx, cy), (cx + cell, cy + cell)], fill.filled()))?;
            area.draw(&Rectangle::new([(cx, cy), (cx + cell, cy + cell)], WHITE.stroke_width(1)))?;
            let text = ("sans-serif", 12).into_font().color(&text_on(fill)).pos(Pos::new(HPos::Center, VPos::Center));
            area.draw(&Text::new(signed(v, 2), (cx + cell / 2, cy + cell / 2), text))?;
        }
    }
    Ok(())
}

/// A vertical colour bar from +1 (top) to −1 (bottom) starting `top` pixels down.
fn draw_color_bar(area: &DrawingArea<SVGBackend<'_>, Shift>, top: i32, height: u32) -> DrawResult {
    let steps = 40;
    let (x0, w) = (12, 16);
    let h = height as f64 / steps as f64;
    for k in 0..steps {
        let v = 1.0 - 2.0 * (k as f64 + 0.5) / steps as f64;
        let y = top + (k as f64 * h) as i32;
        let y1 = top + ((k + 1) as f64 * h).ceil() as i32;
        area.draw(&Rectangle::new([(x0, y), (x0 + w, y1)], diverging_color(v).filled()))?;
    }
    area.draw(&Rectangle::new([(x0, top), (x0 + w, top + height as i32)], BLACK.stroke_width(1)))?;
    let style = ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    for (v, label) in [(1.0, "+1"), (0.0, "0"), (-1.0, "−1")] {
        let y = top + ((1.0 - v) / 2.0 * height as f64) as i32;
        area.draw(&Text::new(label.to_string(), (x0 + w + 6, y), style.clone()))?;
    }
    let cap = ("sans-serif", 11).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top));
    area.draw(&Text::new("cosine".to_string(), (x0 - 4, top + height as i32 + 6), cap))?;
    Ok(())
}
