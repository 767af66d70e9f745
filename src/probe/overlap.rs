//! Overlap of per-language parameter masks: which weights each language keeps, and how much
//! two languages' kept sets share, per layer, against chance.
//!
//! A mask marks the weights a language "keeps" at a given density (`keep`, the share of weights
//! kept). Two methods produce masks — learned masks ([`learned_mask_overlap`]) and Fisher
//! importance ([`fisher_overlap`]) — and both report the same [`OverlapReport`].
//!
//! [`learned_mask_overlap`]: crate::probe::learned_mask_overlap
//! [`fisher_overlap`]: crate::probe::fisher_overlap

use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::model::{LayerSlot, ParamGroup, ParamRegistry};
use crate::probe::ProbeBatches;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;

/// Which weights get masks.
///
/// Selection reads the registry's metadata, never name substrings: the block matrices are
/// the [`ParamGroup::Shared`] parameters of a [`LayerSlot::Layer`] slot with rank 2 (the
/// attention projections q, k, v, o and the feed-forward fc1, fc2; biases, LayerNorms and
/// adapters are left out). The token embedding is the parameter registered under its stable
/// name `tok.weight` (it is tied to the output projection); the position and language
/// embeddings are left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskScope {
    /// The shared weight matrices of every transformer block.
    #[default]
    Blocks,
    /// The block matrices and the token embedding (reported under [`LayerSlot::Embeddings`]).
    BlocksAndEmbeddings,
}

/// Stable registry name of the token embedding.
const TOKEN_EMBEDDING: &str = "tok.weight";

impl MaskScope {
    /// Registry indices of the masked parameters, in registry order.
    ///
    /// # Errors
    /// [`Error::Config`] when the scope selects nothing (a model without blocks) or the token
    /// embedding is missing.
    pub fn params(self, registry: &ParamRegistry) -> Result<Vec<usize>> {
        let token = match self {
            MaskScope::Blocks => None,
            MaskScope::BlocksAndEmbeddings => Some(registry.index(TOKEN_EMBEDDING)?),
        };
        let selected: Vec<usize> = (0..registry.len())
            .filter(|&i| {
                let info = &registry.infos()[i];
                let block = matches!(info.slot, LayerSlot::Layer(_))
                    && info.group == ParamGroup::Shared
                    && registry.vars()[i].rank() == 2;
                block || Some(i) == token
            })
            .collect();
        if selected.is_empty() {
            return Err(Error::Config(format!("mask scope {self:?} selects no parameters of this model")));
        }
        Ok(selected)
    }
}

/// Jaccard overlap of two languages' masks in one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairOverlap {
    /// The first language.
    pub a: Lang,
    /// The second language.
    pub b: Lang,
    /// |A ∩ B| / |A ∪ B| of their kept weights, averaged over the two replicate masks of
    /// each language (replicate r of `a` against replicate r of `b`).
    pub jaccard: f64,
}

/// Mask overlaps in one layer at one density.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerOverlap {
    /// The layer; its masked weights are concatenated into one mask.
    pub slot: LayerSlot,
    /// Share of weights kept, in (0, 1].
    pub keep: f64,
    /// Every pair of distinct languages, in language order.
    pub pairs: Vec<PairOverlap>,
    /// Mean over languages of the Jaccard between a language's two replicate masks (two
    /// seeds, or two disjoint halves of its batches): the overlap that noise in the method
    /// alone leaves. Cross-language overlap well below it marks language-specific weights.
    pub same_language_baseline: f64,
    /// Expected Jaccard of two independent random masks of density `keep`:
    /// `keep / (2 − keep)` (see [`random_jaccard`]).
    pub random_baseline: f64,
}

impl LayerOverlap {
    /// Mean Jaccard over the language pairs (0 with fewer than two languages).
    pub fn mean_pair_jaccard(&self) -> f64 {
        if self.pairs.is_empty() {
            return 0.0;
        }
        self.pairs.iter().map(|p| p.jaccard).sum::<f64>() / self.pairs.len() as f64
    }
}

/// Per-layer mask overlaps between languages at several densities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlapReport {
    /// How the masks were found: `"learned_mask"` or `"fisher"`.
    pub method: String,
    /// The languages, in order.
    pub langs: Vec<Lang>,
    /// One entry per density and layer: densities in the order requested, layers in
    /// network order (embeddings first) within each density.
    pub layers: Vec<LayerOverlap>,
}

/// Jaccard index |A ∩ B| / |A ∪ B| of two masks read as sets of kept indices; 0 when both
/// are empty. A shorter mask is one whose missing entries are not kept.
///
/// ```
/// use interference::probe::jaccard;
/// assert_eq!(jaccard(&[true, true, false], &[false, true, true]), 1.0 / 3.0);
/// assert_eq!(jaccard(&[false, false], &[false, false]), 0.0);
/// ```
pub fn jaccard(a: &[bool], b: &[bool]) -> f64 {
    let n = a.len().max(b.len());
    let at = |m: &[bool], i: usize| m.get(i).copied().unwrap_or(false);
    let (mut both, mut either) = (0usize, 0usize);
    for i in 0..n {
        let (x, y) = (at(a, i), at(b, i));
        both += usize::from(x && y);
        either += usize::from(x || y);
    }
    if either == 0 {
        0.0
    } else {
        both as f64 / either as f64
    }
}

/// Expected Jaccard of two independent uniformly random masks that each keep a share `keep`
/// of many weights: `keep / (2 − keep)` (the limit for large masks).
pub fn random_jaccard(keep: f64) -> f64 {
    keep / (2.0 - keep)
}

