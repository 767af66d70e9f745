//! Figures of the lab's results: gradient-conflict heatmaps, similarity and loss curves,
//! grouped bar charts with error bars, and mask overlap per layer.
//!
//! Every function takes plain result structs (from [`crate::probe`], [`crate::run`],
//! [`crate::train`]) and returns a [`Figure`]: an SVG drawn with `plotters`, which saves to a
//! file ([`Figure::save`]) and shows inline in a notebook ([`Figure::evcxr_display`]).
//! Text is written as SVG `<text>` elements, so no fonts are needed to draw.
//!
//! ```
//! use interference::plot::{bar_chart, BarRow, BarSeries};
//! let series = vec![BarSeries::new("loss", vec![BarRow::new("aa", 3.2, 0.1), BarRow::new("bb", 3.5, 0.2)])];
//! let fig = bar_chart("Held-out loss", "loss", &series)?;
//! assert!(fig.svg().starts_with("<svg"));
//! # Ok::<(), interference::Error>(())
//! ```

mod bars;
mod curves;
mod figure;
mod heatmap;
mod overlap;
mod style;

pub use bars::{bar_chart, interference_bars, interference_bars_over_seeds, BarRow, BarSeries};
pub use curves::{line_chart, loss_curves, similarity_curves, LineSeries};
pub use figure::Figure;
pub use heatmap::{conflict_heatmap, layer_heatmaps};
pub use overlap::mask_overlap;
pub use style::{diverging_color, series_color};

#[cfg(test)]
mod tests;
