//! Choosing where tensors live: `cpu`, `cuda` or `cuda:N`.

use crate::error::{Error, Result};
use candle_core::Device;

/// Parses `cpu`, `cuda` (GPU 0) or `cuda:N`; a CUDA device in a build without the `cuda`
/// feature, or without a GPU, is an error naming the value.
///
/// ```
/// assert!(interference::device::parse_device("cpu").unwrap().is_cpu());
/// assert!(interference::device::parse_device("tpu").is_err());
/// ```
pub fn parse_device(spec: &str) -> Result<Device> {
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(Error::Config(format!("unknown device {spec:?}: use cpu, cuda or cuda:N"))),
        },
    };
    Device::new_cuda(ordinal).map_err(|e| Error::Config(format!("device {spec:?} is not available: {e}")))
}

/// The default device: CUDA GPU 0 when built with the `cuda` feature and one is present,
/// else the CPU.
pub fn default_device() -> Device {
    if cfg!(feature = "cuda") {
        Device::new_cuda(0).unwrap_or(Device::Cpu)
    } else {
        Device::Cpu
    }
}

/// Lets CUDA f32 matrix products use TF32 tensor cores (faster, ~1e-3 relative precision);
/// a no-op on the CPU and in builds without the `cuda` feature.
pub fn set_tf32(enabled: bool) {
    candle_core::cuda::set_gemm_reduced_precision_f32(enabled);
}
