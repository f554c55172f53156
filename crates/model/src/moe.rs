//! The mixture-of-experts feed-forward of MiniCPM-MoE (docs/MODEL.md section 12): a
//! router `Linear(hidden -> E)`, a softmax over all E logits, the top k experts per token with
//! their probabilities renormalised to sum 1, and the weighted sum of those experts' SwiGLU
//! outputs.
//!
//! Tokens are grouped by expert: the routing is read back to the host once per layer, every
//! token-slot is sorted by its expert, and each expert runs its products once over all of its
//! tokens (never once per token), in one fused kernel on the CPU (`kernels::moe_cpu`) and as burn
//! operations elsewhere; the outputs are added back with the routing weights. The
//! router's side outputs (load-balancing and z losses, per-expert load, router entropy) come out
//! in a [`RouterOutput`] for the objective and the metrics.

use crate::kernels;
pub use crate::kernels::moe_cpu::Groups;
use crate::model::Linear;
use crate::weights::Weights;
use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

/// One expert: a SwiGLU MLP with MiniCPM-MoE's tensor names (`w1` gate, `w3` up, `w2` down).
#[derive(Module, Debug)]
pub struct Expert {
    pub w1: Linear,
    pub w2: Linear,
    pub w3: Linear,
}

impl Expert {
    pub fn new<E>(w: &mut Weights<E>, d: usize, d_ff: usize) -> Result<Self, E> {
        Ok(Expert {
            w1: Linear::new(&mut w.pp("w1"), d, d_ff)?,
            w2: Linear::new(&mut w.pp("w2"), d_ff, d)?,
            w3: Linear::new(&mut w.pp("w3"), d, d_ff)?,
        })
    }

    /// `x [tokens, hidden]` -> `[tokens, hidden]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let gate = x.clone().matmul(self.w1.weight.val().transpose());
        let up = x.matmul(self.w3.weight.val().transpose());
        let h = kernels::swiglu(gate.unsqueeze(), up.unsqueeze()).squeeze_dim(0);
        h.matmul(self.w2.weight.val().transpose())
    }

    /// A scalar that is zero and whose gradient reaches every weight of the expert as zeros: an
    /// expert that no token chose still gets a gradient, as a stacked-expert implementation
    /// gives it, so AdamW treats it like the others (moment decay, weight decay).
    fn zero_anchor(&self) -> Tensor<1> {
        [&self.w1, &self.w2, &self.w3]
            .into_iter()
            .map(|l| l.weight.val().sum().mul_scalar(0.0))
            .reduce(|a, b| a + b)
            .expect("three weights")
    }
}

/// The MoE feed-forward: router `gate [E, hidden]` and E experts, top-k routing.
#[derive(Module, Debug)]
pub struct Moe {
    pub gate: Linear,
    pub experts: Vec<Expert>,
    #[module(skip)]
    top_k: usize,
}

/// What one MoE layer's router did on a forward pass.
#[derive(Debug, Clone)]
pub struct RouterOutput {
    /// Switch-style load-balancing loss, `E * sum_e P_e * f_e` (keeps its graph).
    pub balance_loss: Tensor<1>,
    /// Router z-loss, the mean over tokens of `logsumexp(router logits)^2` (keeps its graph).
    pub z_loss: Tensor<1>,
    /// `f_e`: the share of the layer's token-slots (tokens x k) routed to each expert.
    pub load: Vec<f32>,
    /// Mean over tokens of the entropy (nats) of the router's full softmax.
    pub entropy: f32,
}

/// Which experts each token chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// `[tokens * k]`, token-major; each token's experts in descending probability (ties go to
    /// the lower index).
    pub choice: Vec<usize>,
    pub top_k: usize,
    pub num_experts: usize,
}

impl Routing {
    /// The top-k experts of each row of `probs [tokens, experts]` (row-major).
    pub fn top_k(probs: &[f32], num_experts: usize, top_k: usize) -> Routing {
        let mut choice = Vec::with_capacity(probs.len() / num_experts * top_k);
        let mut order: Vec<usize> = Vec::with_capacity(num_experts);
        for row in probs.chunks_exact(num_experts) {
            order.clear();
            order.extend(0..num_experts);
            // Stable sort by descending probability: equal probabilities keep index order.
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            choice.extend_from_slice(&order[..top_k]);
        }
        Routing {
            choice,
            top_k,
            num_experts,
        }
    }