/// How many of `n` entries a mask of density `keep` keeps: `round(keep · n)`, at least 1 and
/// at most `n` (0 only when `n` is 0). A NaN or negative `keep` keeps one entry.
pub fn keep_count(n: usize, keep: f64) -> usize {
    if n == 0 {
        return 0;
    }
    // `as` saturates: NaN and negatives become 0, then the clamp keeps one.
    ((keep * n as f64).round() as usize).clamp(1, n)
}

/// The mask keeping the [`keep_count`]`(scores.len(), keep)` highest scores. Ties go to the
/// lower index and NaN counts as −∞, so the result is deterministic.
///
/// ```
/// use interference::probe::top_k_mask;
/// assert_eq!(top_k_mask(&[0.1, 0.5, 0.3, 0.5], 0.5), vec![false, true, false, true]);
/// assert_eq!(top_k_mask(&[1.0, 1.0, 1.0], 0.01), vec![true, false, false]);
/// ```
pub fn top_k_mask(scores: &[f32], keep: f64) -> Vec<bool> {
    let n = scores.len();
    let mut mask = vec![false; n];
    let k = keep_count(n, keep);
    if k == 0 {
        return mask;
    }
    // -0.0 and 0.0 tie; NaN sorts last.
    let key = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x + 0.0 };
    let before = |a: &usize, b: &usize| key(scores[*b]).total_cmp(&key(scores[*a])).then(a.cmp(b));
    let mut order: Vec<usize> = (0..n).collect();
    if k < n {
        order.select_nth_unstable_by(k - 1, before);
    }
    for &i in &order[..k] {
        mask[i] = true;
    }
    mask
}

/// Masks of every language: `masks[l][j]` is language `l`'s mask of the `j`-th masked
/// parameter (flattened).
pub(crate) type LangMasks = Vec<Vec<Vec<bool>>>;

/// Checks one density: finite and in (0, 1].
pub(crate) fn check_keep(keep: f64) -> Result<()> {
    if keep.is_finite() && keep > 0.0 && keep <= 1.0 {
        Ok(())
    } else {
        Err(Error::Config(format!("keep {keep} is not a density in (0, 1]")))
    }
}

/// Checks a list of densities: non-empty, each finite and in (0, 1].
pub(crate) fn check_keeps(keeps: &[f64]) -> Result<()> {
    if keeps.is_empty() {
        return Err(Error::Config("keeps is empty: give at least one density in (0, 1]".into()));
    }
    keeps.iter().try_for_each(|&k| check_keep(k))
}

/// The two disjoint halves of every language's K probe batches: the first ⌊K/2⌋ and the rest.
///
/// # Errors
/// [`Error::Config`] naming K when there are fewer than 2 batches per language.
pub(crate) fn batch_halves(batches: &ProbeBatches, what: &str) -> Result<[Range<usize>; 2]> {
    let k = batches.per_language();
    if k < 2 {
        return Err(Error::Config(format!(
            "{what} compares masks from two disjoint halves of each language's probe batches: needs K ≥ 2 \
             batches per language, got K = {k}"
        )));
    }
    Ok([0..k / 2, k / 2..k])
}

/// Per-layer overlaps at density `keep` from two replicate mask sets of every language.
///
/// `slots[j]` is the layer of masked parameter `j`; a layer's masks are the concatenation of
/// its parameters' masks. Pairs compare replicate r of one language with replicate r of the
/// other, averaged over r; the same-language baseline compares a language's replicates.
pub(crate) fn layer_overlaps(
    langs: &[Lang],
    slots: &[LayerSlot],
    keep: f64,
    replicas: [&LangMasks; 2],
) -> Result<Vec<LayerOverlap>> {
    for masks in replicas {
        if masks.len() != langs.len() || masks.iter().any(|m| m.len() != slots.len()) {
            return Err(Error::Shape(format!(
                "masks for {} languages × {:?} parameters, expected {} × {}",
                masks.len(),
                masks.iter().map(Vec::len).collect::<Vec<_>>(),
                langs.len(),
                slots.len()
            )));
        }
    }
    let mut by_slot: BTreeMap<LayerSlot, Vec<usize>> = BTreeMap::new();
    for (j, slot) in slots.iter().enumerate() {
        by_slot.entry(*slot).or_default().push(j);
    }
    let concat = |masks: &LangMasks, l: usize, js: &[usize]| -> Vec<bool> {
        js.iter().flat_map(|&j| masks[l][j].iter().copied()).collect()
    };
    let layers = by_slot
        .into_iter()
        .map(|(slot, js)| {
            let per_replica: Vec<Vec<Vec<bool>>> =
                replicas.iter().map(|masks| (0..langs.len()).map(|l| concat(masks, l, &js)).collect()).collect();
            let mut pairs = Vec::new();
            for a in 0..langs.len() {
                for b in a + 1..langs.len() {
                    let j = per_replica.iter().map(|m| jaccard(&m[a], &m[b])).sum::<f64>() / per_replica.len() as f64;
                    pairs.push(PairOverlap { a: langs[a].clone(), b: langs[b].clone(), jaccard: j });
                }
            }
            let same = (0..langs.len()).map(|l| jaccard(&per_replica[0][l], &per_replica[1][l])).sum::<f64>()
                / langs.len().max(1) as f64;
            LayerOverlap { slot, keep, pairs, same_language_baseline: same, random_baseline: random_jaccard(keep) }
        })
        .collect();
    Ok(layers)
}
