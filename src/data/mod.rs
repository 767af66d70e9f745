//! Data: corpora per language, annotated files, and synthetic languages.
//!
//! - [`read_text_corpus`]: plain text, one sentence per line, into a [`Corpus`].
//! - [`CoNllUReader`]: CoNLL-U treebanks into [`TaggedSentence`]s of FORM and UPOS.
//! - [`IobReader`]: `token TAB tag` IOB2 files into [`TaggedSentence`]s.
//! - [`TagReader`]: two-column `token TAB tag` / `token SPACE tag` files (POS).
//! - [`PairReader`]: `premise TAB hypothesis TAB label` files (NLI) into [`PairExample`]s.
//! - [`generate_synthetic`]: a synthetic language from a [`SyntheticSpec`], with its
//!   [`Lexicon`] as ground truth.
//!
//! All readers take the whole file as UTF-8 (a leading byte-order mark is ignored) and reject
//! ASCII control characters other than tab; errors name the file and the 1-based line.

mod conllu;
mod corpus;
mod iob;
mod lines;
mod nli;
mod pos;
mod synthetic;
mod tagged;
mod text;

pub use conllu::CoNllUReader;
pub use corpus::Corpus;
pub use iob::IobReader;
pub use nli::{PairExample, PairReader};
pub use pos::TagReader;
pub use synthetic::{generate as generate_synthetic, Lexicon, PartOfSpeech, SyntheticSpec, WordOrder};
pub use tagged::TaggedSentence;
pub use text::read_text_corpus;
