//! The language-modelling objective and held-out evaluation.

use crate::dpo::PairStats;
use crate::lm_head_loss::{lm_head_token_nll, lm_head_weighted_nll, TokenWeights};
use crate::step::Objective;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use minicpm_data::{Batch, IGNORE};
use minicpm_model::moe::RouterOutput;
use minicpm_model::{kernels, MiniCpm};

/// Token ids of a batch as device tensors: inputs `[rows, len]`, targets `[rows * len, 1]`.
pub fn batch_tensors(batch: &Batch, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let ids = |v: &[u32]| v.iter().map(|&x| x as i64).collect::<Vec<i64>>();
    let inputs = Tensor::from_data(
        TensorData::new(ids(&batch.inputs), [batch.rows, batch.seq_len]),
        device,
    );
    let targets = Tensor::from_data(
        TensorData::new(ids(&batch.targets), [batch.rows * batch.seq_len, 1]),
        device,
    );
    (inputs, targets)
}

/// Mean next-token cross-entropy (nats) of `logits [n, vocab]` against `targets [n, 1]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<1> {
    log_softmax(logits, 1).gather(1, targets).mean().neg()
}

/// Mean cross-entropy of the model on one batch.
pub fn lm_loss(model: &MiniCpm, batch: &Batch, device: &Device) -> Tensor<1> {
    let inputs = input_tensor(batch, device);
    batch_loss(model, inputs, &batch.targets)
}

/// Next-token cross-entropy at every position: pre-training's objective.
#[derive(Debug, Clone, Copy, Default)]
pub struct LanguageModel;

impl Objective for LanguageModel {
    type Batch = Batch;

    fn loss_tokens(&self, batch: &Batch) -> usize {
        batch.targets.len()
    }

    fn loss(&self, model: &MiniCpm, batch: &Batch, device: &Device) -> Tensor<1> {
        let (hidden, routers) = routed_hidden(model, batch, device);
        let nll = weighted_nll(model, hidden, &batch.targets, TokenWeights::Mean);
        with_router_losses(model, nll, &routers)
    }
}

/// The final hidden states of a batch, `[rows * len, hidden]`, with every MoE layer's router
/// output (none for a dense model).
fn routed_hidden(
    model: &MiniCpm,
    batch: &Batch,
    device: &Device,
) -> (Tensor<2>, Vec<RouterOutput>) {
    let inputs = input_tensor(batch, device);
    let (hidden, routers) = model.hidden_routed(inputs, batch.positions.as_deref());
    let [b, t, d] = hidden.dims();
    (hidden.reshape([b * t, d]), routers)
}

/// `loss` plus the MoE router losses, each averaged over the layers and weighted by the model's
/// `router_aux_loss_coef` (load balancing) and `router_z_loss_coef` (docs/MODEL.md section
/// 12). A dense model's loss comes back unchanged.
pub fn with_router_losses(model: &MiniCpm, loss: Tensor<1>, routers: &[RouterOutput]) -> Tensor<1> {
    if routers.is_empty() {
        return loss;
    }
    let (balance_coef, z_coef) = model.config.router_loss_coefs();
    let layers = routers.len() as f64;
    let mut total = loss;
    for r in routers {
        if balance_coef > 0.0 {
            total = total + r.balance_loss.clone().mul_scalar(balance_coef / layers);
        }
        if z_coef > 0.0 {
            total = total + r.z_loss.clone().mul_scalar(z_coef / layers);
        }
    }
    total
}

/// Next-token cross-entropy over the positions whose target is not [`IGNORE`]: supervised
/// fine-tuning's objective, where only the assistant's tokens are learned (docs/FINETUNE.md).
/// Packed rows attend within each conversation.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedLanguageModel;

impl Objective for MaskedLanguageModel {
    type Batch = Batch;

    fn loss_tokens(&self, batch: &Batch) -> usize {
        batch.loss_tokens()
    }

    fn loss(&self, model: &MiniCpm, batch: &Batch, device: &Device) -> Tensor<1> {
        let (hidden, routers) = routed_hidden(model, batch, device);
        let nll = masked_nll(model, hidden, batch);
        with_router_losses(model, nll, &routers)
    }
}

/// The mean NLL of `hidden`'s positions over `batch`'s loss tokens (targets not [`IGNORE`]).
fn masked_nll(model: &MiniCpm, hidden: Tensor<2>, batch: &Batch) -> Tensor<1> {
    let w = 1.0 / batch.loss_tokens().max(1) as f32;
    let weights: Vec<f32> = batch
        .targets
        .iter()
        .map(|&t| if t == IGNORE { 0.0 } else { w })
        .collect();
    weighted_nll(model, hidden, &batch.targets, TokenWeights::Each(&weights))
}

/// Token ids of a batch's inputs as a device tensor `[rows, len]`.
pub fn input_tensor(batch: &Batch, device: &Device) -> Tensor<2, Int> {
    let ids = batch.inputs.iter().map(|&x| x as i64).collect::<Vec<i64>>();
    Tensor::from_data(TensorData::new(ids, [batch.rows, batch.seq_len]), device)
}

/// The final hidden states of a batch's positions, `[rows * len, hidden]`; packed rows attend
/// within each sequence.
pub fn batch_hidden(model: &MiniCpm, batch: &Batch, device: &Device) -> Tensor<2> {
    let inputs = input_tensor(batch, device);
    let hidden = match &batch.positions {
        Some(p) => model.hidden_packed(inputs, p),
        None => model.hidden(inputs, None),
    };
    let [b, t, d] = hidden.dims();
    hidden.reshape([b * t, d])
}

