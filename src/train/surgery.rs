//! Gradient surgery baselines on per-language gradients of the shared parameters:
//! PCGrad (Yu et al. 2020) and GradVac (Wang et al. 2021).
//!
//! Each language's gradient g_i of the step (weighted by its share of masked tokens) is
//! computed by its own backward pass. Surgery only ever replaces g_i by a linear combination
//! of the g_j, so it runs on the host on Gram matrices ⟨g_i, g_j⟩ (the same per-tensor Grams
//! the probes use) with a coefficient vector per language, and the device forms each
//! parameter's final gradient once, as Σ_j c_j g_j. Adapters and other language-specific
//! parameters keep the plain sum.

use super::config::{Granularity, Method};
use super::trainer::{update, LangLoss, StepReport, Trainer};
use crate::error::Result;
use crate::grads::{combine, group_gram, param_grams};
use crate::model::ParamGroup;
use crate::rng::{stream, Purpose};
use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// `⟨Σ_k a_k g_k, Σ_k b_k g_k⟩` from the Gram matrix of the g_k.
fn inner(gram: &[f64], n: usize, a: &[f64], b: &[f64]) -> f64 {
    (0..n).map(|i| a[i] * (0..n).map(|j| gram[i * n + j] * b[j]).sum::<f64>()).sum()
}

/// Unit coefficient vector of g_j.
fn unit(n: usize, j: usize) -> Vec<f64> {
    (0..n).map(|k| f64::from(u8::from(k == j))).collect()
}

/// The loop both methods share: for each language i, for the other languages j in random
/// order, `adjust(i, j, a)` may change g_i′'s coefficients `a`; returns the coefficients of
/// Σ_i g_i′ over the g_k.
fn per_pair(n: usize, rng: &mut ChaCha8Rng, mut adjust: impl FnMut(usize, usize, &mut [f64])) -> Vec<f64> {
    let mut total = vec![0.0; n];
    for i in 0..n {
        let mut a = unit(n, i);
        let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        others.shuffle(rng);
        for j in others {
            adjust(i, j, &mut a);
        }
        for (t, x) in total.iter_mut().zip(&a) {
            *t += x;
        }
    }
    total
}

/// PCGrad: for each i, for the other j in random order, if ⟨g_i′, g_j⟩ < 0 then
/// g_i′ ← g_i′ − ⟨g_i′, g_j⟩/‖g_j‖² g_j. Returns the coefficients of Σ_i g_i′ over the g_k.
pub fn pcgrad(gram: &[f64], n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    per_pair(n, rng, |_, j, a| {
        let dot = inner(gram, n, a, &unit(n, j));
        let norm2 = gram[j * n + j];
        if dot < 0.0 && norm2 > 0.0 {
            a[j] -= dot / norm2;
        }
    })
}

/// GradVac: for each i, for the other j in random order, with φ the cosine of g_i′ and g_j and
/// φ̂ its moving-average target (`ema[i·n + j]`): if φ < φ̂ then
/// g_i′ ← g_i′ + ‖g_i′‖ (φ̂√(1−φ²) − φ√(1−φ̂²)) / (‖g_j‖√(1−φ̂²)) · g_j; then φ̂ ← (1−β)φ̂ + βφ.
/// Returns the coefficients of Σ_i g_i′ and updates `ema`.
pub fn gradvac(gram: &[f64], n: usize, ema: &mut [f64], beta: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    per_pair(n, rng, |i, j, a| {
        let (ni, nj) = (inner(gram, n, a, a).max(0.0).sqrt(), gram[j * n + j].max(0.0).sqrt());
        if ni == 0.0 || nj == 0.0 {
            return;
        }
        let phi = (inner(gram, n, a, &unit(n, j)) / (ni * nj)).clamp(-1.0, 1.0);
        let target = ema[i * n + j];
        if phi < target {
            let coef = ni * (target * (1.0 - phi * phi).sqrt() - phi * (1.0 - target * target).sqrt())
                / (nj * (1.0 - target * target).sqrt().max(1e-12));
            a[j] += coef;
        }
        ema[i * n + j] = (1.0 - beta) * target + beta * phi;
    })
}