    pub fn tokens(&self) -> usize {
        self.choice.len() / self.top_k
    }

    /// Token-slots grouped by expert: the slot indices (into `tokens * k`) sorted by expert,
    /// stable, and where each expert's run starts.
    pub fn grouped(&self) -> Groups {
        Groups::of(&self.choice, self.num_experts)
    }

    /// `f_e`: each expert's share of the token-slots.
    pub fn load(&self) -> Vec<f32> {
        let groups = self.grouped();
        let total = self.choice.len().max(1) as f32;
        (0..self.num_experts)
            .map(|e| groups.count(e) as f32 / total)
            .collect()
    }
}

impl Moe {
    pub fn new<E>(
        w: &mut Weights<E>,
        d: usize,
        d_ff: usize,
        num_experts: usize,
        top_k: usize,
    ) -> Result<Self, E> {
        Ok(Moe {
            gate: Linear::new(&mut w.pp("gate"), d, num_experts)?,
            experts: (0..num_experts)
                .map(|e| Expert::new(&mut w.pp("experts").pp(e), d, d_ff))
                .collect::<Result<_, E>>()?,
            top_k,
        })
    }

    pub fn num_experts(&self) -> usize {
        self.experts.len()
    }

    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// `x [batch, len, hidden]` -> the layer's output and what its router did.
    pub fn forward(&self, x: Tensor<3>) -> (Tensor<3>, RouterOutput) {
        let [b, t, d] = x.dims();
        let x = x.reshape([b * t, d]);
        let (probs, log_z, routing) = self.route(x.clone());
        let y = self.experts_forward(x, probs.clone(), &routing);
        let out = self.router_output(probs, log_z, &routing);
        (y.reshape([b, t, d]), out)
    }

    /// The router's full softmax `[tokens, E]`, each token's logsumexp `[tokens, 1]`, and the
    /// top-k choice (read back to the host: the grouping below needs it there).
    fn route(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>, Routing) {
        let logits = x.matmul(self.gate.weight.val().transpose());
        // logsumexp = logit - log p, in any column; the first is as good as any.
        let log_z = logits.clone().narrow(1, 0, 1) - log_softmax(logits.clone(), 1).narrow(1, 0, 1);
        let probs = softmax(logits, 1);
        let host: Vec<f32> = probs
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 router probabilities");
        let routing = Routing::top_k(&host, self.num_experts(), self.top_k);
        (probs, log_z, routing)
    }

    /// Every expert over its own tokens, weighted and summed per token: one fused kernel on the
    /// CPU ([`kernels::moe_experts`]), a composition of burn operations elsewhere.
    fn experts_forward(&self, x: Tensor<2>, probs: Tensor<2>, routing: &Routing) -> Tensor<2> {
        let device = x.device();
        let (weights, choice) = slot_weights(probs, routing);
        if !kernels::available(&device) {
            return self.experts_composed(x, weights, routing);
        }
        let stack = |w: fn(&Expert) -> &Linear| {
            Tensor::stack::<3>(self.experts.iter().map(|e| w(e).weight.val()).collect(), 0)
        };
        kernels::moe_experts(
            x,
            weights,
            choice.float(),
            stack(|e| &e.w1),
            stack(|e| &e.w3),
            stack(|e| &e.w2),
        )
    }

