//! An input file read whole and checked once, then walked as numbered lines by every reader.

use crate::error::{Error, Result};
use std::path::Path;

/// The text of an input file: valid UTF-8, leading byte-order mark removed, and no ASCII
/// control character other than tab on any line (a trailing `\r` of CRLF files is allowed).
///
/// Only ASCII controls (U+0000–U+001F, U+007F) are rejected: they mean a binary or corrupt
/// file. C1 controls (U+0080–U+009F) are let through, as real Wikipedia-derived text holds
/// stray ones.
pub(super) struct Source<'p> {
    /// The file the text came from, named in errors.
    path: &'p Path,
    /// The whole file as text.
    text: String,
}

impl<'p> Source<'p> {
    /// Reads and checks `path`; errors name the file and, for bad content, the 1-based line.
    pub(super) fn read(path: &'p Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut text = String::from_utf8(bytes).map_err(|e| {
            let bytes = e.as_bytes();
            let bad = e.utf8_error().valid_up_to();
            let line_start = bytes[..bad].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            Error::parse(
                path,
                bytes[..bad].iter().filter(|&&b| b == b'\n').count() + 1,
                format!("invalid UTF-8 (byte 0x{:02X} at byte {} of the line)", bytes[bad], bad - line_start + 1),
            )
        })?;
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        let source = Source { path, text };
        for (number, line) in source.lines() {
            if let Some(c) = line.chars().find(|&c| c.is_ascii_control() && c != '\t') {
                return Err(
                    source.error(number, format!("control character U+{:04X} (only tab is allowed)", u32::from(c)))
                );
            }
        }
        Ok(source)
    }

    /// The lines with their 1-based numbers, without `\n` or a trailing `\r`.
    pub(super) fn lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.text.split('\n').enumerate().map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
    }

    /// An [`Error::Parse`] for this file at 1-based `line`.
    pub(super) fn error(&self, line: usize, message: impl Into<String>) -> Error {
        Error::parse(self.path, line, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_of(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn numbers_lines_and_strips_cr_and_bom() {
        let (_dir, path) = source_of("\u{feff}a\r\nb\n\nc".as_bytes());
        let source = Source::read(&path).unwrap();
        let lines: Vec<_> = source.lines().collect();
        assert_eq!(lines, [(1, "a"), (2, "b"), (3, ""), (4, "c")]);
    }

    #[test]
    fn invalid_utf8_names_line_and_byte() {
        let (_dir, path) = source_of(b"ok\nok\nab\xffc\n");
        let err = Source::read(&path).err().unwrap().to_string();
        assert!(err.contains(":3: invalid UTF-8 (byte 0xFF at byte 3 of the line)"), "{err}");
    }

    #[test]
    fn control_character_names_line_and_code() {
        let (_dir, path) = source_of(b"ok\tfine\nbad\x07\n");
        let err = Source::read(&path).err().unwrap().to_string();
        assert!(err.contains(":2: control character U+0007"), "{err}");
    }

    #[test]
    fn c1_controls_are_allowed() {
        let (_dir, path) = source_of("a\u{8f}b\n".as_bytes());
        assert!(Source::read(&path).is_ok());
    }
}
