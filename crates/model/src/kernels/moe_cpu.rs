//! The experts of an MoE layer (docs/MODEL.md section 12) in one pass each way, on the CPU.
//!
//! The token-slots (`tokens x k`, token-major) are grouped by expert; each expert gathers its
//! rows once and runs its SwiGLU MLP as three single-threaded products over all of them, the
//! experts in parallel; the outputs are weighted and added back per token. The forward pass keeps
//! each slot's gate and up projections and its unweighted expert output; the backward pass
//! recomputes the SwiGLU from them and returns the gradients of the input, of each slot's routing
//! weight, and of the three stacked weight tensors. Unfused, autodiff would keep every gather,
//! slice and product of every expert and zero-fill a `[tokens x k, hidden]` buffer per expert to
//! route the gradients back.

use super::strided_gemm::{gemm, View};
use super::{flex_tensor, host_values, vector_math};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dims {
    pub tokens: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub experts: usize,
    pub top_k: usize,
}

/// The slots grouped by expert: `slots` sorted by expert (stable), and where each expert's run
/// starts (`starts[e]..starts[e + 1]`).
pub struct Groups {
    pub slots: Vec<usize>,
    pub starts: Vec<usize>,
}

impl Groups {
    /// `choice[slot]` is the slot's expert.
    pub fn of(choice: &[usize], experts: usize) -> Groups {
        let mut starts = vec![0usize; experts + 1];
        for &e in choice {
            starts[e + 1] += 1;
        }
        for e in 0..experts {
            starts[e + 1] += starts[e];
        }
        let mut next = starts.clone();
        let mut slots = vec![0usize; choice.len()];
        for (slot, &e) in choice.iter().enumerate() {
            slots[next[e]] = slot;
            next[e] += 1;
        }
        Groups { slots, starts }
    }

    /// Where expert `e`'s run lies in `slots`.
    pub fn range(&self, e: usize) -> std::ops::Range<usize> {
        self.starts[e]..self.starts[e + 1]
    }

    /// How many slots expert `e` got.
    pub fn count(&self, e: usize) -> usize {
        self.range(e).len()
    }
}

/// What the backward pass needs, in grouped row order: each row's gate and up projections
/// `[rows, ffn]` and unweighted expert output `[rows, hidden]`.
pub struct Saved {
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub y: Vec<f32>,
}

/// Per expert, mutable row blocks of `buf` (row width `width`) following `groups`.
fn blocks<'a>(buf: &'a mut [f32], groups: &Groups, width: usize) -> Vec<&'a mut [f32]> {
    let mut rest = buf;
    let mut out = Vec::with_capacity(groups.starts.len() - 1);
    for e in 0..groups.starts.len() - 1 {
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut(groups.count(e) * width);
        out.push(mine);
        rest = tail;
    }
    out
}

/// The rows of `x [tokens, hidden]` that expert `e`'s slots read, gathered.
fn gather(x: &[f32], d: Dims, groups: &Groups, e: usize) -> Vec<f32> {
    let h = d.hidden;
    let mut xe = Vec::with_capacity(groups.count(e) * h);
    for &slot in &groups.slots[groups.range(e)] {
        let t = slot / d.top_k;
        xe.extend_from_slice(&x[t * h..(t + 1) * h]);
    }
    xe
}

