//! Two-column tag files: `token TAB tag` (XTREME's UDPOS) or `token SPACE tag` (MasakhaPOS),
//! a blank line between sentences.

use super::tagged::{read_sentences, Entry, TaggedSentence};
use crate::error::Result;
use std::path::Path;

/// Reads two-column tagged files (part-of-speech tags, or any tag set without IOB structure).
///
/// A line with a tab is split on tabs, a line without one on whitespace; either way it must
/// give exactly two non-empty fields, token and tag.
#[derive(Clone, Copy, Debug, Default)]
pub struct TagReader;

impl TagReader {
    /// Reads every sentence of the file at `path`.
    ///
    /// # Errors
    /// [`crate::Error::Io`] if the file cannot be read; [`crate::Error::Parse`] naming the
    /// 1-based line for invalid UTF-8, a control character, or a line that is not two fields;
    /// [`crate::Error::EmptyFile`] if the file holds no sentence.
    pub fn read(path: &Path) -> Result<Vec<TaggedSentence>> {
        read_sentences(path, parse_line)
    }
}

fn parse_line(line: &str) -> std::result::Result<Entry, String> {
    let fields: Vec<&str> =
        if line.contains('\t') { line.split('\t').collect() } else { line.split_whitespace().collect() };
    match fields.as_slice() {
        [token, tag] if !token.is_empty() && !tag.trim().is_empty() => {
            Ok(Entry::Token(token.to_string(), tag.trim().to_string()))
        }
        _ => Err(format!("expected two fields (token, tag), found {:?}", fields)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_or_spaces() {
        assert!(matches!(parse_line("From\tADP"), Ok(Entry::Token(t, g)) if t == "From" && g == "ADP"));
        assert!(matches!(parse_line("Katika ADP"), Ok(Entry::Token(t, g)) if t == "Katika" && g == "ADP"));
        assert!(parse_line("a b c").is_err());
        assert!(parse_line("a\t").is_err());
        assert!(parse_line("alone").is_err());
    }
}
