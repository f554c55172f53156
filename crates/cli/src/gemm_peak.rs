//! The machine's f32 matrix-multiply throughput, measured through the model's linear layer so
//! that MFU is quoted against the GEMM the training step actually calls (direct GEMM calls on
//! the CPU, burn's matmul elsewhere: `minicpm_model::kernels::linear`).

use burn::tensor::{Device, Distribution, Tensor};
use minicpm_model::kernels::linear;
use std::time::{Duration, Instant};

/// Best FLOP/s of `[m, k] x [k, n]` products (a linear layer of `k` inputs and `n` outputs over
/// `m` rows) over about `budget` of repeated runs.
pub fn measure(device: &Device, m: usize, k: usize, n: usize, budget: Duration) -> f64 {
    let a = Tensor::<2>::random([m, k], Distribution::Default, device);
    let b = Tensor::<2>::random([n, k], Distribution::Default, device);
    let flops = 2.0 * (m * k * n) as f64;
    // One untimed product pages in the buffers and starts the thread pool.
    let _ = linear(a.clone(), b.clone(), 1.0);
    let _ = device.sync();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed() < budget || best.is_infinite() {
        let t = Instant::now();
        let c = linear(a.clone(), b.clone(), 1.0);
        let _ = device.sync();
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    flops / best.max(1e-12)
}
