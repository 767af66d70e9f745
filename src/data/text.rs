//! Plain-text corpora: one sentence per line.

use super::corpus::Corpus;
use super::lines::Source;
use crate::error::{Error, Result};
use crate::lang::Lang;
use std::path::Path;

/// Reads a plain UTF-8 corpus of language `lang`, one sentence per line.
///
/// Each line is trimmed of surrounding whitespace (so CRLF files are fine); blank and
/// whitespace-only lines are skipped. A leading byte-order mark is ignored.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Parse`] naming the 1-based line for
/// invalid UTF-8 or an ASCII control character other than tab; [`Error::EmptyFile`] if no
/// line holds a sentence.
pub fn read_text_corpus(path: &Path, lang: Lang) -> Result<Corpus> {
    let source = Source::read(path)?;
    let sentences: Vec<String> =
        source.lines().map(|(_, line)| line.trim()).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if sentences.is_empty() {
        return Err(Error::EmptyFile { path: path.into() });
    }
    Ok(Corpus::new(lang, sentences))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trimmed_non_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("en.txt");
        std::fs::write(&path, "  first line \r\n\n \t \nsecond\tline\n").unwrap();
        let corpus = read_text_corpus(&path, Lang::new("en").unwrap()).unwrap();
        assert_eq!(corpus.lang.as_str(), "en");
        assert_eq!(corpus.sentences, ["first line", "second\tline"]);
    }

    #[test]
    fn blank_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blank.txt");
        std::fs::write(&path, " \n\t\r\n").unwrap();
        let err = read_text_corpus(&path, Lang::new("en").unwrap()).unwrap_err();
        assert!(matches!(err, Error::EmptyFile { .. }), "{err}");
    }
}
