//! The bias-free linear layer `y = s x W^T` (the weight in HF's `[out, in]` layout, `s` a
//! constant: a residual branch's scale) and its two gradients, each one direct GEMM call into a
//! buffer of its own, `s` applied inside it.
//!
//! Through burn's matmul each output is first a zero-filled byte vector that is then copied into
//! an aligned allocation (burn-flex 0.22's `FlexTensor::empty`), one serial pass per output, and
//! autodiff forms the weight gradient as the transpose of `x^T dy`, which later passes copy to
//! make contiguous. Here each output is written once, by its product, and `dW = dy^T x` lands in
//! the weight's own layout.

use super::strided_gemm::{product, View};
use super::{flex_tensor, host_values, matmul_precision, MatmulPrecision};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;

/// `rows` input vectors of `d_in` values mapped to `d_out` values each.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub rows: usize,
    pub d_in: usize,
    pub d_out: usize,
}

/// `y [rows, d_out] = s * x [rows, d_in] * w^T` with `w [d_out, d_in]`, in precision `p`.
pub fn forward(x: &[f32], w: &[f32], d: Dims, s: f32, p: MatmulPrecision) -> Vec<f32> {
    let (x, w) = (View::rows(x, 0, d.d_in), View::rows(w, 0, d.d_in));
    product(d.rows, d.d_out, d.d_in, x, w.t(), s, p)
}

/// `dx [rows, d_in] = s * dy [rows, d_out] * w`, in precision `p`.
pub fn input_gradient(dy: &[f32], w: &[f32], d: Dims, s: f32, p: MatmulPrecision) -> Vec<f32> {
    let (dy, w) = (View::rows(dy, 0, d.d_out), View::rows(w, 0, d.d_in));
    product(d.rows, d.d_in, d.d_out, dy, w, s, p)
}

/// `dw [d_out, d_in] = s * dy^T * x`, in the weight's layout, in precision `p`.
pub fn weight_gradient(dy: &[f32], x: &[f32], d: Dims, s: f32, p: MatmulPrecision) -> Vec<f32> {
    let (dy, x) = (View::rows(dy, 0, d.d_out), View::rows(x, 0, d.d_in));
    product(d.d_out, d.d_in, d.rows, dy.t(), x, s, p)
}

/// The shape of `x [.., d_in]` and `w [d_out, d_in]` as [`Dims`].
fn dims(x: &FlexTensor, w: &FlexTensor) -> Dims {
    let (xs, ws) = (x.layout().shape(), w.layout().shape());
    let d_in = xs[xs.num_dims() - 1];
    assert_eq!(
        ws[1], d_in,
        "linear: the weight's inputs match x's last dimension"
    );
    Dims {
        rows: xs.num_elements() / d_in.max(1),
        d_in,
        d_out: ws[0],
    }
}

/// [`forward`] on CPU tensors, in the process's [`matmul_precision`]: `x [.., d_in]` to
/// `[.., d_out]`, and the precision used (which the backward pass keeps).
pub fn forward_flex(x: &FlexTensor, w: &FlexTensor, s: f32) -> (FlexTensor, MatmulPrecision) {
    let (d, p) = (dims(x, w), matmul_precision());
    let y = forward(&host_values(x), &host_values(w), d, s, p);
    let mut shape = x.layout().shape().to_vec();
    *shape.last_mut().expect("x has a last dimension") = d.d_out;
    (flex_tensor(y, shape), p)
}

#[derive(Debug)]
pub struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    /// x, w, the scale and the forward pass's precision.
    type State = (FlexTensor, FlexTensor, f32, MatmulPrecision);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, s, p) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let d = dims(&x, &w);
        let dy = host_values(&dy);
        let [px, pw] = ops.parents;
        if let Some(node) = px {
            let dx = input_gradient(&dy, &host_values(&w), d, s, p);
            grads.register::<Flex>(node.id, flex_tensor(dx, x.layout().shape().to_vec()));
        }
        if let Some(node) = pw {
            let dw = weight_gradient(&dy, &host_values(&x), d, s, p);
            grads.register::<Flex>(node.id, flex_tensor(dw, w.layout().shape().to_vec()));
        }
    }
}
