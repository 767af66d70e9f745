//! IOB2 named-entity files: `token TAB tag` per line, a blank line between sentences.

use super::tagged::{read_sentences, Entry, TaggedSentence};
use crate::error::Result;
use std::path::Path;

/// Reads IOB2-tagged files (such as WikiANN / PAN-X) into sentences of tokens and tags.
///
/// Every non-blank line is exactly `token TAB tag`, where the tag is `O`, `B-TYPE` or
/// `I-TYPE` with a non-empty `TYPE`. Tokens are kept verbatim: a language prefix such as
/// `en:` is not stripped.
#[derive(Clone, Copy, Debug, Default)]
pub struct IobReader;

impl IobReader {
    /// Reads every sentence of the IOB2 file at `path`.
    ///
    /// # Errors
    /// [`crate::Error::Io`] if the file cannot be read; [`crate::Error::Parse`] naming the
    /// 1-based line for invalid UTF-8, an ASCII control character other than tab, a line
    /// without exactly two tab-separated columns, an empty token, or a malformed tag;
    /// [`crate::Error::EmptyFile`] if the file holds no sentence.
    pub fn read(path: &Path) -> Result<Vec<TaggedSentence>> {
        read_sentences(path, parse_line)
    }
}

/// Parses one non-blank line.
fn parse_line(line: &str) -> std::result::Result<Entry, String> {
    let columns: Vec<&str> = line.split('\t').collect();
    let &[token, tag] = columns.as_slice() else {
        return Err(format!("expected 2 tab-separated columns (token, tag), found {}", columns.len()));
    };
    if token.is_empty() {
        return Err("empty token".into());
    }
    let entity = tag.strip_prefix("B-").or_else(|| tag.strip_prefix("I-"));
    if tag != "O" && entity.is_none_or(str::is_empty) {
        return Err(format!("invalid IOB2 tag {tag:?} (expected O, B-TYPE or I-TYPE)"));
    }
    Ok(Entry::Token(token.to_string(), tag.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_iob2_tags() {
        for tag in ["O", "B-LOC", "I-ORG", "B-X"] {
            assert!(matches!(parse_line(&format!("en:Nairobi\t{tag}")), Ok(Entry::Token(t, _)) if t == "en:Nairobi"));
        }
    }

    #[test]
    fn rejects_bad_tags_and_columns() {
        for tag in ["", "B-", "I-", "o", "B_LOC", "E-LOC", "O "] {
            let err = parse_line(&format!("w\t{tag}")).err().unwrap();
            assert!(err.starts_with(&format!("invalid IOB2 tag {tag:?}")), "{tag}: {err}");
        }
        assert_eq!(parse_line("w O").err().unwrap(), "expected 2 tab-separated columns (token, tag), found 1");
        assert_eq!(parse_line("w\tO\tx").err().unwrap(), "expected 2 tab-separated columns (token, tag), found 3");
        assert_eq!(parse_line("\tO").err().unwrap(), "empty token");
    }
}
