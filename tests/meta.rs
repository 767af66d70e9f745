//! The treatment's numerics: the mixed Hessian–vector product against its closed form, the
//! meta-gradient against finite differences of the meta objective (exact and
//! finite-difference orders), and gradient surgery against a direct vector implementation.

use candle_core::{Device, Tensor, Var};
use interference::grads::enable_second_order;
use interference::kernels::Kernels;
use interference::rng::{stream, Purpose};
use interference::train::{gradvac, pcgrad, MetaOrder};
use rand::seq::SliceRandom;

#[path = "common/meta_fd.rs"]
mod meta_fd;

fn v(values: &[f64]) -> Var {
    Var::new(values, &Device::Cpu).unwrap()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_vec1().unwrap()
}

/// f(θ, φ) = Σ θ_i² φ_i + (θ·φ)², whose mixed Hessian–vector product is
/// ∇φ(∇θf · v) = 2 θ⊙v + 2 (φ·v) θ + 2 (θ·φ) v.
fn f(theta: &Tensor, phi: &Tensor) -> Tensor {
    let a = (theta.sqr().unwrap() * phi).unwrap().sum_all().unwrap();
    let b = (theta * phi).unwrap().sum_all().unwrap().sqr().unwrap();
    (a + b).unwrap()
}

#[test]
fn mixed_hessian_vector_product_matches_its_closed_form() {
    enable_second_order();
    let (t, p, dir) = ([0.3, -1.2, 0.7], [1.1, 0.4, -0.5], [0.2, 0.9, -1.3]);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let closed: Vec<f64> =
        (0..3).map(|i| 2.0 * t[i] * dir[i] + 2.0 * dot(&p, &dir) * t[i] + 2.0 * dot(&t, &p) * dir[i]).collect();

    // Exact: differentiate ∇θf · v with respect to φ (double backprop).
    let (theta, phi) = (v(&t), v(&p));
    let grads = f(theta.as_tensor(), phi.as_tensor()).backward().unwrap();
    let g_theta = grads.get(theta.as_tensor()).unwrap();
    let dir_t = Tensor::new(&dir, &Device::Cpu).unwrap();
    let exact =
        host(&(g_theta * &dir_t).unwrap().sum_all().unwrap().backward().unwrap().get(phi.as_tensor()).unwrap().clone());

    // Finite differences: [∇φ f(θ + εv, φ) − ∇φ f(θ − εv, φ)] / 2ε.
    let eps = 1e-5;
    let grad_phi_at = |s: f64| {
        let shifted = (theta.as_tensor() + (&dir_t * (s * eps)).unwrap()).unwrap().detach();
        host(f(&shifted, phi.as_tensor()).backward().unwrap().get(phi.as_tensor()).unwrap())
    };
    let (plus, minus) = (grad_phi_at(1.0), grad_phi_at(-1.0));
    let fd: Vec<f64> = plus.iter().zip(&minus).map(|(a, b)| (a - b) / (2.0 * eps)).collect();
    let err = |x: &[f64]| x.iter().zip(&closed).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!(
        "closed form {closed:?}\nexact double backprop error {:e}, finite differences error {:e}",
        err(&exact),
        err(&fd)
    );
    assert!(err(&exact) < 1e-12);
    assert!(err(&fd) < 1e-7);
}

#[test]
fn meta_gradient_matches_finite_differences_of_the_meta_objective() {
    enable_second_order();
    let errors = meta_fd::meta_gradient_errors(
        Kernels::Reference,
        &[MetaOrder::Exact, MetaOrder::FiniteDifference, MetaOrder::FirstOrder],
    );
    let (exact, fd, first) = (errors[0], errors[1], errors[2]);
    println!("meta-gradient relative error vs finite differences of M(φ): exact {exact:e}, finite-difference HVP {fd:e}, first order {first:e}");
    assert!(exact < 1e-5, "exact {exact}");
    assert!(fd < 1e-4, "finite difference {fd}");
    assert!(first > 1e-3, "the second-order term should matter here: first-order error {first}");
}

