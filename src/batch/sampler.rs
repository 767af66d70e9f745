//! Temperature sampling across languages: p_l ∝ n_l^α.

use crate::error::{Error, Result};
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::Rng;

/// Draws a language index with probability proportional to `n_l^alpha`, where `n_l` is the
/// size of language `l`'s training data. `alpha = 1` follows the data; `alpha = 0` is uniform;
/// XLM uses 0.5 and XLM-R 0.3 to up-sample low-resource languages.
#[derive(Clone, Debug)]
pub struct TemperatureSampler {
    probs: Vec<f64>,
    dist: WeightedIndex<f64>,
}

impl TemperatureSampler {
    /// A sampler over languages of sizes `counts`.
    ///
    /// ```
    /// use interference::batch::TemperatureSampler;
    /// let s = TemperatureSampler::new(&[900, 100], 0.5).unwrap();
    /// assert!((s.probs()[0] - 0.75).abs() < 1e-12);
    /// ```
    pub fn new(counts: &[usize], alpha: f64) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::Config(format!("temperature alpha must be finite and >= 0, got {alpha}")));
        }
        if counts.is_empty() || counts.contains(&0) {
            return Err(Error::Config(format!("every language needs training data, sizes were {counts:?}")));
        }
        let weights: Vec<f64> = counts.iter().map(|&n| (n as f64).powf(alpha)).collect();
        let total: f64 = weights.iter().sum();
        let probs = weights.iter().map(|w| w / total).collect();
        let dist = WeightedIndex::new(&weights).map_err(|e| Error::Config(format!("sampling weights: {e}")))?;
        Ok(TemperatureSampler { probs, dist })
    }

    /// The probability of each language.
    pub fn probs(&self) -> &[f64] {
        &self.probs
    }

    /// Draws one language index.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.dist.sample(rng)
    }
}
