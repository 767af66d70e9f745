//! With the `cuda` feature, compiles the fused CUDA kernels (src/kernels/cuda.cu) to PTX with
//! nvcc (CUDA_COMPUTE_CAP, default 90: H100/H200); without it, does nothing.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/kernels/cuda.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kernels.ptx");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let status = Command::new("nvcc")
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("src/kernels/cuda.cu")
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run nvcc (needed by the `cuda` feature; see .ci/build-cuda): {e}"));
    assert!(status.success(), "nvcc failed on src/kernels/cuda.cu");
}
