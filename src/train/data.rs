//! Tokenised training and held-out data of every language of a run.

use crate::data::Corpus;
use crate::error::{Error, Result};
use crate::lang::{Lang, LangSet};
use crate::rng::{stream, Purpose};
use crate::tokenize::{SharedTokenizer, SpecialIds};
use rand::seq::SliceRandom;

/// Sentences of every language as token ids, split into training and held-out parts.
#[derive(Clone, Debug)]
pub struct MlmData {
    langs: LangSet,
    train: Vec<Vec<Vec<u32>>>,
    valid: Vec<Vec<Vec<u32>>>,
    meta: Vec<Vec<Vec<u32>>>,
    specials: SpecialIds,
    vocab_size: usize,
}

impl MlmData {
    /// Tokenises `train` and `valid` corpora (the same languages, in the same order).
    pub fn encode(tokenizer: &SharedTokenizer, train: &[Corpus], valid: &[Corpus]) -> Result<Self> {
        let langs = LangSet::new(train.iter().map(|c| c.lang.clone()).collect())?;
        let valid_langs: Vec<&Lang> = valid.iter().map(|c| &c.lang).collect();
        if valid_langs != langs.iter().collect::<Vec<_>>() {
            return Err(Error::Config(format!(
                "held-out languages {valid_langs:?} differ from training languages {langs}"
            )));
        }
        let encode = |c: &Corpus| -> Result<Vec<Vec<u32>>> {
            let ids = c.sentences.iter().map(|s| tokenizer.encode(s)).collect::<Result<Vec<_>>>()?;
            let ids: Vec<Vec<u32>> = ids.into_iter().filter(|s| !s.is_empty()).collect();
            if ids.is_empty() {
                return Err(Error::Config(format!("corpus of {} has no tokens", c.lang)));
            }
            Ok(ids)
        };
        Ok(MlmData {
            langs,
            train: train.iter().map(encode).collect::<Result<_>>()?,
            valid: valid.iter().map(encode).collect::<Result<_>>()?,
            meta: Vec::new(),
            specials: tokenizer.specials(),
            vocab_size: tokenizer.vocab_size(),
        })
    }

    /// Data from sentences already tokenised: `train[l]` and `valid[l]` are language `l`'s.
    pub fn from_ids(
        langs: LangSet,
        train: Vec<Vec<Vec<u32>>>,
        valid: Vec<Vec<Vec<u32>>>,
        specials: SpecialIds,
        vocab_size: usize,
    ) -> Result<Self> {
        if train.len() != langs.len() || valid.len() != langs.len() {
            return Err(Error::Shape(format!(
                "{} languages but {} training and {} held-out sets",
                langs.len(),
                train.len(),
                valid.len()
            )));
        }
        for (lang, sets) in langs.iter().zip(train.iter().zip(&valid)) {
            for set in [sets.0, sets.1] {
                if set.iter().all(Vec::is_empty) {
                    return Err(Error::Config(format!("language {lang} has an empty sentence set")));
                }
                if let Some(id) = set.iter().flatten().find(|&&id| id as usize >= vocab_size) {
                    return Err(Error::Shape(format!(
                        "language {lang}: token id {id} is outside the vocabulary of {vocab_size}"
                    )));
                }
            }
        }
        Ok(MlmData { langs, train, valid, meta: Vec::new(), specials, vocab_size })
    }

    /// The same data restricted to `langs` (e.g. one language for a monolingual baseline).
    pub fn subset(&self, langs: &[Lang]) -> Result<Self> {
        let idx = langs.iter().map(|l| self.langs.index(l)).collect::<Result<Vec<_>>>()?;
        Ok(MlmData {
            langs: LangSet::new(langs.to_vec())?,
            train: idx.iter().map(|&i| self.train[i].clone()).collect(),
            valid: idx.iter().map(|&i| self.valid[i].clone()).collect(),
            meta: idx.iter().filter_map(|&i| self.meta.get(i).cloned()).collect(),
            specials: self.specials,
            vocab_size: self.vocab_size,
        })
    }

    /// The languages, in order.
    pub fn langs(&self) -> &LangSet {
        &self.langs
    }

    /// Training sentences of language `i`.
    pub fn train(&self, i: usize) -> &[Vec<u32>] {
        &self.train[i]
    }

    /// Held-out sentences of language `i`.
    pub fn valid(&self, i: usize) -> &[Vec<u32>] {
        &self.valid[i]
    }

    /// Holds `n` training sentences per language apart as the meta split (chosen at random
    /// under `seed`); the training text keeps the rest. Data that already has a meta split
    /// is returned as it is.
    pub fn split_meta(mut self, n: usize, seed: u64) -> Result<Self> {
        if !self.meta.is_empty() {
            return Ok(self);
        }
        for (li, train) in self.train.iter_mut().enumerate() {
            if n >= train.len() {
                return Err(Error::Config(format!(
                    "cannot hold {n} of the {} training sentences of {} apart for the meta split",
                    train.len(),
                    self.langs.as_slice()[li]
                )));
            }
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut stream(seed, Purpose::Split, 1 + li as u64));
            let held: std::collections::HashSet<usize> = order[..n].iter().copied().collect();
            let (meta, rest): (Vec<_>, Vec<_>) =
                std::mem::take(train).into_iter().enumerate().partition(|(i, _)| held.contains(i));
            self.meta.push(meta.into_iter().map(|(_, s)| s).collect());
            *train = rest.into_iter().map(|(_, s)| s).collect();
        }
        Ok(self)
    }

    /// Meta-split sentences of language `i` (empty unless [`MlmData::split_meta`] was called).
    pub fn meta(&self, i: usize) -> &[Vec<u32>] {
        self.meta.get(i).map_or(&[], Vec::as_slice)
    }

    /// The tokenizer's special ids.
    pub fn specials(&self) -> SpecialIds {
        self.specials
    }

    /// The tokenizer's vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

/// Splits `held_out` sentences, chosen at random under `seed`, off a corpus:
/// returns `(train, held_out)`. At least one sentence must remain for training.
pub fn split_held_out(corpus: &Corpus, held_out: usize, seed: u64) -> Result<(Corpus, Corpus)> {
    if held_out == 0 || held_out >= corpus.len() {
        return Err(Error::Config(format!(
            "cannot hold out {held_out} of the {} sentences of {}",
            corpus.len(),
            corpus.lang
        )));
    }
    let mut order: Vec<usize> = (0..corpus.len()).collect();
    order.shuffle(&mut stream(seed, Purpose::Split, 0));
    let (valid, train) = order.split_at(held_out);
    let pick = |idx: &[usize]| {
        let mut idx = idx.to_vec();
        idx.sort_unstable();
        Corpus::new(corpus.lang.clone(), idx.iter().map(|&i| corpus.sentences[i].clone()).collect())
    };
    Ok((pick(train), pick(valid)))
}
