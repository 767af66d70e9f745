//! Counter-based random streams: every random draw of a run is a pure function of
//! `(seed, purpose, index)`, so a resumed run draws exactly what an uninterrupted one would.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is used for; distinct purposes never share a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Parameter initialisation.
    Init = 1,
    /// Choosing languages, sentences and masks for a training batch.
    Batch = 2,
    /// Dropout masks during training.
    Dropout = 3,
    /// Masks of evaluation batches (fixed across models so they compare).
    Eval = 4,
    /// Splitting a corpus into train and held-out parts.
    Split = 5,
    /// The random order of gradient surgery (PCGrad, GradVac).
    Surgery = 6,
    /// Initial scores of learned pruning masks.
    MaskScores = 7,
}

/// The random stream for `purpose` at `index` (a step number, a batch number) under `seed`.
///
/// ```
/// use interference::rng::{stream, Purpose};
/// use rand::Rng;
/// let a: u64 = stream(7, Purpose::Batch, 3).random();
/// let b: u64 = stream(7, Purpose::Batch, 3).random();
/// assert_eq!(a, b);
/// ```
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mixed = splitmix64(splitmix64(seed ^ splitmix64(purpose as u64)) ^ index);
    ChaCha8Rng::seed_from_u64(mixed)
}

/// One round of SplitMix64, a bijective 64-bit mixer.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
