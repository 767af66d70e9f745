//! The finite-difference meta-gradient on the fused kernels: in this test binary candle's
//! second-order switch stays off, so the look-ahead and meta losses run the fused ops and
//! their hand-written backward passes (`tests/meta.rs` covers the exact order, which needs the
//! switch and therefore the reference ops).

use interference::kernels::Kernels;
use interference::train::MetaOrder;

#[path = "common/meta_fd.rs"]
mod meta_fd;

#[test]
fn finite_difference_meta_gradient_on_fused_kernels_matches_finite_differences() {
    let probe = candle_core::Tensor::zeros(2, candle_core::DType::F64, &candle_core::Device::Cpu).unwrap();
    assert!(Kernels::Fused.fused_for(&probe), "the fused kernels should run in this process");
    let errors = meta_fd::meta_gradient_errors(Kernels::Fused, &[MetaOrder::FiniteDifference, MetaOrder::FirstOrder]);
    println!("fused kernels: finite-difference HVP {:e}, first order {:e}", errors[0], errors[1]);
    assert!(errors[0] < 1e-4, "finite difference {}", errors[0]);
    assert!(errors[1] > 1e-3, "the second-order term should matter here: first-order error {}", errors[1]);
}
