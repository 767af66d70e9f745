//! Downstream tasks: token classification (POS, NER) and sentence-pair classification (NLI)
//! on a pretrained encoder, their metrics, and zero-shot cross-lingual transfer.

mod examples;
mod finetune;
mod labels;
mod metrics;

pub use examples::{task_batch, RawTask, TaskExample, TaskSet};
pub use finetune::{finetune, AdapterChoice, FineTuneConfig, TaskModel, TaskScore};
pub use labels::{LabelSet, TaskKind};
pub use metrics::{accuracy, entities, entity_scores, EntityScores, Span};
