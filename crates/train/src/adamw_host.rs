//! The AdamW update of one tensor as a single pass over host memory.
//!
//! Written with tensor operations, one update is about fifteen element-wise passes, each
//! allocating a new tensor; here the weight, both moments and the gradient are read once and the
//! three state tensors are written in place (burn's CPU tensors hand over their buffers without
//! copying when nothing else holds them). The arithmetic is the tensor version's, in the same
//! order, so results agree to rounding.

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 64 * 1024;

/// The scalars of one update of one tensor.
#[derive(Debug, Clone, Copy)]
pub struct Hyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (0 when the tensor has none).
    pub weight_decay: f64,
    /// Gradient scale from global-norm clipping (1 when not clipped).
    pub clip: f64,
    /// Adam's bias corrections, `1 - beta^t`.
    pub bias1: f64,
    pub bias2: f64,
}

/// One update of flattened `w`, given its gradient and moments; returns `(w, m, v)`.
pub fn update(
    w: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    h: &Hyper,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let device = w.device();
    let (mut wd, gd, mut md, mut vd) = (w.into_data(), g.into_data(), m.into_data(), v.into_data());
    let f = |x: f64| x as f32;
    let (clip, b1, b2, eps) = (f(h.clip), f(h.beta1), f(h.beta2), f(h.eps));
    // As the tensor version, the complements are formed in f64 before rounding.
    let (c1, c2) = (f(1.0 - h.beta1), f(1.0 - h.beta2));
    let (bias1, bias2, lr) = (f(h.bias1), f(h.bias2), f(h.lr));
    let decay = f(1.0 - h.lr * h.weight_decay);
    {
        let ws = wd.as_mut_slice::<f32>().expect("f32 weights");
        let gs = gd.as_slice::<f32>().expect("f32 gradients");
        let ms = md.as_mut_slice::<f32>().expect("f32 moments");
        let vs = vd.as_mut_slice::<f32>().expect("f32 moments");
        ws.par_chunks_mut(CHUNK)
            .zip(gs.par_chunks(CHUNK))
            .zip(ms.par_chunks_mut(CHUNK).zip(vs.par_chunks_mut(CHUNK)))
            .for_each(|((w, g), (m, v))| {
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                    let g = if clip != 1.0 { g * clip } else { g };
                    *m = *m * b1 + g * c1;
                    *v = *v * b2 + g * g * c2;
                    let denom = (*v / bias2).sqrt() + eps;
                    let update = *m / bias1 / denom;
                    *w = *w * decay - update * lr;
                }
            });
    }
    let back = |d: TensorData| Tensor::<1>::from_data(d, &device);
    (back(wd), back(md), back(vd))
}

/// The same update as a chain of tensor operations: for devices other than the CPU, and the
/// reference the single pass is tested against.
pub fn update_with_tensor_ops(
    w: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    h: &Hyper,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let g = if h.clip != 1.0 {
        g.mul_scalar(h.clip)
    } else {
        g
    };
    let m = m.mul_scalar(h.beta1) + g.clone().mul_scalar(1.0 - h.beta1);
    let v = v.mul_scalar(h.beta2) + g.square().mul_scalar(1.0 - h.beta2);
    let denom = v.clone().div_scalar(h.bias2).sqrt().add_scalar(h.eps);
    let update = m.clone().div_scalar(h.bias1).div(denom);
    let w = if h.weight_decay > 0.0 {
        w.mul_scalar(1.0 - h.lr * h.weight_decay)
    } else {
        w
    };
    (w - update.mul_scalar(h.lr), m, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Three updates with clipping and weight decay, then three without, from the same start.
    #[test]
    fn single_pass_matches_the_tensor_operations() {
        let device = Device::flex();
        let n = 150_001; // more than two parallel chunks, the last one ragged
        let w0 = Tensor::<1>::random([n], Distribution::Normal(0.0, 0.1), &device);
        let mut fused = (w0.clone(), w0.zeros_like(), w0.zeros_like());
        let mut reference = fused.clone();
        for t in 1..=6 {
            let g = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            let h = Hyper {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: if t <= 3 { 0.1 } else { 0.0 },
                clip: if t <= 3 { 0.5 } else { 1.0 },
                bias1: 1.0 - 0.9f64.powi(t),
                bias2: 1.0 - 0.95f64.powi(t),
            };
            let (w, m, v) = fused;
            fused = update(w, g.clone(), m, v, &h);
            let (w, m, v) = reference;
            reference = update_with_tensor_ops(w, g, m, v, &h);
        }
        let diff = |a: Tensor<1>, b: Tensor<1>| (a - b).abs().max().into_scalar::<f32>();
        assert!(diff(fused.0, reference.0) < 1e-6);
        assert!(diff(fused.1, reference.1) < 1e-6);
        assert!(diff(fused.2, reference.2) < 1e-6);
    }
}