    /// [`Self::experts_forward`] as burn operations: the slots' rows gathered in expert order,
    /// one product per expert over a slice of them, the weighted outputs added back per token.
    fn experts_composed(&self, x: Tensor<2>, weights: Tensor<1>, routing: &Routing) -> Tensor<2> {
        let (n, k) = (routing.tokens(), routing.top_k);
        let device = x.device();
        let d = x.dims()[1];
        let ids = |v: Vec<usize>| {
            let v: Vec<i64> = v.into_iter().map(|i| i as i64).collect();
            let len = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [len]), &device)
        };
        let groups = routing.grouped();
        let token_ids = ids(groups.slots.iter().map(|&s| s / k).collect());
        let slot_ids = ids(groups.slots.clone());
        let xs = x.select(0, token_ids.clone());
        let mut parts = Vec::with_capacity(self.experts.len());
        let mut anchor: Option<Tensor<1>> = None;
        for (e, expert) in self.experts.iter().enumerate() {
            let (start, count) = (groups.starts[e], groups.count(e));
            if count == 0 {
                let z = expert.zero_anchor();
                anchor = Some(match anchor.take() {
                    Some(a) => a + z,
                    None => z,
                });
                continue;
            }
            parts.push(expert.forward(xs.clone().narrow(0, start, count)));
        }
        let ys = Tensor::cat(parts, 0) * weights.select(0, slot_ids).reshape([n * k, 1]);
        let out = Tensor::<2>::zeros([n, d], &device).select_assign(
            0,
            token_ids,
            ys,
            IndexingUpdateOp::Add,
        );
        match anchor {
            Some(a) => out + a.reshape([1, 1]),
            None => out,
        }
    }

    fn router_output(&self, probs: Tensor<2>, log_z: Tensor<2>, routing: &Routing) -> RouterOutput {
        let e = self.num_experts();
        let load = routing.load();
        let device = probs.device();
        let f = Tensor::<2>::from_data(TensorData::new(load.clone(), [1, e]), &device);
        let balance_loss = (probs.clone().mean_dim(0) * f).sum().mul_scalar(e as f64);
        let z_loss = log_z.square().mean();
        let entropy = router_entropy(probs);
        RouterOutput {
            balance_loss,
            z_loss,
            load,
            entropy,
        }
    }
}

/// Each token-slot's routing weight, its expert's probability over the token's k chosen ones
/// (`[tokens * k]`, token-major), and the slots' experts as indices.
fn slot_weights(probs: Tensor<2>, routing: &Routing) -> (Tensor<1>, Tensor<1, Int>) {
    let (n, k) = (routing.tokens(), routing.top_k);
    let choice: Vec<i64> = routing.choice.iter().map(|&e| e as i64).collect();
    let choice = Tensor::<1, Int>::from_data(TensorData::new(choice, [n * k]), &probs.device());
    let top = probs.gather(1, choice.clone().reshape([n, k]));
    let weights = top.clone().div(top.sum_dim(1)).reshape([n * k]);
    (weights, choice)
}

