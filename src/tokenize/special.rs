//! The special tokens every tokenizer in this crate carries, and their ids.

use serde::{Deserialize, Serialize};

/// Padding token: fills batches to a common length and is never predicted.
pub const PAD: &str = "[PAD]";
/// Unknown token: stands for characters never seen when the tokenizer was trained.
pub const UNK: &str = "[UNK]";
/// Classification token: starts a sequence.
pub const CLS: &str = "[CLS]";
/// Separator token: ends a sequence.
pub const SEP: &str = "[SEP]";
/// Mask token: replaces the inputs the masked language model must predict.
pub const MASK: &str = "[MASK]";

/// The special tokens in id order: a freshly trained tokenizer gives them ids 0 to 4.
pub(crate) const ALL: [&str; 5] = [PAD, UNK, CLS, SEP, MASK];

/// The ids of the special tokens in one tokenizer's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    /// Id of [`PAD`].
    pub pad: u32,
    /// Id of [`UNK`].
    pub unk: u32,
    /// Id of [`CLS`].
    pub cls: u32,
    /// Id of [`SEP`].
    pub sep: u32,
    /// Id of [`MASK`].
    pub mask: u32,
}

impl SpecialIds {
    /// Whether `id` is one of the special tokens.
    pub fn contains(&self, id: u32) -> bool {
        [self.pad, self.unk, self.cls, self.sep, self.mask].contains(&id)
    }
}
