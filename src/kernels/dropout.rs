//! Dropout keep-masks drawn where the tensor lives: element `i` of a mask is a hash of
//! `(seed, i)` (the SplitMix64 finaliser), so a mask is one pass over fresh memory with no
//! generator state, and the same seed gives the same mask on any device. On the CPU the model
//! draws its masks from the run's ChaCha stream instead (`crate::model::layers`); this is the
//! GPU's generator, seeded from that stream.

use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Shape, Tensor};

/// The SplitMix64 finaliser (`mix64` in `cuda.cu`).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 32-bit draw of element `i` under `seed`.
fn word(seed: u64, i: u64) -> u32 {
    (mix64(seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i + 1))) >> 32) as u32
}

/// An f32 tensor of `shape` on `device` holding `0` (probability `p`, in `[0, 1)`) or
/// `1 / (1 − p)` per element, drawn from `seed`.
pub(crate) fn keep_mask(shape: impl Into<Shape>, p: f64, seed: u64, device: &Device) -> candle_core::Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        return Err(candle_core::Error::Msg(format!("dropout probability {p} is outside [0, 1)")));
    }
    let mask = Tensor::zeros(shape, DType::F32, device)?;
    let threshold = (p * 4_294_967_296.0).min(u32::MAX as f64) as u32;
    mask.inplace_op1(&KeepMask { seed, threshold, scale: (1.0 / (1.0 - p)) as f32 })?;
    Ok(mask)
}

/// Fills an f32 tensor with a keep-mask: `0` where the draw is below `threshold`, else `scale`.
struct KeepMask {
    seed: u64,
    threshold: u32,
    scale: f32,
}

impl InplaceOp1 for KeepMask {
    fn name(&self) -> &'static str {
        "dropout-keep-mask"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let mask = super::cpu::slice_mut::<f32>(s, l, self.name())?;
        for (i, m) in mask.iter_mut().enumerate() {
            *m = if word(self.seed, i as u64) < self.threshold { 0.0 } else { self.scale };
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> candle_core::Result<()> {
        super::cuda::keep_mask((s, l), self.seed, self.threshold, self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_drop_the_asked_fraction_and_repeat_with_their_seed() {
        let dev = Device::Cpu;
        let mask =
            |seed| keep_mask((100, 1000), 0.1, seed, &dev).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let a = mask(7);
        let dropped = a.iter().filter(|&&m| m == 0.0).count() as f64 / a.len() as f64;
        // 10⁵ draws: the standard error of the fraction is ~1e-3.
        assert!((dropped - 0.1).abs() < 5e-3, "dropped {dropped}");
        assert!(a.iter().all(|&m| m == 0.0 || (m - 1.0 / 0.9).abs() < 1e-6));
        assert_eq!(a, mask(7));
        assert_ne!(a, mask(8));
        assert!(keep_mask(3, 1.0, 0, &dev).is_err());
    }
}