/// Mean over rows of `-sum p ln p`, without gradients.
fn router_entropy(probs: Tensor<2>) -> f32 {
    let p = probs.inner();
    let plogp = p.clone() * p.clamp_min(1e-30).log();
    plogp.sum_dim(1).mean().neg().into_scalar::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::init_values;
    use crate::mup::Parametrization;
    use crate::ModelConfig;
    use burn::module::Param;
    use burn::tensor::Device;

    #[test]
    fn top_k_takes_the_largest_in_order_and_ties_go_to_the_lower_index() {
        let probs = [0.1, 0.5, 0.3, 0.1, /* */ 0.25, 0.25, 0.25, 0.25];
        let r = Routing::top_k(&probs, 4, 2);
        assert_eq!(r.choice, [1, 2, 0, 1]);
        let groups = r.grouped();
        assert_eq!(groups.starts, [0, 1, 3, 4, 4]);
        // Expert 0: slot 2; expert 1: slots 0 and 3; expert 2: slot 1.
        assert_eq!(groups.slots, [2, 0, 3, 1]);
        assert_eq!(r.load(), [0.25, 0.5, 0.25, 0.0]);
    }

    fn moe(device: &Device, experts: usize, top_k: usize) -> Moe {
        let cfg: ModelConfig = serde_json::from_value(serde_json::json!({
            "vocab_size": 16, "hidden_size": 12, "intermediate_size": 20,
            "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_experts": experts, "num_experts_per_tok": top_k
        }))
        .unwrap();
        let mut draw = |name: &str, shape: &[usize]| -> Result<_, std::convert::Infallible> {
            // A router far from uniform, so the top-k really selects.
            let v = init_values(&cfg, Parametrization::Sp, 5, name, shape);
            let boost = if name.ends_with("gate.weight") {
                60.0
            } else {
                1.0
            };
            Ok(v.into_iter().map(|x| x * boost).collect())
        };
        let mut w = Weights::new(&mut draw, device);
        match Moe::new(&mut w.pp("mlp"), 12, 20, experts, top_k) {
            Ok(m) => m,
            Err(never) => match never {},
        }
    }

    fn input(device: &Device, n: usize) -> Tensor<3> {
        let v: Vec<f32> = (0..n * 12)
            .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
            .collect();
        Tensor::from_data(TensorData::new(v, [1, n, 12]), device)
    }

    /// The unfused composition: every expert over every token, weighted by a dense `[n, E]`
    /// matrix that is the renormalised top-k probability where chosen and 0 elsewhere.
    fn unfused(moe: &Moe, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let x = x.reshape([b * t, d]);
        let e = moe.num_experts();
        let probs = softmax(x.clone().matmul(moe.gate.weight.val().transpose()), 1);
        let host: Vec<f32> = probs.clone().into_data().try_into_vec::<f32>().unwrap();
        let r = Routing::top_k(&host, e, moe.top_k());
        let mut mask = vec![0f32; b * t * e];
        for (slot, &ex) in r.choice.iter().enumerate() {
            mask[slot / r.top_k * e + ex] = 1.0;
        }
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b * t, e]), &x.device());
        let kept = probs * mask;
        let w = kept.clone().div(kept.sum_dim(1));
        let y = moe
            .experts
            .iter()
            .enumerate()
            .map(|(i, ex)| ex.forward(x.clone()) * w.clone().narrow(1, i, 1))
            .reduce(|a, b| a + b)
            .unwrap();
        y.reshape([b, t, d])
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn grouped_experts_equal_the_unfused_composition_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        for (experts, top_k, n) in [(4, 2, 10), (3, 1, 7), (8, 2, 5)] {
            let moe = moe(&device, experts, top_k);
            let x = input(&device, n).require_grad();
            let (ours, router) = moe.forward(x.clone());
            let theirs = unfused(&moe, x.clone());
            // The burn composition that runs off the CPU.
            let composed = {
                let x2 = x.clone().reshape([n, 12]);
                let (probs, _, routing) = moe.route(x2.clone());
                let (weights, _) = slot_weights(probs, &routing);
                moe.experts_composed(x2, weights, &routing)
                    .reshape([1, n, 12])
            };
            assert!(max_rel(&values(ours.clone()), &values(theirs.clone())) < 1e-5);
            assert!(max_rel(&values(composed.clone()), &values(theirs.clone())) < 1e-5);
            // The same scalar of each, so both walk back through every weight and the input.
            let probe = input(&device, n).mul_scalar(0.37).sin();
            let g1 = (ours * probe.clone()).sum().backward();
            let g3 = (composed * probe.clone()).sum().backward();
            let g2 = (theirs * probe).sum().backward();
            let grads = |g: &burn::tensor::Gradients, p: &Param<Tensor<2>>| {
                values(p.val().grad(g).expect("a gradient"))
            };
            for (i, ex) in moe.experts.iter().enumerate() {
                for p in [&ex.w1, &ex.w2, &ex.w3] {
                    let want = grads(&g2, &p.weight);
                    for (path, g) in [("fused", &g1), ("composed", &g3)] {
                        let rel = max_rel(&grads(g, &p.weight), &want);
                        assert!(rel < 1e-4, "E{experts} k{top_k} {path}: expert {i}: {rel}");
                    }
                }
            }
            for (path, g) in [("fused", &g1), ("composed", &g3)] {
                let rel = max_rel(&grads(g, &moe.gate.weight), &grads(&g2, &moe.gate.weight));
                assert!(rel < 1e-4, "E{experts} k{top_k} {path}: router {rel}");
                let rel = max_rel(&values(x.grad(g).unwrap()), &values(x.grad(&g2).unwrap()));
                assert!(rel < 1e-4, "E{experts} k{top_k} {path}: input {rel}");
            }
            let load_sum: f32 = router.load.iter().sum();
            assert!((load_sum - 1.0).abs() < 1e-6);
        }
    }

    /// With 5 tokens and 8 experts at top-2 some experts get no token; they still get a
    /// gradient, of zeros.
    #[test]
    fn an_expert_without_tokens_gets_a_zero_gradient() {
        let device = Device::flex().autodiff();
        let moe = moe(&device, 8, 1);
        let x = input(&device, 3);
        let (y, router) = moe.forward(x);
        assert!(router.load.contains(&0.0));
        let g = y.sum().backward();
        for (e, ex) in moe.experts.iter().enumerate() {
            let grad = values(
                ex.w1
                    .weight
                    .val()
                    .grad(&g)
                    .expect("every expert has a gradient"),
            );
            let unused = router.load[e] == 0.0;
            assert_eq!(grad.iter().all(|&v| v == 0.0), unused, "expert {e}");
        }
    }
}
