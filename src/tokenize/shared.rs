//! One subword tokenizer shared by all languages: BPE over Metaspace-split words.

use crate::data::Corpus;
use crate::error::{Error, Result};
use crate::tokenize::special::{self, SpecialIds};
use std::path::Path;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::normalizers::{NormalizerWrapper, Replace, Sequence, Strip, NFKC};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerImpl};

/// Merges seen fewer times than this in the training text are not learned.
const MIN_FREQUENCY: u64 = 2;

/// A BPE tokenizer trained on the sentences of several languages together, with the special
/// tokens of [`special`].
#[derive(Clone, Debug)]
pub struct SharedTokenizer {
    inner: Tokenizer,
    specials: SpecialIds,
    vocab_size: usize,
}

impl SharedTokenizer {
    /// Trains one BPE model on the sentences of all `corpora` together.
    ///
    /// The pipeline is: NFKC normalisation, every run of whitespace collapsed to one space and
    /// leading/trailing whitespace stripped, then Metaspace pre-tokenisation (a space becomes
    /// `▁` and starts a new word), BPE, and a Metaspace decoder, so that
    /// `decode(encode(s)) == s` for NFKC-normal `s` with single spaces and no outer whitespace
    /// (and characters seen in training).
    ///
    /// The special tokens get ids `[PAD]`=0, `[UNK]`=1, `[CLS]`=2, `[SEP]`=3, `[MASK]`=4.
    /// `vocab_size` counts them. It is a target, not a guarantee: every character seen in
    /// training is kept (so a larger alphabet overshoots it), and merges stop early when no
    /// pair of symbols occurs at least twice (so tiny corpora undershoot it). Characters not
    /// seen in training encode as `[UNK]`.
    ///
    /// Training is deterministic: the same corpora and `vocab_size` give the same
    /// `tokenizer.json`, with or without `TOKENIZERS_PARALLELISM` (the trainer's parallel
    /// steps only sum counts; ties between pairs are broken by pair ids, not hash order).
    ///
    /// Fails with [`Error::Config`] when `vocab_size` leaves no room beyond the special tokens,
    /// or when there is no non-blank sentence to train on.
    pub fn train(corpora: &[Corpus], vocab_size: usize) -> Result<SharedTokenizer> {
        if vocab_size <= special::ALL.len() {
            return Err(Error::Config(format!(
                "tokenizer vocab_size {vocab_size} is too small: it must exceed the {} special tokens",
                special::ALL.len()
            )));
        }
        if corpora.iter().all(|c| c.sentences.iter().all(|s| s.trim().is_empty())) {
            return Err(Error::Config("cannot train a tokenizer: the corpora hold no non-blank sentence".into()));
        }

        let model = BPE::builder().unk_token(special::UNK.to_string()).build().map_err(tok_err)?;
        let mut tokenizer: TokenizerImpl<
            BPE,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        > = TokenizerImpl::new(model);
        tokenizer.with_normalizer(Some(normalizer()?)).map_err(tok_err)?;
        tokenizer.with_pre_tokenizer(Some(metaspace()));
        tokenizer.with_decoder(Some(metaspace()));

        let mut trainer = BpeTrainer::builder()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(MIN_FREQUENCY)
            .special_tokens(special::ALL.iter().map(|t| AddedToken::from(*t, true)).collect())
            .build();
        let sentences = corpora.iter().flat_map(|c| c.sentences.iter());
        tokenizer.train(&mut trainer, sentences).map_err(tok_err)?;
        Self::from_tokenizer(tokenizer.into(), "the trained tokenizer")
    }

    /// Saves the tokenizer as compact `tokenizer.json`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        crate::io::write_atomic(path, json.as_bytes())
    }

    /// Loads a tokenizer saved by [`SharedTokenizer::save`] (or any `tokenizer.json` that has
    /// the five special tokens).
    ///
    /// Fails with an error naming `path` when the file cannot be read or parsed, and with
    /// [`Error::Tokenizer`] naming the token and the file when a special token is missing.
    pub fn load(path: &Path) -> Result<SharedTokenizer> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let inner: Tokenizer = serde_json::from_str(&text).map_err(|e| Error::Json { path: path.into(), source: e })?;
        Self::from_tokenizer(inner, &path.display().to_string())
    }

    /// The tokenizer as compact JSON: the contents [`SharedTokenizer::save`] writes.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(tok_err)
    }

    /// The ids of `text`'s subword tokens, without special tokens around them. A literal
    /// special-token string inside `text` (say `[MASK]`) encodes as that special token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(tok_err)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens skipped. Fails on an id outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::Tokenizer(format!(
                "cannot decode id {bad}: the vocabulary has {} ids",
                self.vocab_size
            )));
        }
        self.inner.decode(ids, true).map_err(tok_err)
    }

    /// Number of ids, special tokens included: the largest id plus one.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The ids of the special tokens.
    pub fn specials(&self) -> SpecialIds {
        self.specials
    }

    /// The token string of `id`, or `None` if `id` is not in the vocabulary.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Wraps `inner`, looking up the special tokens; `source` names where it came from.
    fn from_tokenizer(inner: Tokenizer, source: &str) -> Result<SharedTokenizer> {
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| Error::Tokenizer(format!("special token {token} is missing from {source}")))
        };
        let specials = SpecialIds {
            pad: id(special::PAD)?,
            unk: id(special::UNK)?,
            cls: id(special::CLS)?,
            sep: id(special::SEP)?,
            mask: id(special::MASK)?,
        };
        let vocab_size = inner.get_vocab(true).values().max().map_or(0, |&m| m as usize + 1);
        Ok(SharedTokenizer { inner, specials, vocab_size })
    }
}

/// NFKC, whitespace runs collapsed to one space, outer whitespace stripped.
fn normalizer() -> Result<NormalizerWrapper> {
    let collapse =
        Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ").map_err(tok_err)?;
    Ok(Sequence::new(vec![NFKC.into(), collapse.into(), Strip::new(true, true).into()]).into())
}

/// The Metaspace pre-tokenizer / decoder: `▁` marks a word start, prepended to every word.
fn metaspace() -> Metaspace {
    Metaspace::new('▁', PrependScheme::Always, true)
}

/// An [`Error::Tokenizer`] from a `tokenizers` library error.
fn tok_err(e: tokenizers::Error) -> Error {
    Error::Tokenizer(e.to_string())
}
