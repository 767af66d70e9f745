//! CoNLL-U treebanks (Universal Dependencies): word forms and their UPOS tags.

use super::tagged::{read_sentences, Entry, TaggedSentence};
use crate::error::Result;
use std::path::Path;

/// Reads CoNLL-U files into sentences of FORM tokens tagged with UPOS.
///
/// Lines starting with `#` are comments; a blank line ends a sentence. A word line has exactly
/// ten tab-separated columns and an integer ID of at least 1; multiword-token lines (ID `a-b`)
/// and empty nodes (ID `a.b`) are skipped, so the tokens are the syntactic words. A UPOS of
/// `_` is kept as is.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoNllUReader;

impl CoNllUReader {
    /// Reads every sentence of the CoNLL-U file at `path`.
    ///
    /// # Errors
    /// [`crate::Error::Io`] if the file cannot be read; [`crate::Error::Parse`] naming the
    /// 1-based line for invalid UTF-8, an ASCII control character other than tab, a column
    /// count other than ten, a malformed ID, or an empty FORM or UPOS;
    /// [`crate::Error::EmptyFile`] if the file holds no sentence.
    pub fn read(path: &Path) -> Result<Vec<TaggedSentence>> {
        read_sentences(path, parse_line)
    }
}

/// Parses one non-blank line.
fn parse_line(line: &str) -> std::result::Result<Entry, String> {
    if line.starts_with('#') {
        return Ok(Entry::Skip);
    }
    let columns: Vec<&str> = line.split('\t').collect();
    let &[id, form, _, upos, _, _, _, _, _, _] = columns.as_slice() else {
        return Err(format!("expected 10 tab-separated columns, found {}", columns.len()));
    };
    if !is_word_id(id)? {
        return Ok(Entry::Skip);
    }
    if form.is_empty() {
        return Err("empty FORM column".into());
    }
    if upos.is_empty() {
        return Err("empty UPOS column".into());
    }
    Ok(Entry::Token(form.to_string(), upos.to_string()))
}

/// Whether `id` is a word's ID (`true`) or a multiword-token range `a-b` or an empty node
/// `a.b` (`false`); anything else is an error naming the ID.
fn is_word_id(id: &str) -> std::result::Result<bool, String> {
    let is_word = if let Some((first, last)) = id.split_once('-') {
        number(first).zip(number(last)).filter(|&(a, b)| a >= 1 && b > a).map(|_| false)
    } else if let Some((word, node)) = id.split_once('.') {
        number(word).zip(number(node)).filter(|&(_, n)| n >= 1).map(|_| false)
    } else {
        number(id).filter(|&n| n >= 1).map(|_| true)
    };
    is_word.ok_or_else(|| format!("invalid ID {id:?} (expected an integer >= 1, a range a-b or a decimal a.b)"))
}

/// `s` as a number if it is made of ASCII digits only.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(line: &str) -> Option<(String, String)> {
        match parse_line(line).unwrap() {
            Entry::Token(form, upos) => Some((form, upos)),
            Entry::Skip => None,
        }
    }

    #[test]
    fn word_lines_give_form_and_upos() {
        assert_eq!(token("3\tAP\tAP\tPROPN\tNNP\t_\t4\tobl\t_\t_"), Some(("AP".into(), "PROPN".into())));
        assert_eq!(token("3\tcông ty\t_\t_\t_\t_\t_\t_\t_\t_"), Some(("công ty".into(), "_".into())));
    }

    #[test]
    fn comments_ranges_and_empty_nodes_are_skipped() {
        assert_eq!(token("# text = x"), None);
        assert_eq!(token("1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_"), None);
        assert_eq!(token("8.1\tgone\t_\tVERB\t_\t_\t_\t_\t_\t_"), None);
        assert_eq!(token("0.1\tgone\t_\tVERB\t_\t_\t_\t_\t_\t_"), None);
    }

    #[test]
    fn bad_ids_are_named() {
        for id in ["0", "x", "+1", "-1", "2-1", "1-", "1.0", "1.2.3", ""] {
            let err = parse_line(&format!("{id}\tw\t_\tX\t_\t_\t_\t_\t_\t_")).err().unwrap();
            assert!(err.contains(&format!("invalid ID {id:?}")), "{id}: {err}");
        }
    }

    #[test]
    fn column_count_and_empty_fields_are_errors() {
        assert_eq!(parse_line("1\tw\t_\tX").err().unwrap(), "expected 10 tab-separated columns, found 4");
        assert_eq!(parse_line("1\t\t_\tX\t_\t_\t_\t_\t_\t_").err().unwrap(), "empty FORM column");
        assert_eq!(parse_line("1\tw\t_\t\t_\t_\t_\t_\t_\t_").err().unwrap(), "empty UPOS column");
    }
}