/// `out [tokens, hidden]` = sum over each token's slots of `weights[slot] * expert(x[token])`.
/// `w1`, `w3` are `[experts, ffn, hidden]`, `w2` `[experts, hidden, ffn]`.
pub fn forward(
    d: Dims,
    x: &[f32],
    weights: &[f32],
    groups: &Groups,
    w1: &[f32],
    w3: &[f32],
    w2: &[f32],
) -> (Vec<f32>, Saved) {
    let (h, f) = (d.hidden, d.ffn);
    let rows = d.tokens * d.top_k;
    let mut saved = Saved {
        gate: vec![0f32; rows * f],
        up: vec![0f32; rows * f],
        y: vec![0f32; rows * h],
    };
    let gates = blocks(&mut saved.gate, groups, f);
    let ups = blocks(&mut saved.up, groups, f);
    let ys = blocks(&mut saved.y, groups, h);
    gates
        .into_par_iter()
        .zip(ups)
        .zip(ys)
        .enumerate()
        .for_each(|(e, ((gate, up), y))| {
            let c = groups.count(e);
            if c == 0 {
                return;
            }
            let xe = gather(x, d, groups, e);
            let xv = View::rows(&xe, 0, h);
            gemm(
                c,
                f,
                h,
                gate,
                0,
                f,
                false,
                xv,
                View::rows(w1, e * f * h, h).t(),
                1.0,
            );
            gemm(
                c,
                f,
                h,
                up,
                0,
                f,
                false,
                xv,
                View::rows(w3, e * f * h, h).t(),
                1.0,
            );
            let mut act = vec![0f32; c * f];
            vector_math::swiglu(gate, up, &mut act);
            let w2e = View::rows(w2, e * h * f, f).t();
            gemm(c, h, f, y, 0, h, false, View::rows(&act, 0, f), w2e, 1.0);
        });
    let mut out = vec![0f32; d.tokens * h];
    for (row, &slot) in groups.slots.iter().enumerate() {
        let t = slot / d.top_k;
        let w = weights[slot];
        let src = &saved.y[row * h..(row + 1) * h];
        for (o, &v) in out[t * h..(t + 1) * h].iter_mut().zip(src) {
            *o += w * v;
        }
    }
    (out, saved)
}

/// The gradients of [`forward`]'s inputs from the output's, `dout [tokens, hidden]`.
pub struct Grads {
    pub x: Vec<f32>,
    pub weights: Vec<f32>,
    pub w1: Vec<f32>,
    pub w3: Vec<f32>,
    pub w2: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: Dims,
    x: &[f32],
    weights: &[f32],
    groups: &Groups,
    w1: &[f32],
    w3: &[f32],
    w2: &[f32],
    saved: &Saved,
    dout: &[f32],
) -> Grads {
    let (h, f) = (d.hidden, d.ffn);
    let rows = d.tokens * d.top_k;
    let mut g = Grads {
        x: vec![0f32; d.tokens * h],
        weights: vec![0f32; rows],
        w1: vec![0f32; w1.len()],
        w3: vec![0f32; w3.len()],
        w2: vec![0f32; w2.len()],
    };
    // Per row (grouped order): the input gradient and the routing weight's gradient.
    let mut dx_rows = vec![0f32; rows * h];
    let mut dw_rows = vec![0f32; rows];
    let dx_blocks = blocks(&mut dx_rows, groups, h);
    let dw_blocks = blocks(&mut dw_rows, groups, 1);
    let per_expert = |e: usize| e * f * h;
    g.w1.par_chunks_mut(f * h)
        .zip(g.w3.par_chunks_mut(f * h))
        .zip(g.w2.par_chunks_mut(h * f))
        .zip(dx_blocks.into_par_iter().zip(dw_blocks))
        .enumerate()
        .for_each(|(e, (((dw1, dw3), dw2), (dx, dw)))| {
            let range = groups.range(e);
            let c = range.len();
            if c == 0 {
                return;
            }
            let (gate, up) = (
                &saved.gate[range.start * f..range.end * f],
                &saved.up[range.start * f..range.end * f],
            );
            let y = &saved.y[range.start * h..range.end * h];
            // The weighted output gradient of each row, and its routing weight's gradient.
            let mut dy = vec![0f32; c * h];
            for (i, &slot) in groups.slots[range.clone()].iter().enumerate() {
                let t = slot / d.top_k;
                let g_out = &dout[t * h..(t + 1) * h];
                dw[i] = g_out
                    .iter()
                    .zip(&y[i * h..(i + 1) * h])
                    .map(|(a, b)| a * b)
                    .sum();
                for (o, &v) in dy[i * h..(i + 1) * h].iter_mut().zip(g_out) {
                    *o = weights[slot] * v;
                }
            }
            let mut act = vec![0f32; c * f];
            vector_math::swiglu(gate, up, &mut act);
            let dyv = View::rows(&dy, 0, h);
            // dW2 [hidden, ffn] = dy^T act; d(act) = dy W2.
            gemm(
                h,
                f,
                c,
                dw2,
                0,
                f,
                false,
                dyv.t(),
                View::rows(&act, 0, f),
                1.0,
            );
            let mut dact = vec![0f32; c * f];
            gemm(
                c,
                f,
                h,
                &mut dact,
                0,
                f,
                false,
                dyv,
                View::rows(w2, per_expert(e), f),
                1.0,
            );
            let (mut dgate, mut dup) = (vec![0f32; c * f], vec![0f32; c * f]);
            vector_math::swiglu_backward(gate, up, &dact, &mut dgate, &mut dup);
            let xe = gather(x, d, groups, e);
            let xv = View::rows(&xe, 0, h);
            let (dgv, duv) = (View::rows(&dgate, 0, f), View::rows(&dup, 0, f));
            // dW1, dW3 [ffn, hidden] = dgate^T x, dup^T x; dx = dgate W1 + dup W3.
            gemm(f, h, c, dw1, 0, h, false, dgv.t(), xv, 1.0);
            gemm(f, h, c, dw3, 0, h, false, duv.t(), xv, 1.0);
            gemm(
                c,
                h,
                f,
                dx,
                0,
                h,
                false,
                dgv,
                View::rows(w1, per_expert(e), h),
                1.0,
            );
            gemm(
                c,
                h,
                f,
                dx,
                0,
                h,
                true,
                duv,
                View::rows(w3, per_expert(e), h),
                1.0,
            );
        });
    for (row, &slot) in groups.slots.iter().enumerate() {
        let t = slot / d.top_k;
        g.weights[slot] = dw_rows[row];
        let src = &dx_rows[row * h..(row + 1) * h];
        for (o, &v) in g.x[t * h..(t + 1) * h].iter_mut().zip(src) {
            *o += v;
        }
    }
    g
}

