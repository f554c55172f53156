//! The language-modelling objective and held-out evaluation.

use crate::lm_head_loss::lm_head_cross_entropy;
use crate::step::Objective;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use minicpm_data::Batch;
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
    fn loss_tokens(&self, batch: &Batch) -> usize {
        batch.targets.len()
    }

    fn loss(&self, model: &MiniCpm, batch: &Batch, device: &Device) -> Tensor<1> {
        lm_loss(model, batch, device)
    }
}

/// Token ids of a batch's inputs as a device tensor `[rows, len]`.
pub fn input_tensor(batch: &Batch, device: &Device) -> Tensor<2, Int> {
    let ids = batch.inputs.iter().map(|&x| x as i64).collect::<Vec<i64>>();
    Tensor::from_data(TensorData::new(ids, [batch.rows, batch.seq_len]), device)
}

/// Mean cross-entropy of the model on `inputs [rows, len]` against `targets` (`rows * len` ids).
/// On the CPU the LM head and the loss run fused and chunked ([`lm_head_cross_entropy`]);
/// elsewhere the logits are materialised and [`cross_entropy`] applies.
pub fn batch_loss(model: &MiniCpm, inputs: Tensor<2, Int>, targets: &[u32]) -> Tensor<1> {
    let device = inputs.device();
    let hidden = model.hidden(inputs, None);
    let [b, t, d] = hidden.dims();
    let hidden = hidden.reshape([b * t, d]);
    // On the CPU backend the fused loss reads and writes the logits in host memory directly.
    if kernels::available(&device) {
        return lm_head_cross_entropy(hidden, model.head_weight(), targets);
    }
    let logits = hidden.matmul(model.head_weight().transpose());
    let ids = targets.iter().map(|&x| x as i64).collect::<Vec<i64>>();
    let targets = Tensor::from_data(TensorData::new(ids, [b * t, 1]), &device);
    cross_entropy(logits, targets)
}

/// Held-out results: mean loss in nats per token, and bits per byte when byte counts are known.
#[derive(Debug, Clone, Copy)]
pub struct EvalResult {
    pub loss: f64,
    pub bits_per_byte: Option<f64>,
}

/// Mean loss over `batches` with gradients off. `bytes_per_token` converts to bits per byte.
pub fn evaluate(
    model: &MiniCpm,
    batches: &[Batch],
    bytes_per_token: Option<f64>,
    device: &Device,
) -> EvalResult {
    let model = model.valid();
    let inner = device.clone().inner();
    let mut total = 0.0;
    for b in batches {
        total += lm_loss(&model, b, &inner).into_scalar::<f32>() as f64;
    }
    let loss = total / batches.len().max(1) as f64;
    EvalResult {
        loss,
        bits_per_byte: bytes_per_token.map(|bpt| loss / std::f64::consts::LN_2 / bpt),
    }
}