impl Trainer {
    /// One PCGrad or GradVac step: a backward pass per language, surgery on the shared
    /// parameters' gradients, one AdamW update.
    pub(super) fn surgery_step(&mut self) -> Result<StepReport> {
        let batches = self.batches_at(self.step)?;
        let total_targets: usize = batches.iter().map(|b| b.targets.len()).sum();
        let mut dropout = stream(self.config.seed, Purpose::Dropout, self.step as u64);
        let params = self.model.registry().tensors();
        let mut languages: Vec<LangLoss> = Vec::with_capacity(batches.len());
        let mut sets: Vec<Vec<Tensor>> = Vec::with_capacity(batches.len());
        let mut loss = 0.0;
        for batch in &batches {
            let weight = batch.targets.len() as f64 / total_targets as f64;
            let (l, batch_grads) = self.model.weighted_loss_and_grads(&params, batch, Some(&mut dropout), weight)?;
            let reported = self.checked(&l, batch)?;
            loss += reported.loss * weight;
            languages.push(reported);
            sets.push(
                batch_grads
                    .into_iter()
                    .zip(&params)
                    .map(|(g, p)| Ok(g.map_or_else(|| p.zeros_like(), |g| Ok(g.detach()))?))
                    .collect::<Result<_>>()?,
            );
        }
        let n = sets.len();
        let set_refs: Vec<&[Tensor]> = sets.iter().map(Vec::as_slice).collect();
        let registry = self.model.registry();
        let shared = registry.indices_in(&ParamGroup::Shared);
        let groups: Vec<Vec<usize>> = match self.config.surgery.granularity {
            Granularity::Model => vec![(0..shared.len()).collect()],
            Granularity::Layer => registry.slots_of(&shared).into_iter().map(|(_, m)| m).collect(),
        };
        let grams = param_grams(&set_refs, &shared)?;
        let mut rng = stream(self.config.seed, Purpose::Surgery, self.step as u64);
        let langs = self.data.langs().len();
        if self.surgery_state.len() != groups.len() * langs * langs {
            self.surgery_state = vec![0.0; groups.len() * langs * langs];
        }
        // Language index of each set, to keep GradVac's targets per language pair.
        let lang_of: Vec<usize> = batches.iter().map(|b| self.data.langs().index(&b.lang)).collect::<Result<_>>()?;
        let mut grads: Vec<Option<Tensor>> =
            (0..params.len()).map(|p| combine(&set_refs, p, &vec![1.0; n]).map(Some)).collect::<Result<_>>()?;
        for (g, members) in groups.iter().enumerate() {
            let gram = group_gram(&grams, n, members);
            let coeffs = match self.config.method {
                Method::Gradvac => {
                    let table = &mut self.surgery_state[g * langs * langs..(g + 1) * langs * langs];
                    let mut ema: Vec<f64> =
                        (0..n * n).map(|k| table[lang_of[k / n] * langs + lang_of[k % n]]).collect();
                    let c = gradvac(&gram, n, &mut ema, self.config.surgery.gradvac_beta, &mut rng);
                    for (k, v) in ema.into_iter().enumerate() {
                        if k / n != k % n {
                            table[lang_of[k / n] * langs + lang_of[k % n]] = v;
                        }
                    }
                    c
                }
                _ => pcgrad(&gram, n, &mut rng),
            };
            for &m in members {
                grads[shared[m]] = Some(combine(&set_refs, shared[m], &coeffs)?);
            }
        }
        drop(sets);
        let lr = self.lr();
        let grad_norm = update(&self.model, &mut self.optimizer, grads, self.config.clip_norm, lr, self.step)?;
        Ok(StepReport { step: self.step + 1, loss, languages, lr, grad_norm, meta_loss: None })
    }
}
