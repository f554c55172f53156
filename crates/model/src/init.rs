//! Random initialisation by the muP (or SP) rules, reproducible from one seed.
//!
//! Each tensor draws from its own generator, seeded by the run seed and the tensor's name, so a
//! tensor's initial values do not depend on which other tensors exist or in what order they are
//! built.

use crate::config::ModelConfig;
use crate::model::MiniCpm;
use crate::mup::{rule, Parametrization, TensorRole};
use crate::weights::Weights;
use burn::tensor::Device;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::convert::Infallible;

/// A stable 64-bit seed for one tensor (FNV-1a over the name, mixed with the run seed).
pub fn tensor_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Values for one tensor under the parametrisation's rule.
pub fn init_values(
    cfg: &ModelConfig,
    p: Parametrization,
    seed: u64,
    name: &str,
    shape: &[usize],
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    match rule(cfg, p, TensorRole::of(name)).init_std {
        None => vec![1.0; n],
        Some(std) => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(tensor_seed(seed, name));
            (0..n)
                .map(|_| {
                    ({
                        let z: f64 = StandardNormal.sample(&mut rng);
                        z * std
                    }) as f32
                })
                .collect()
        }
    }
}

/// A freshly initialised model. `cfg` must already be resolved for `p` (see [`crate::mup::resolve`]).
pub fn init_model(cfg: &ModelConfig, p: Parametrization, seed: u64, device: &Device) -> MiniCpm {
    let mut draw = |name: &str, shape: &[usize]| -> Result<_, Infallible> {
        Ok(init_values(cfg, p, seed, name, shape))
    };
    match MiniCpm::new(&mut Weights::new(&mut draw, device), cfg) {
        Ok(m) => m,
        Err(never) => match never {},
    }
}
