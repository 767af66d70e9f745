//! Downstream examples as token ids: which positions are labelled, with which label.

use super::labels::{LabelSet, TaskKind};
use crate::batch::MlmBatch;
use crate::data::{CoNllUReader, IobReader, PairExample, PairReader, TagReader, TaggedSentence};
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::tokenize::SharedTokenizer;
use std::path::Path;

/// One encoded example: `[CLS] … [SEP]` ids and the labelled positions in them.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskExample {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Positions (within `tokens`) that carry a label: each word's first subword, or `[CLS]`
    /// for sentence-pair tasks.
    pub positions: Vec<u32>,
    /// The label id at each position.
    pub labels: Vec<u32>,
}

/// A task's raw examples as read from a file.
#[derive(Clone, Debug)]
pub enum RawTask {
    /// Tagged sentences (POS, NER).
    Tagged(Vec<TaggedSentence>),
    /// Sentence pairs (NLI).
    Pairs(Vec<PairExample>),
}

impl RawTask {
    /// Reads a task file in the format of `kind`: two-column tags or CoNLL-U (`.conllu`) for
    /// POS, IOB2 for NER, `premise TAB hypothesis TAB label` for NLI.
    pub fn read(kind: TaskKind, path: &Path) -> Result<Self> {
        Ok(match kind {
            TaskKind::Pos if path.extension().is_some_and(|e| e == "conllu") => {
                RawTask::Tagged(CoNllUReader::read(path)?)
            }
            TaskKind::Pos => RawTask::Tagged(TagReader::read(path)?),
            TaskKind::Ner => RawTask::Tagged(IobReader::read(path)?),
            TaskKind::Nli => RawTask::Pairs(PairReader::read(path)?),
        })
    }

    /// Every label occurrence, for building a [`LabelSet`].
    pub fn labels(&self) -> Vec<&str> {
        match self {
            RawTask::Tagged(s) => s.iter().flat_map(|s| s.tags.iter().map(String::as_str)).collect(),
            RawTask::Pairs(p) => p.iter().map(|p| p.label.as_str()).collect(),
        }
    }
}

/// One language's encoded examples of a task.
#[derive(Clone, Debug)]
pub struct TaskSet {
    /// The task.
    pub kind: TaskKind,
    /// The examples' language.
    pub lang: Lang,
    /// The examples.
    pub examples: Vec<TaskExample>,
}

impl TaskSet {
    /// Encodes `raw` with the shared tokenizer; sequences are cut at `max_len` (words past
    /// the cut lose their labels). A label outside `labels` is an error naming it.
    pub fn encode(
        kind: TaskKind,
        lang: Lang,
        raw: &RawTask,
        tokenizer: &SharedTokenizer,
        labels: &LabelSet,
        max_len: usize,
    ) -> Result<Self> {
        if max_len < 4 {
            return Err(Error::Config(format!("task max_len must be at least 4, got {max_len}")));
        }
        let sp = tokenizer.specials();
        let examples = match raw {
            RawTask::Tagged(sentences) => sentences
                .iter()
                .map(|s| {
                    let mut ex = TaskExample { tokens: vec![sp.cls], positions: Vec::new(), labels: Vec::new() };
                    for (word, tag) in s.tokens.iter().zip(&s.tags) {
                        let pieces = tokenizer.encode(word)?;
                        if pieces.is_empty() || ex.tokens.len() + pieces.len() >= max_len {
                            continue;
                        }
                        ex.positions.push(ex.tokens.len() as u32);
                        ex.labels.push(labels.id(tag)?);
                        ex.tokens.extend(pieces);
                    }
                    ex.tokens.push(sp.sep);
                    Ok(ex)
                })
                .filter(|e: &Result<TaskExample>| e.as_ref().map_or(true, |e| !e.positions.is_empty()))
                .collect::<Result<Vec<_>>>()?,
            RawTask::Pairs(pairs) => pairs
                .iter()
                .map(|p| {
                    let half = (max_len - 3) / 2;
                    let mut tokens = vec![sp.cls];
                    tokens.extend(tokenizer.encode(&p.premise)?.into_iter().take(half));
                    tokens.push(sp.sep);
                    tokens.extend(tokenizer.encode(&p.hypothesis)?.into_iter().take(max_len - 3 - half));
                    tokens.push(sp.sep);
                    Ok(TaskExample { tokens, positions: vec![0], labels: vec![labels.id(&p.label)?] })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        if examples.is_empty() {
            return Err(Error::Config(format!("no {kind:?} example of {lang} survived encoding")));
        }
        Ok(TaskSet { kind, lang, examples })
    }
}

/// A padded batch of examples for the encoder, read as language `lang` (its embedding and
/// adapters): the batch's targets are label ids at the labelled positions.
pub fn task_batch(examples: &[&TaskExample], lang: &Lang, pad: u32) -> MlmBatch {
    let cols = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(1);
    let mut batch = MlmBatch {
        lang: lang.clone(),
        rows: examples.len(),
        cols,
        tokens: Vec::with_capacity(examples.len() * cols),
        positions: Vec::new(),
        targets: Vec::new(),
        pad: None,
    };
    for (r, e) in examples.iter().enumerate() {
        batch.tokens.extend(&e.tokens);
        batch.tokens.resize((r + 1) * cols, pad);
        batch.positions.extend(e.positions.iter().map(|p| (r * cols) as u32 + p));
        batch.targets.extend(&e.labels);
    }
    if examples.iter().any(|e| e.tokens.len() < cols) {
        batch.pad = Some(pad);
    }
    batch
}
