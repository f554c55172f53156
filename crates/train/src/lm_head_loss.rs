//! The LM head and the cross-entropy in one chunked pass that never holds all the logits.
//!
//! A batch of `n` tokens over a vocabulary of `v` has `n x v` logits (2048 x 8192 x 4 bytes =
//! 64 MiB for the benchmark shape), and the unfused loss walks them about ten times, forward and
//! backward, through freshly allocated buffers. Here the logits are made a few hundred rows at a
//! time; each chunk's softmax, loss and logit gradient (`softmax - onehot`, over n) come from
//! three passes over that chunk alone, and its contributions to the gradients of the hidden
//! states and the head weight are two matmuls. The gradients are therefore known when the
//! forward pass ends, and they are handed to autodiff through a surrogate that is linear in the
//! two inputs (see [`with_gradients`]).

use burn::tensor::{Tensor, TensorData};
use minicpm_data::IGNORE;
use minicpm_model::kernels::strided_gemm::{gemm_on_pool, View};
use minicpm_model::kernels::{matmul_precision, vector_math, zeros, HostTensor};
use rayon::prelude::*;

/// Logits per chunk, in elements (16 MiB of f32): large enough that the matmuls run at full
/// speed and the head-weight gradient is accumulated only a few times.
const CHUNK_ELEMENTS: usize = 4 << 20;
/// Fewest rows per chunk, so a huge vocabulary still gets efficient matmuls.
const MIN_CHUNK_ROWS: usize = 128;

/// How the tokens' losses combine into the result.
#[derive(Debug, Clone, Copy)]
pub enum TokenWeights<'a> {
    /// The mean over all tokens: pre-training's loss.
    Mean,
    /// `sum_t w_t * nll_t`: a masked mean (`w = 1 / count` on loss tokens, 0 elsewhere) or any
    /// loss whose gradient with respect to each token's NLL is known (DPO's). A token whose
    /// target is [`IGNORE`] must weigh 0.
    Each(&'a [f32]),
}

/// Mean next-token cross-entropy (nats) of `hidden [n, d] x weight[v, d]^T` against `targets`
/// (`n` ids below `v`). With autodiff inputs the result carries exact gradients to both.
///
/// The chunk arithmetic runs on host memory, so this path is for CPU devices; other devices use
/// the unfused loss (see [`crate::loss`]).
pub fn lm_head_cross_entropy(hidden: Tensor<2>, weight: Tensor<2>, targets: &[u32]) -> Tensor<1> {
    lm_head_weighted_nll(hidden, weight, targets, TokenWeights::Mean)
}

/// The tokens' next-token NLLs combined by `weights`, with exact gradients as
/// [`lm_head_cross_entropy`].
pub fn lm_head_weighted_nll(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    targets: &[u32],
    weights: TokenWeights,
) -> Tensor<1> {
    let rows = chunk_rows(hidden.dims()[0], weight.dims()[0]);
    chunked(hidden, weight, targets, weights, rows, None)
}

/// Each token's next-token NLL (0 where the target is [`IGNORE`]), without gradients.
pub fn lm_head_token_nll(hidden: Tensor<2>, weight: Tensor<2>, targets: &[u32]) -> Vec<f32> {
    let n = hidden.dims()[0];
    let rows = chunk_rows(n, weight.dims()[0]);
    let mut out = vec![0f32; n];
    // Without autodiff inputs no gradient is formed; only the NLLs written to `out` count.
    let (h, w) = (hidden.inner(), weight.inner());
    chunked(h, w, targets, TokenWeights::Mean, rows, Some(&mut out));
    out
}

fn chunk_rows(n: usize, v: usize) -> usize {
    (CHUNK_ELEMENTS / v.max(1))
        .max(MIN_CHUNK_ROWS)
        .min(n.max(1))
}

