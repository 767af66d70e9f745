//! Task metrics: accuracy and seqeval-style entity F1 on exact spans.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Share of equal items (0 for no items).
///
/// ```
/// assert_eq!(interference::task::accuracy(&[1, 2, 3, 4], &[1, 0, 3, 4]), 0.75);
/// ```
pub fn accuracy<T: PartialEq>(gold: &[T], predicted: &[T]) -> f64 {
    let right = gold.iter().zip(predicted).filter(|(g, p)| g == p).count();
    right as f64 / gold.len().max(1) as f64
}

/// An entity: type and the half-open token range `[start, end)`.
pub type Span = (String, usize, usize);

/// Entities of one IOB2 sequence, as seqeval reads them by default: `B-X` starts an entity,
/// `I-X` continues an entity of type X and starts one after `O` or another type, and `O`
/// (or anything else) ends it.
pub fn entities(tags: &[&str]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for (i, tag) in tags.iter().enumerate() {
        let (prefix, kind) = match tag.split_once('-') {
            Some((p @ ("B" | "I"), k)) => (p, k),
            _ => ("O", ""),
        };
        let continues = prefix == "I" && open.as_ref().is_some_and(|(k, _)| k == kind);
        if !continues {
            if let Some((k, start)) = open.take() {
                out.push((k, start, i));
            }
            if prefix != "O" {
                open = Some((kind.to_string(), i));
            }
        }
    }
    if let Some((k, start)) = open {
        out.push((k, start, tags.len()));
    }
    out
}

/// Micro-averaged entity precision, recall and F1 over sentences.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityScores {
    /// Correct predicted entities / predicted entities.
    pub precision: f64,
    /// Correct predicted entities / gold entities.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// Entity-level scores of predicted against gold IOB2 sequences (exact type and span).
///
/// ```
/// use interference::task::entity_scores;
/// let gold = vec![vec!["B-PER", "I-PER", "O", "B-LOC"]];
/// let pred = vec![vec!["B-PER", "I-PER", "O", "B-ORG"]];
/// assert_eq!(entity_scores(&gold, &pred).f1, 0.5);
/// ```
pub fn entity_scores<S: AsRef<str>>(gold: &[Vec<S>], predicted: &[Vec<S>]) -> EntityScores {
    let (mut right, mut n_gold, mut n_pred) = (0usize, 0usize, 0usize);
    for (g, p) in gold.iter().zip(predicted) {
        let g: Vec<&str> = g.iter().map(AsRef::as_ref).collect();
        let p: Vec<&str> = p.iter().map(AsRef::as_ref).collect();
        let gold_set: HashSet<Span> = entities(&g).into_iter().collect();
        let pred = entities(&p);
        n_gold += gold_set.len();
        n_pred += pred.len();
        right += pred.iter().filter(|e| gold_set.contains(*e)).count();
    }
    let precision = if n_pred == 0 { 0.0 } else { right as f64 / n_pred as f64 };
    let recall = if n_gold == 0 { 0.0 } else { right as f64 / n_gold as f64 };
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    EntityScores { precision, recall, f1 }
}
