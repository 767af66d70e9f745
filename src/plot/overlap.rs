//! Mask overlap per layer: how much two languages' kept weights share, against the overlap of
//! one language with itself (method noise) and of random masks (chance).

use super::bars::{bar_chart, BarRow, BarSeries};
use super::figure::Figure;
use crate::error::{Error, Result};
use crate::probe::{slot_name, OverlapReport};

/// Per layer at density `keep`: the cross-language Jaccard overlap of the masks (mean ± sd
/// over language pairs) beside the same-language and random baselines. Cross-language bars
/// well below the same-language ones mark language-specific weights.
///
/// # Errors
/// [`Error::Config`] naming `keep` (and the densities present) when the report has no layer
/// at that density.
pub fn mask_overlap(report: &OverlapReport, keep: f64) -> Result<Figure> {
    let layers: Vec<_> = report.layers.iter().filter(|l| (l.keep - keep).abs() < 1e-9).collect();
    if layers.is_empty() {
        let mut keeps: Vec<String> = Vec::new();
        for l in &report.layers {
            let k = format!("{}", l.keep);
            if !keeps.contains(&k) {
                keeps.push(k);
            }
        }
        return Err(Error::Config(format!(
            "no layers at keep {keep} in the {} overlap report (keeps: {})",
            report.method,
            keeps.join(", ")
        )));
    }
    let mut cross = Vec::new();
    let mut same = Vec::new();
    let mut random = Vec::new();
    for l in &layers {
        let name = slot_name(l.slot);
        let pairs: Vec<f64> = l.pairs.iter().map(|p| p.jaccard).collect();
        cross.push(BarRow::from_samples(name.clone(), &pairs));
        same.push(BarRow::new(name.clone(), l.same_language_baseline, 0.0));
        random.push(BarRow::new(name, l.random_baseline, 0.0));
    }
    let method = match report.method.as_str() {
        "learned_mask" => "Learned masks".to_string(),
        "fisher" => "Fisher masks".to_string(),
        other => other.replace('_', " "),
    };
    let title = format!("{method}: overlap per layer · keep {keep}");
    bar_chart(
        &title,
        "Jaccard",
        &[
            BarSeries::new("cross-language (mean ± sd over pairs)", cross),
            BarSeries::new("same language (replicates)", same),
            BarSeries::new("random masks", random),
        ],
    )
}
