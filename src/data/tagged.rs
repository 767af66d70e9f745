//! Token-tagged sentences and the sentence grouping shared by the CoNLL-U and IOB2 readers.

use super::lines::Source;
use crate::error::{Error, Result};
use std::path::Path;

/// A sentence of tokens with one tag per token (a UPOS tag or an IOB2 entity tag).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaggedSentence {
    /// The tokens in order.
    pub tokens: Vec<String>,
    /// The tags, as many as `tokens`.
    pub tags: Vec<String>,
}

/// What one non-blank line of a tagged file holds.
pub(super) enum Entry {
    /// A token and its tag.
    Token(String, String),
    /// A line that holds no token of its own (a comment, a multiword token, an empty node).
    Skip,
}

/// Reads `path` as sentences separated by blank (or whitespace-only) lines, turning every
/// other line into an [`Entry`] with `parse`; a message returned by `parse` becomes an
/// [`Error::Parse`] naming the file and line. The last sentence needs no blank line after it.
pub(super) fn read_sentences(
    path: &Path,
    mut parse: impl FnMut(&str) -> std::result::Result<Entry, String>,
) -> Result<Vec<TaggedSentence>> {
    let source = Source::read(path)?;
    let mut sentences = Vec::new();
    let mut current = TaggedSentence::default();
    for (number, line) in source.lines() {
        if line.trim().is_empty() {
            if !current.tokens.is_empty() {
                sentences.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Entry::Token(token, tag) = parse(line).map_err(|m| source.error(number, m))? {
            current.tokens.push(token);
            current.tags.push(tag);
        }
    }
    if !current.tokens.is_empty() {
        sentences.push(current);
    }
    if sentences.is_empty() {
        return Err(Error::EmptyFile { path: path.into() });
    }
    Ok(sentences)
}
