//! SwiGLU's gate, `silu(gate) * up`, in one pass each way.
//!
//! Unfused, autodiff keeps the sigmoid, the silu and the product; here only the two inputs are
//! kept, and the backward pass is `dgate = dy * up * s * (1 + gate * (1 - s))`,
//! `dup = dy * gate * s`, with `s = sigmoid(gate)`.

use super::{flex_tensor, host_values, vector_math, zeros};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 16 * 1024;

pub fn forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut y = zeros(gate.len());
    y.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(y, (g, u))| {
            vector_math::swiglu(g, u, y);
        });
    y
}

/// Gradients of the gate and the up projection.
pub fn backward(gate: &[f32], up: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut dgate = zeros(gate.len());
    let mut dup = zeros(gate.len());
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .zip(dy.par_chunks(CHUNK))
        .for_each(|(((dg, du), (g, u)), dy)| {
            vector_math::swiglu_backward(g, u, dy, dg, du);
        });
    (dgate, dup)
}

pub fn forward_flex(gate: &FlexTensor, up: &FlexTensor) -> FlexTensor {
    let y = forward(&host_values(gate), &host_values(up));
    flex_tensor(y, gate.layout().shape().to_vec())
}

#[derive(Debug)]
pub struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    /// gate and up.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gate, up) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let (dg, du) = backward(&host_values(&gate), &host_values(&up), &host_values(&dy));
        let shape = gate.layout().shape().to_vec();
        let [pg, pu] = ops.parents;
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, flex_tensor(dg, shape.clone()));
        }
        if let Some(node) = pu {
            grads.register::<Flex>(node.id, flex_tensor(du, shape));
        }
    }
}
