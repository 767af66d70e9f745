//! Language codes and the ordered set of languages a model or data set knows.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated language code: 2 to 12 characters, lowercase ASCII letters, digits, `-` or `_`,
/// starting with a letter (`en`, `sw`, `syn-a`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Lang(String);

impl Lang {
    /// Parses and validates a language code.
    ///
    /// ```
    /// use interference::Lang;
    /// assert_eq!(Lang::new("sw").unwrap().as_str(), "sw");
    /// assert!(Lang::new("Swahili!").is_err());
    /// ```
    pub fn new(code: &str) -> Result<Self> {
        let ok = (2..=12).contains(&code.len())
            && code.starts_with(|c: char| c.is_ascii_lowercase())
            && code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(Lang(code.to_string()))
        } else {
            Err(Error::UnknownLanguage {
                code: code.to_string(),
                known: "codes of 2-12 lowercase letters, digits, '-' or '_'".into(),
            })
        }
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Lang {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Lang::new(&s)
    }
}

impl From<Lang> for String {
    fn from(l: Lang) -> String {
        l.0
    }
}

/// An ordered set of distinct languages; a language's index is its position.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<Lang>", into = "Vec<Lang>")]
pub struct LangSet(Vec<Lang>);

impl LangSet {
    /// Builds a set from codes in order; duplicates are an error.
    pub fn new(langs: Vec<Lang>) -> Result<Self> {
        for (i, l) in langs.iter().enumerate() {
            if langs[..i].contains(l) {
                return Err(Error::Config(format!("language {l} is listed twice")));
            }
        }
        Ok(LangSet(langs))
    }

    /// Parses a list of codes.
    pub fn parse(codes: &[&str]) -> Result<Self> {
        Self::new(codes.iter().map(|c| Lang::new(c)).collect::<Result<_>>()?)
    }

    /// The index of `lang`, or an [`Error::UnknownLanguage`] listing the known codes.
    pub fn index(&self, lang: &Lang) -> Result<usize> {
        self.0
            .iter()
            .position(|l| l == lang)
            .ok_or_else(|| Error::UnknownLanguage { code: lang.to_string(), known: self.to_string() })
    }

    /// Like [`LangSet::index`] for a code given as a string.
    pub fn index_of(&self, code: &str) -> Result<usize> {
        self.index(&Lang::new(code)?)
    }

    /// The languages in order.
    pub fn as_slice(&self) -> &[Lang] {
        &self.0
    }

    /// Number of languages.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the languages in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Lang> {
        self.0.iter()
    }
}

impl fmt::Display for LangSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<&str> = self.0.iter().map(Lang::as_str).collect();
        f.write_str(&codes.join(", "))
    }
}

impl TryFrom<Vec<Lang>> for LangSet {
    type Error = Error;
    fn try_from(v: Vec<Lang>) -> Result<Self> {
        LangSet::new(v)
    }
}

impl From<LangSet> for Vec<Lang> {
    fn from(s: LangSet) -> Vec<Lang> {
        s.0
    }
}