/// Mean cross-entropy of the model on `inputs [rows, len]` against `targets` (`rows * len` ids).
/// On the CPU the LM head and the loss run fused and chunked ([`lm_head_cross_entropy`]);
/// elsewhere the logits are materialised and [`cross_entropy`] applies.
pub fn batch_loss(model: &MiniCpm, inputs: Tensor<2, Int>, targets: &[u32]) -> Tensor<1> {
    let hidden = model.hidden(inputs, None);
    let [b, t, d] = hidden.dims();
    weighted_nll(
        model,
        hidden.reshape([b * t, d]),
        targets,
        TokenWeights::Mean,
    )
}

/// The next-token NLLs of `hidden [n, d]` against `targets` combined by `weights`. On the CPU
/// the LM head and the loss run fused and chunked ([`lm_head_weighted_nll`]); elsewhere the
/// logits are materialised.
pub fn weighted_nll(
    model: &MiniCpm,
    hidden: Tensor<2>,
    targets: &[u32],
    weights: TokenWeights,
) -> Tensor<1> {
    let device = hidden.device();
    if kernels::available(&device) {
        return lm_head_weighted_nll(hidden, model.head_weight(), targets, weights);
    }
    let n = targets.len();
    let logits = hidden.matmul(model.head_weight().transpose());
    let ids: Vec<i64> = targets
        .iter()
        .map(|&x| if x == IGNORE { 0 } else { x as i64 })
        .collect();
    let targets = Tensor::from_data(TensorData::new(ids, [n, 1]), &device);
    match weights {
        TokenWeights::Mean => cross_entropy(logits, targets),
        TokenWeights::Each(w) => {
            let w = Tensor::<2>::from_data(TensorData::new(w.to_vec(), [n, 1]), &device);
            (log_softmax(logits, 1).gather(1, targets) * w).sum().neg()
        }
    }
}

/// Each position's next-token NLL (0 where the target is [`IGNORE`]), without gradients.
pub fn token_nll(model: &MiniCpm, hidden: Tensor<2>, targets: &[u32]) -> Vec<f32> {
    let hidden = hidden.inner();
    let head = model.head_weight().inner();
    if kernels::available(&hidden.device()) {
        return lm_head_token_nll(hidden, head, targets);
    }
    let n = targets.len();
    let device = hidden.device();
    let ids: Vec<i64> = targets
        .iter()
        .map(|&x| if x == IGNORE { 0 } else { x as i64 })
        .collect();
    let picked = log_softmax(hidden.matmul(head.transpose()), 1)
        .gather(1, Tensor::from_data(TensorData::new(ids, [n, 1]), &device));
    let values = picked
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 log-probabilities");
    values
        .iter()
        .zip(targets)
        .map(|(&lp, &t)| if t == IGNORE { 0.0 } else { -lp })
        .collect()
}

/// Mean masked loss over all loss tokens of `batches` (token-weighted), with gradients off:
/// held-out answer loss.
pub fn evaluate_masked(model: &MiniCpm, batches: &[Batch], device: &Device) -> f64 {
    let model = model.valid();
    let inner = device.clone().inner();
    let (mut total, mut count) = (0.0, 0);
    for b in batches {
        let n = b.loss_tokens();
        if n > 0 {
            let hidden = batch_hidden(&model, b, &inner);
            let mean = masked_nll(&model, hidden, b).into_scalar::<f32>() as f64;
            total += mean * n as f64;
            count += n;
        }
    }
    total / count.max(1) as f64
}

/// Held-out results: mean loss in nats per token, and bits per byte when byte counts are known.
#[derive(Debug, Clone)]
pub struct EvalResult {
    pub loss: f64,
    pub bits_per_byte: Option<f64>,
    /// Held-out preference pairs' rewards (DPO runs).
    pub pairs: Option<PairStats>,
    /// How an MoE model routed the held-out tokens (`None` for a dense model).
    pub routing: Option<RouterStats>,
}

/// Mean loss over `batches` with gradients off, and an MoE model's routing of them, from one
/// forward pass per batch. `bytes_per_token` converts to bits per byte.
pub fn evaluate(
    model: &MiniCpm,
    batches: &[Batch],
    bytes_per_token: Option<f64>,
    device: &Device,
) -> EvalResult {
    let model = model.valid();
    let inner = device.clone().inner();
    let mut total = 0.0;
    let mut routing = None;
    for b in batches {
        let (hidden, routers) = routed_hidden(&model, b, &inner);
        let nll = weighted_nll(&model, hidden, &b.targets, TokenWeights::Mean);
        total += nll.into_scalar::<f32>() as f64;
        RouterStats::add(&mut routing, &routers, 1.0 / batches.len() as f32);
    }
    let loss = total / batches.len().max(1) as f64;
    EvalResult {
        loss,
        bits_per_byte: bytes_per_token.map(|bpt| loss / std::f64::consts::LN_2 / bpt),
        pairs: None,
        routing,
    }
}

/// How an MoE model routes held-out tokens: per layer, each expert's share of the token-slots
/// and the mean entropy (nats) of the router's softmax.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterStats {
    pub load: Vec<Vec<f32>>,
    pub entropy: Vec<f32>,
}

impl RouterStats {
    /// Adds `weight` times one pass's router outputs to `sum` (nothing for a dense model).
    fn add(sum: &mut Option<RouterStats>, routers: &[RouterOutput], weight: f32) {
        if routers.is_empty() {
            return;
        }
        let s = sum.get_or_insert_with(|| RouterStats {
            load: routers.iter().map(|r| vec![0.0; r.load.len()]).collect(),
            entropy: vec![0.0; routers.len()],
        });
        for (i, r) in routers.iter().enumerate() {
            for (acc, x) in s.load[i].iter_mut().zip(&r.load) {
                *acc += weight * x;
            }
            s.entropy[i] += weight * r.entropy;
        }
    }
}
