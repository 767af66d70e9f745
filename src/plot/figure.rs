//! A drawn figure: SVG text that saves to a file and displays inline in evcxr.

use crate::error::{Error, Result};
use crate::io::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// A finished figure, held as SVG text.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    svg: String,
    width: u32,
    height: u32,
}

/// What a drawing closure returns: any plotters error is boxed.
pub(crate) type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

impl Figure {
    /// A figure from SVG text of the given pixel size.
    pub fn from_svg(svg: impl Into<String>, width: u32, height: u32) -> Self {
        Figure { svg: svg.into(), width, height }
    }

    /// Draws a `width × height` figure on a white background with `draw`.
    pub(crate) fn draw(
        width: u32,
        height: u32,
        draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
    ) -> Result<Figure> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            draw(&root).map_err(plot_error)?;
            root.present().map_err(plot_error)?;
        }
        Ok(Figure { svg, width, height })
    }

    /// The SVG document.
    pub fn svg(&self) -> &str {
        &self.svg
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Writes the SVG to `path` atomically (a temporary file renamed into place).
    ///
    /// # Errors
    /// [`Error::Config`] when `path` does not end in `.svg` (the figure is SVG only);
    /// [`Error::Io`] naming the file when it cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let is_svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        if !is_svg {
            return Err(Error::Config(format!("{}: figures are saved as SVG; name the file *.svg", path.display())));
        }
        write_atomic(path, self.svg.as_bytes())
    }

    /// The text evcxr reads from a cell's stdout to show the figure as `image/svg+xml`.
    pub fn evcxr_content(&self) -> String {
        format!("EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT", self.svg.trim_end())
    }

    /// Shows the figure inline in an evcxr notebook: prints [`Figure::evcxr_content`].
    /// evcxr calls this by itself when a figure is the value of a cell's last expression.
    pub fn evcxr_display(&self) {
        println!("{}", self.evcxr_content());
    }
}

/// A plotters failure as the library's error.
pub(crate) fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}
