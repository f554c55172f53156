//! The autodiff route of the fused kernels: each forward pass keeps what its backward pass needs
//! (for attention: the inputs and each query row's softmax statistics) and registers that
//! backward pass.

use super::flex_tensor;
use super::{attention_cpu, attention_dims, attention_flex, attention_scale, first_keys};
use super::{host_values, linear, moe_cpu, rms_norm, swiglu, FusedKernels};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};

#[derive(Debug)]
struct AttentionBackward;

/// q, k, v, cos, sin, first_key, and the softmax statistics of the forward pass.
type Saved = (
    FlexTensor,
    FlexTensor,
    FlexTensor,
    FlexTensor,
    FlexTensor,
    FlexTensor,
    FlexTensor,
);

impl Backward<Flex, 3> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (q, k, v, cos, sin, first_key, stats) = ops.state;
        let grad_out = grads.consume::<Flex>(&ops.node);
        let dims = attention_dims(&q, &k);
        let (cos_v, sin_v) = (host_values(&cos), host_values(&sin));
        let rope = attention_cpu::Rope {
            cos: &cos_v,
            sin: &sin_v,
            first_key: &first_keys(&first_key),
        };
        let (dq, dk, dv) = attention_cpu::backward(
            dims,
            &host_values(&q),
            &host_values(&k),
            &host_values(&v),
            &rope,
            attention_scale(&dims),
            &host_values(&stats),
            &host_values(&grad_out),
        );
        let [pq, pk, pv] = ops.parents;
        for (parent, grad, like) in [(pq, dq, &q), (pk, dk, &k), (pv, dv, &v)] {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, flex_tensor(grad, like.layout().shape().to_vec()));
            }
        }
    }
}

impl<C: CheckpointStrategy> FusedKernels for Autodiff<Flex, C> {
    fn rope_causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        first_key: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [q.node(), k.node(), v.node()];
        let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        let first = first_key.into_primitive();
        match AttentionBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, stats) = attention_flex(&q, &k, &v, &cos, &sin, &first);
                prep.finish((q, k, v, cos, sin, first, stats), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(attention_flex(&q, &k, &v, &cos, &sin, &first).0)
            }
        }
    }

    fn linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node()];
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        let scale = scale as f32;
        match linear::LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, precision) = linear::forward_flex(&x, &weight, scale);
                prep.finish((x, weight, scale, precision), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(linear::forward_flex(&x, &weight, scale).0),
        }
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node()];
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        match rms_norm::RmsNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, inv) = rms_norm::forward_flex(&x, &weight, eps);
                prep.finish((x, weight, inv), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(rms_norm::forward_flex(&x, &weight, eps).0),
        }
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [gate.node(), up.node()];
        let (gate, up) = (gate.into_primitive(), up.into_primitive());
        match swiglu::SwigluBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = swiglu::forward_flex(&gate, &up);
                prep.finish((gate, up), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(swiglu::forward_flex(&gate, &up)),
        }
    }

    fn moe_experts(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        choice: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        w2: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            x.node(),
            weights.node(),
            choice.node(),
            w1.node(),
            w3.node(),
            w2.node(),
        ];
        let [x, weights, choice, w1, w3, w2] =
            [x, weights, choice, w1, w3, w2].map(|t| t.into_primitive());
        match moe_cpu::MoeBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, [gate, up, y]) =
                    moe_cpu::forward_flex(&x, &weights, &choice, &w1, &w3, &w2);
                prep.finish([x, weights, choice, w1, w3, w2, gate, up, y], out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(moe_cpu::forward_flex(&x, &weights, &choice, &w1, &w3, &w2).0)
            }
        }
    }
}