/// [`lm_head_weighted_nll`] with `rows` logit rows per chunk; each token's NLL is also written
/// to `nll` when given.
fn chunked(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    targets: &[u32],
    weights: TokenWeights,
    rows: usize,
    mut nll: Option<&mut [f32]>,
) -> Tensor<1> {
    let [n, d] = hidden.dims();
    let v = weight.dims()[0];
    assert_eq!(targets.len(), n, "one target per hidden state");
    assert_eq!(
        weight.dims()[1],
        d,
        "the head's inputs match the hidden size"
    );
    if let TokenWeights::Each(w) = weights {
        assert_eq!(w.len(), n, "one weight per hidden state");
    }
    let device = hidden.device();
    let inner_device = hidden.clone().inner().device();
    let need_grads = hidden.is_autodiff() || weight.is_autodiff();
    let host = |t: &Tensor<2>| {
        HostTensor::new(t.clone().inner()).expect("the chunked LM head runs on CPU tensors")
    };
    let (h, w) = (host(&hidden), host(&weight));
    let (h, w) = (h.values(), w.values());
    let inv_n = 1.0 / n as f32;
    let p = matmul_precision();

    let mut loss_sum = 0.0f64;
    // One logits buffer for every chunk; the gradients are written in place: each chunk's rows
    // of the hidden states' gradient, and its sum into the head weight's.
    let mut logits = zeros(rows.min(n) * v);
    let (mut grad_hidden, mut grad_weight) = match need_grads {
        true => (zeros(n * d), zeros(v * d)),
        false => (vec![], vec![]),
    };
    let w_rows = View::rows(&w, 0, d);
    for start in (0..n).step_by(rows) {
        let len = rows.min(n - start);
        let values = &mut logits[..len * v];
        let h_chunk = View::rows(&h, start * d, d);
        gemm_on_pool(len, v, d, values, 0, v, false, h_chunk, w_rows.t(), 1.0, p);
        let scale = match weights {
            TokenWeights::Mean => RowScale::All(inv_n),
            TokenWeights::Each(w) => RowScale::Each(&w[start..start + len]),
        };
        loss_sum += softmax_loss_rows(
            values,
            v,
            &targets[start..start + len],
            scale,
            need_grads,
            nll.as_deref_mut().map(|o| &mut o[start..start + len]),
        );
        if need_grads {
            let dlogits = View::rows(values, 0, v);
            let gh = &mut grad_hidden;
            gemm_on_pool(len, d, v, gh, start * d, d, false, dlogits, w_rows, 1.0, p);
            let gw = &mut grad_weight;
            gemm_on_pool(v, d, len, gw, 0, d, start > 0, dlogits.t(), h_chunk, 1.0, p);
        }
    }
    let loss = match weights {
        TokenWeights::Mean => (loss_sum / n.max(1) as f64) as f32,
        TokenWeights::Each(_) => loss_sum as f32,
    };
    let value = Tensor::<1>::from_data(TensorData::new(vec![loss], [1]), &device);
    match need_grads {
        true => {
            let tensor = |values, shape: [usize; 2]| {
                Tensor::<2>::from_data(TensorData::new(values, shape), &inner_device)
            };
            with_gradients(
                value,
                vec![
                    (hidden, tensor(grad_hidden, [n, d])),
                    (weight, tensor(grad_weight, [v, d])),
                ],
            )
        }
        false => value,
    }
}

/// The weight of each row's loss in a chunk.
#[derive(Clone, Copy)]
enum RowScale<'a> {
    /// Every row alike; the returned sum is unweighted (the caller divides).
    All(f32),
    /// Row by row; the returned sum is weighted.
    Each(&'a [f32]),
}