/// PCGrad on explicit vectors, the way the paper writes it.
fn pcgrad_direct(g: &[Vec<f64>], rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f64> {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let n = g.len();
    let mut total = vec![0.0; g[0].len()];
    for i in 0..n {
        let mut gi = g[i].clone();
        let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        others.shuffle(rng);
        for j in others {
            let d = dot(&gi, &g[j]);
            if d < 0.0 {
                let c = d / dot(&g[j], &g[j]);
                gi.iter_mut().zip(&g[j]).for_each(|(x, y)| *x -= c * y);
            }
        }
        total.iter_mut().zip(&gi).for_each(|(t, x)| *t += x);
    }
    total
}

fn gram_of(g: &[Vec<f64>]) -> Vec<f64> {
    let n = g.len();
    (0..n * n).map(|k| g[k / n].iter().zip(&g[k % n]).map(|(x, y)| x * y).sum()).collect()
}

#[test]
fn surgery_on_gram_matrices_matches_surgery_on_vectors() {
    let g = vec![vec![1.0, 0.5, -0.3, 2.0], vec![-0.8, 0.2, 0.9, -1.5], vec![0.1, -1.0, 0.4, 0.3]];
    let coeffs = pcgrad(&gram_of(&g), 3, &mut stream(3, Purpose::Surgery, 0));
    let from_coeffs: Vec<f64> = (0..4).map(|d| (0..3).map(|k| coeffs[k] * g[k][d]).sum()).collect();
    let direct = pcgrad_direct(&g, &mut stream(3, Purpose::Surgery, 0));
    let err = from_coeffs.iter().zip(&direct).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("PCGrad coefficients {coeffs:?}; max difference to the vector implementation {err:e}");
    assert!(err < 1e-12);
    // Conflict-free gradients pass through unchanged.
    let aligned = vec![vec![1.0, 0.0], vec![0.5, 0.5]];
    assert_eq!(pcgrad(&gram_of(&aligned), 2, &mut stream(0, Purpose::Surgery, 0)), vec![1.0, 1.0]);

    // GradVac: the same against the vector form, on targets that make it act.
    let mut ema = vec![0.0, 0.5, 0.3, 0.5, 0.0, 0.9, 0.2, 0.6, 0.0];
    let mut ema_direct = ema.clone();
    let coeffs = gradvac(&gram_of(&g), 3, &mut ema, 0.1, &mut stream(5, Purpose::Surgery, 0));
    let modified = gradvac_direct(&g, &mut ema_direct, 0.1, &mut stream(5, Purpose::Surgery, 0));
    let from_coeffs: Vec<f64> = (0..4).map(|d| (0..3).map(|k| coeffs[k] * g[k][d]).sum()).collect();
    let direct: Vec<f64> = (0..4).map(|d| modified.iter().map(|m| m[d]).sum()).collect();
    let err = from_coeffs.iter().zip(&direct).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("GradVac coefficients {coeffs:?}; max difference to the vector implementation {err:e}");
    assert!(err < 1e-12);
    assert!(ema.iter().zip(&ema_direct).all(|(a, b)| (a - b).abs() < 1e-12), "{ema:?} vs {ema_direct:?}");

    // With two orthogonal gradients and a target of 0.5, the first is turned to cosine 0.5
    // exactly, and the target moves towards the observed 0 by β.
    let orth = vec![vec![1.0, 0.0], vec![0.0, 2.0]];
    let mut ema = vec![0.0, 0.5, 0.5, 0.0];
    let modified = gradvac_direct(&orth, &mut ema, 0.1, &mut stream(0, Purpose::Surgery, 0));
    let cos = modified[0][1] / modified[0][0].hypot(modified[0][1]);
    println!("GradVac moved cos(g0, g1) from 0 to {cos:.12} (target 0.5); targets now {ema:?}");
    assert!((cos - 0.5).abs() < 1e-12);
    assert!((ema[1] - 0.45).abs() < 1e-12, "EMA: (1 − 0.1)·0.5 + 0.1·0");
}

/// GradVac on explicit vectors (Wang et al. 2021, Algorithm 1); returns every g_i′.
fn gradvac_direct(g: &[Vec<f64>], ema: &mut [f64], beta: f64, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<Vec<f64>> {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let n = g.len();
    (0..n)
        .map(|i| {
            let mut gi = g[i].clone();
            let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            others.shuffle(rng);
            for j in others {
                let (ni, nj) = (dot(&gi, &gi).sqrt(), dot(&g[j], &g[j]).sqrt());
                let phi = dot(&gi, &g[j]) / (ni * nj);
                let target = ema[i * n + j];
                if phi < target {
                    let c = ni * (target * (1.0 - phi * phi).sqrt() - phi * (1.0 - target * target).sqrt())
                        / (nj * (1.0 - target * target).sqrt());
                    gi.iter_mut().zip(&g[j]).for_each(|(x, y)| *x += c * y);
                }
                ema[i * n + j] = (1.0 - beta) * target + beta * phi;
            }
            gi
        })
        .collect()
}

#[test]
fn hand_written_pass_runs_and_agrees_while_second_order_is_on() {
    use interference::grads::mlm_gradients;
    enable_second_order();
    let mut model = meta_fd::tiny_model(Kernels::Fused);
    let probe = Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu).unwrap();
    assert!(!Kernels::Fused.fused_for(&probe) && Kernels::Fused.hand_written_for(&probe));
    let batch = meta_fd::batch("aa", [2, 5, 4, 9, 3, 11], vec![2, 4], vec![6, 13]);
    let fused = mlm_gradients(&model, &batch).unwrap();
    model.set_kernels(Kernels::Reference);
    let reference = mlm_gradients(&model, &batch).unwrap();
    assert!((fused.loss - reference.loss).abs() < 1e-12);
    for (a, b) in fused.grads.iter().zip(&reference.grads) {
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(diff < 1e-10, "{diff:e}");
    }
}
