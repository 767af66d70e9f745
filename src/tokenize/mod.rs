//! The shared multilingual subword tokenizer and its per-language statistics.

mod shared;
pub mod special;
mod stats;

pub use shared::SharedTokenizer;
pub use special::SpecialIds;
pub use stats::{tokenizer_stats, LanguageStats, TokenizerStats};
