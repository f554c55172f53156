//! RMSNorm, `x * rsqrt(mean(x^2) + eps) * weight` over the last dimension, in one pass each way.
//!
//! Unfused, autodiff records seven operations per norm and keeps their intermediate tensors; here
//! the forward pass keeps only the per-row `rsqrt` factors, and the backward pass is
//! `dx = r * (g - x * r^2 * mean(g * x))` with `g = dy * weight`, `dweight = sum over rows of
//! dy * x * r`.

use super::flex_tensor;
use super::{host_values, zeros};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use rayon::prelude::*;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// The normalised rows and each row's `rsqrt(mean(x^2) + eps)`.
pub fn forward(x: &[f32], weight: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = weight.len();
    let mut y = zeros(x.len());
    let mut inv = vec![0f32; x.len() / d];
    y.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(inv.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|((y, inv), x)| {
            for ((y, r), x) in y
                .chunks_exact_mut(d)
                .zip(inv.iter_mut())
                .zip(x.chunks_exact(d))
            {
                let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
                *r = 1.0 / (mean_sq + eps).sqrt();
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(weight) {
                    *y = x * *r * w;
                }
            }
        });
    (y, inv)
}

/// Gradients of the input and the weight.
pub fn backward(x: &[f32], weight: &[f32], inv: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let d = weight.len();
    let mut dx = zeros(x.len());
    // Each task's weight gradient is kept, and they are added in task order below: rayon's
    // `reduce` would add them in an order that depends on how the threads split the work, and
    // the same inputs could give gradients a rounding apart.
    let parts: Vec<Vec<f32>> = dx
        .par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .zip(dy.par_chunks(d * ROWS_PER_TASK))
        .zip(inv.par_chunks(ROWS_PER_TASK))
        .map(|(((dx, x), dy), inv)| {
            let mut dw = vec![0f32; d];
            for (((dx, x), dy), &r) in dx
                .chunks_exact_mut(d)
                .zip(x.chunks_exact(d))
                .zip(dy.chunks_exact(d))
                .zip(inv)
            {
                let mut gx = 0.0f32;
                for ((&x, &dy), &w) in x.iter().zip(dy).zip(weight) {
                    gx += dy * w * x;
                }
                let k = r * r * gx / d as f32;
                for ((((dx, &x), &dy), &w), dw) in
                    dx.iter_mut().zip(x).zip(dy).zip(weight).zip(dw.iter_mut())
                {
                    *dx = r * (dy * w - x * k);
                    *dw += dy * x * r;
                }
            }
            dw
        })
        .collect();
    let mut dw = vec![0f32; d];
    for part in parts {
        dw.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    (dx, dw)
}

/// Forward pass on CPU tensors: the output (x's shape) and the per-row factors.
pub fn forward_flex(x: &FlexTensor, weight: &FlexTensor, eps: f64) -> (FlexTensor, FlexTensor) {
    let (y, inv) = forward(&host_values(x), &host_values(weight), eps as f32);
    let rows = inv.len();
    (
        flex_tensor(y, x.layout().shape().to_vec()),
        flex_tensor(inv, vec![rows]),
    )
}

#[derive(Debug)]
pub struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    /// x, weight and the per-row factors.
    type State = (FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, inv) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let (dx, dw) = backward(
            &host_values(&x),
            &host_values(&weight),
            &host_values(&inv),
            &host_values(&dy),
        );
        let [px, pw] = ops.parents;
        if let Some(node) = px {
            grads.register::<Flex>(node.id, flex_tensor(dx, x.layout().shape().to_vec()));
        }
        if let Some(node) = pw {
            grads.register::<Flex>(node.id, flex_tensor(dw, weight.layout().shape().to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backward;

    /// The weight gradient sums over rows, split into tasks: the split must not change a bit.
    #[test]
    fn the_weight_gradient_has_the_same_bits_on_any_number_of_threads() {
        let (rows, d) = (40 * super::ROWS_PER_TASK + 3, 96);
        let wave = |n: usize, f: f32| (0..n).map(|i| (i as f32 * f).sin()).collect::<Vec<f32>>();
        let (x, dy, weight) = (wave(rows * d, 0.37), wave(rows * d, 0.11), wave(d, 0.7));
        let inv = wave(rows, 0.05)
            .iter()
            .map(|v| 1.0 + v.abs())
            .collect::<Vec<f32>>();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| backward(&x, &weight, &inv, &dy))
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (dx1, dw1) = on(1);
        for threads in [2, 3, 2, 4] {
            let (dx, dw) = on(threads);
            assert_eq!(bits(&dx), bits(&dx1));
            assert_eq!(bits(&dw), bits(&dw1), "{threads} threads");
        }
    }
}
