//! The library's one error type: every variant names the file, line or value at fault.

use std::path::PathBuf;

/// Everything that can go wrong in the library, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of an input file is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A file holds no usable data.
    #[error("{path}: file is empty (no sentences)")]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },
    /// A language code is not valid or not one of the known languages.
    #[error("unknown language code {code:?} (known: {known})")]
    UnknownLanguage {
        /// The offending code.
        code: String,
        /// The codes that would have been accepted, comma-separated.
        known: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Tensor shapes or sizes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A loss or gradient became NaN or infinite.
    #[error("non-finite {what} at step {step}: {value}")]
    NonFinite {
        /// Which quantity (e.g. "loss for en").
        what: String,
        /// The training step.
        step: usize,
        /// The value seen.
        value: f64,
    },
    /// A checkpoint or one of its files is missing.
    #[error("missing checkpoint file {path}")]
    MissingCheckpoint {
        /// The file that was expected.
        path: PathBuf,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The serde error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Drawing a figure failed.
    #[error("plot: {0}")]
    Plot(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An [`Error::Parse`] for `path` at 1-based `line`.
    pub fn parse(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Parse { path: path.into(), line, message: message.into() }
    }
}