/// The shape of [`forward`]'s problem from its tensors (`x [tokens, hidden]`, `weights [tokens *
/// k]`, `w1 [experts, ffn, hidden]`).
fn dims_of(x: &FlexTensor, weights: &FlexTensor, w1: &FlexTensor) -> Dims {
    let (xs, ws) = (x.layout().shape(), w1.layout().shape());
    let tokens = xs[0];
    Dims {
        tokens,
        hidden: xs[1],
        ffn: ws[1],
        experts: ws[0],
        top_k: weights.layout().shape()[0] / tokens.max(1),
    }
}

fn groups_of(choice: &FlexTensor, experts: usize) -> Groups {
    let choice: Vec<usize> = host_values(choice).iter().map(|&e| e as usize).collect();
    Groups::of(&choice, experts)
}

/// [`forward`] on CPU tensors: the output and, for the backward pass, the saved gate, up and
/// expert outputs.
pub fn forward_flex(
    x: &FlexTensor,
    weights: &FlexTensor,
    choice: &FlexTensor,
    w1: &FlexTensor,
    w3: &FlexTensor,
    w2: &FlexTensor,
) -> (FlexTensor, [FlexTensor; 3]) {
    let d = dims_of(x, weights, w1);
    let groups = groups_of(choice, d.experts);
    let (out, saved) = forward(
        d,
        &host_values(x),
        &host_values(weights),
        &groups,
        &host_values(w1),
        &host_values(w3),
        &host_values(w2),
    );
    let rows = d.tokens * d.top_k;
    (
        flex_tensor(out, vec![d.tokens, d.hidden]),
        [
            flex_tensor(saved.gate, vec![rows, d.ffn]),
            flex_tensor(saved.up, vec![rows, d.ffn]),
            flex_tensor(saved.y, vec![rows, d.hidden]),
        ],
    )
}

#[derive(Debug)]
pub struct MoeBackward;

impl Backward<Flex, 6> for MoeBackward {
    /// x, weights, choice, w1, w3, w2, then the saved gate, up and expert outputs.
    type State = [FlexTensor; 9];

    fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, weights, choice, w1, w3, w2, gate, up, y] = ops.state;
        let dout = grads.consume::<Flex>(&ops.node);
        let d = dims_of(&x, &weights, &w1);
        let groups = groups_of(&choice, d.experts);
        let saved = Saved {
            gate: host_values(&gate).into_owned(),
            up: host_values(&up).into_owned(),
            y: host_values(&y).into_owned(),
        };
        let g = backward(
            d,
            &host_values(&x),
            &host_values(&weights),
            &groups,
            &host_values(&w1),
            &host_values(&w3),
            &host_values(&w2),
            &saved,
            &host_values(&dout),
        );
        let [px, pw, _, p1, p3, p2] = ops.parents;
        for (parent, grad, like) in [
            (px, g.x, &x),
            (pw, g.weights, &weights),
            (p1, g.w1, &w1),
            (p3, g.w3, &w3),
            (p2, g.w2, &w2),
        ] {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, flex_tensor(grad, like.layout().shape().to_vec()));
            }
        }
    }
}
