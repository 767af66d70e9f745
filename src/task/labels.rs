//! Task kinds and label sets.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A downstream task and how it is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Part-of-speech tagging (two-column files); token accuracy.
    Pos,
    /// Named entities (IOB2 files); entity-level F1 on exact spans.
    Ner,
    /// Sentence-pair classification (premise, hypothesis, label); accuracy.
    Nli,
}

impl TaskKind {
    /// The name of the task's headline metric.
    pub fn metric(&self) -> &'static str {
        match self {
            TaskKind::Ner => "entity_f1",
            TaskKind::Pos | TaskKind::Nli => "accuracy",
        }
    }
}

/// The labels of a task, sorted, so that the same training data gives the same ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSet(Vec<String>);

impl LabelSet {
    /// The distinct labels among `labels`, sorted.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut all: Vec<String> = labels.into_iter().map(str::to_string).collect();
        all.sort();
        all.dedup();
        if all.is_empty() {
            return Err(Error::Config("a task needs at least one label".into()));
        }
        Ok(LabelSet(all))
    }

    /// The id of `label`, or an error naming it (a test label never seen in training).
    pub fn id(&self, label: &str) -> Result<u32> {
        self.0
            .binary_search_by(|l| l.as_str().cmp(label))
            .map(|i| i as u32)
            .map_err(|_| Error::Config(format!("label {label:?} is not among the task's labels {:?}", self.0)))
    }

    /// The label of `id`.
    pub fn name(&self, id: u32) -> &str {
        self.0.get(id as usize).map_or("O", String::as_str)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels (never, once built).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