/// Turns each row of `logits [rows, v]` into its loss contribution and, with `grads`,
/// overwrites the row with the loss gradient `(softmax - onehot(target)) * scale`; a row whose
/// target is [`IGNORE`] contributes nothing. Returns the summed loss of the rows (see
/// [`RowScale`]) and writes each row's NLL to `nll` when given. Rows are processed in parallel.
fn softmax_loss_rows(
    logits: &mut [f32],
    v: usize,
    targets: &[u32],
    scale: RowScale,
    grads: bool,
    nll: Option<&mut [f32]>,
) -> f64 {
    let weight_of = |i: usize| match scale {
        RowScale::All(w) => w,
        RowScale::Each(w) => w[i],
    };
    let row_loss = |i: usize, row: &mut [f32], target: u32| -> f32 {
        if target == IGNORE {
            row.fill(0.0);
            return 0.0;
        }
        let target = target as usize;
        let max = vector_math::max(row);
        let target_logit = row[target];
        let sum = vector_math::exp_shifted_sum(row, max);
        if grads {
            let weight = weight_of(i);
            vector_math::scale(row, weight / sum);
            row[target] -= weight;
        }
        sum.ln() + max - target_logit
    };
    let contribution = |i: usize, loss: f32| match scale {
        RowScale::All(_) => loss as f64,
        RowScale::Each(w) => (w[i] * loss) as f64,
    };
    let rows = logits.par_chunks_mut(v).zip(targets.par_iter()).enumerate();
    // The rows' contributions are added in row order, not in the order the threads finish, so
    // that the same logits give the same loss to the last bit.
    let contributions: Vec<f64> = match nll {
        None => rows
            .map(|(i, (row, &target))| contribution(i, row_loss(i, row, target)))
            .collect(),
        Some(out) => rows
            .zip(out.par_iter_mut())
            .map(|((i, (row, &target)), out)| {
                *out = row_loss(i, row, target);
                contribution(i, *out)
            })
            .collect(),
    };
    contributions.iter().sum()
}

/// `value`, carrying the gradient `grad` to each `input` of the pairs: the result is
/// `value + s - detach(s)` with the surrogate `s = sum(input * grad)`, whose gradient with respect
/// to `input` is exactly `grad` (times whatever multiplies the result downstream) and whose value
/// cancels. The gradients are constants, so they must already be those of `value`.
fn with_gradients(value: Tensor<1>, pairs: Vec<(Tensor<2>, Tensor<2>)>) -> Tensor<1> {
    let mut surrogate: Option<Tensor<1>> = None;
    for (input, grad) in pairs {
        let term = (input * grad.autodiff()).sum();
        surrogate = Some(match surrogate {
            Some(s) => s + term,
            None => term,
        });
    }
    match surrogate {
        Some(s) => value.autodiff() + (s.clone() - s.detach()),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::cross_entropy;
    use burn::tensor::{Device, Distribution, Int};

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Values and gradients of the chunked loss against the unfused log-softmax loss under
    /// autodiff, with a ragged last chunk and a repeated target.
    #[test]
    fn matches_the_unfused_loss_and_its_gradients() {
        let device = Device::flex().autodiff();
        let (n, d, v) = (37, 16, 50);
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % v as u32).collect();
        let hidden = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<2>::random([v, d], Distribution::Normal(0.0, 1.0), &device);

        let run = |fused: bool| {
            let h = hidden.clone().detach().require_grad();
            let w = weight.clone().detach().require_grad();
            let loss = if fused {
                chunked(h.clone(), w.clone(), &targets, TokenWeights::Mean, 8, None)
            } else {
                let ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
                let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, 1]), &device);
                cross_entropy(h.clone().matmul(w.clone().transpose()), t)
            };
            // A downstream factor, as gradient accumulation applies, must reach the gradients.
            let grads = loss.clone().mul_scalar(0.5).backward();
            let gh = h.grad(&grads).expect("hidden gradient");
            let gw = w.grad(&grads).expect("weight gradient");
            (loss.into_scalar::<f32>(), gh, gw)
        };
        let (loss_fused, gh_fused, gw_fused) = run(true);
        let (loss_ref, gh_ref, gw_ref) = run(false);
        assert!(
            (loss_fused - loss_ref).abs() < 1e-5,
            "{loss_fused} vs {loss_ref}"
        );
        assert!(max_abs_diff(gh_fused, gh_ref) < 1e-6);
        assert!(max_abs_diff(gw_fused, gw_ref) < 1e-6);
    }

    #[test]
    fn without_autodiff_it_is_the_plain_loss() {
        let device = Device::flex();
        let hidden = Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<2>::random([9, 4], Distribution::Normal(0.0, 1.0), &device);
        let targets = [0u32, 8, 3, 3, 1];
        let ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [5, 1]), &device);
        let reference = cross_entropy(hidden.clone().matmul(weight.clone().transpose()), t);
        let fused = chunked(hidden, weight, &targets, TokenWeights::Mean, 2, None);
        let diff = (fused.into_scalar::<f32>() - reference.into_scalar::<f32>()).abs();
        assert!(diff < 1e-6, "{diff}");
    }
}
