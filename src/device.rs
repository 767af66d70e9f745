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

/// Keeps GPU memory that the model frees in CUDA's stream-ordered pool, where the next step's
/// allocations find it, instead of handing it back to the driver at every synchronisation (the
/// pool's default release threshold is 0, and a training step synchronises at least once, to
/// read its loss). Called by [`crate::model::MlmModel::new`]; a no-op on the CPU and in builds
/// without the `cuda` feature.
pub fn retain_freed_device_memory(device: &Device) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        use candle_core::cuda_backend::cudarc::driver::{result, sys};
        use candle_core::cuda_backend::WrapErr;
        let stream = d.cuda_stream();
        let mut threshold = u64::MAX;
        // SAFETY: the device handle comes from candle's live context, and the release threshold
        // attribute is a u64 (CUDA driver API, cuMemPoolSetAttribute).
        unsafe {
            let pool = result::device::get_default_mem_pool(stream.context().cu_device()).w()?;
            let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
            result::mem_pool::set_attribute(pool, attr, (&mut threshold as *mut u64).cast()).w()?;
        }
    }
    let _ = device;
    Ok(())
}

/// Keeps memory that the model frees inside the process instead of returning it to the OS.
///
/// A training step allocates and frees the same few-megabyte activation buffers over and
/// over; glibc hands blocks above its mmap threshold back to the kernel on every free, and the
/// next step pays for fresh zeroed pages (about 30% of a CPU step at d=256). Raising the mmap
/// and trim thresholds to their maximum keeps those blocks for reuse, and one arena for all
/// threads keeps them where the next step looks (a training step runs on a thread of rayon's
/// pool, whose own arenas would give back memory by their own rules). Called by
/// [`crate::model::MlmModel::new`]; once per process, and a no-op outside glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // glibc caps the mmap threshold at half its heap size (32 MiB on 64-bit).
            const MMAP_THRESHOLD_MAX: libc::c_int = 32 << 20;
            // SAFETY: mallopt only changes allocator tunables; it is safe to call at any time.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX);
                libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        });
    }
}
