//! Sentence-pair classification files (XNLI): `premise TAB hypothesis TAB label` per line.

use super::lines::Source;
use crate::error::{Error, Result};
use std::path::Path;

/// One labelled sentence pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairExample {
    /// The first sentence.
    pub premise: String,
    /// The second sentence.
    pub hypothesis: String,
    /// The class (`entailment`, `neutral`, `contradiction` for XNLI).
    pub label: String,
}

/// Reads labelled sentence pairs, one per line; blank lines are skipped.
#[derive(Clone, Copy, Debug, Default)]
pub struct PairReader;

impl PairReader {
    /// Reads every pair of the file at `path`.
    ///
    /// # Errors
    /// [`crate::Error::Parse`] naming the line for a line that is not three non-empty
    /// tab-separated fields (an unlabelled test file fails at its first line), invalid UTF-8
    /// or a control character; [`crate::Error::EmptyFile`] when there is no pair.
    pub fn read(path: &Path) -> Result<Vec<PairExample>> {
        let source = Source::read(path)?;
        let mut pairs = Vec::new();
        for (number, line) in source.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                [p, h, l] if !p.trim().is_empty() && !h.trim().is_empty() && !l.trim().is_empty() => {
                    pairs.push(PairExample {
                        premise: p.trim().to_string(),
                        hypothesis: h.trim().to_string(),
                        label: l.trim().to_string(),
                    })
                }
                _ => {
                    return Err(source.error(
                        number,
                        format!(
                            "expected 3 non-empty tab-separated fields (premise, hypothesis, label), found {}",
                            fields.len()
                        ),
                    ))
                }
            }
        }
        if pairs.is_empty() {
            return Err(Error::EmptyFile { path: path.into() });
        }
        Ok(pairs)
    }
}
