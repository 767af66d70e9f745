//! A monolingual corpus: sentences of one language.

use crate::lang::Lang;

/// Sentences of one language, one entry per sentence (no line breaks inside).
#[derive(Clone, Debug, PartialEq)]
pub struct Corpus {
    /// The corpus's language.
    pub lang: Lang,
    /// The sentences, in file order.
    pub sentences: Vec<String>,
}

impl Corpus {
    /// A corpus from sentences already in memory.
    pub fn new(lang: Lang, sentences: Vec<String>) -> Self {
        Corpus { lang, sentences }
    }

    /// Number of sentences.
    pub fn len(&self) -> usize {
        self.sentences.len()
    }

    /// Whether the corpus has no sentences.
    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }
}
