//! Fused CPU kernels for training, exposed to burn as a backend extension (`FusedKernels`) with
//! hand-written backward passes, and the one place that chooses between them and the unfused
//! [`reference`] compositions: the model calls [`linear`], [`rms_norm`], [`swiglu`] and
//! [`rope_causal_attention`], which run fused when the tensors live on the CPU backend.
//!
//! Each kernel replaces a chain of generic tensor operations whose intermediate results autodiff
//! would otherwise keep and walk again: it has one forward and one backward implementation, and
//! a test against the unfused composition (values and gradients).

pub mod attention_cpu;
mod autodiff;
pub mod bf16_gemm;
pub mod linear;
pub mod moe_cpu;
pub mod reference;
pub mod rms_norm;
pub mod strided_gemm;
pub mod swiglu;
#[cfg(test)]
mod tests;
pub mod vector_math;

use crate::kv_cache::LayerCache;
use crate::rope::RopeTables;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Flex};
use burn::tensor::{Device, Tensor, TensorData};

#[backend_extension(Flex, Autodiff)]
pub trait FusedKernels: Backend {
    /// RoPE on `q [batch, len, heads, head_dim]` and `k [batch, len, kv_heads, head_dim]` with
    /// the tables `cos`, `sin [len, head_dim]` (or `[batch * len, head_dim]`, a table per row),
    /// then causal softmax attention (scale 1/sqrt(head_dim)) over `v` (k's shape); the result
    /// has q's shape. `first_key [batch * len]`, for rows that pack several sequences, is the
    /// first key each query may see; empty, every query sees the row from its start.
    fn rope_causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        first_key: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The bias-free linear layer `scale * x [.., d_in] * weight^T` with `weight [d_out, d_in]`.
    fn linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, scale: f64) -> FloatTensor<Self>;

    /// RMSNorm of `x [.., d]` with `weight [d]`: `x * rsqrt(mean(x^2) + eps) * weight`.
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;

    /// SwiGLU's gate: `silu(gate) * up`, element-wise.
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// An MoE layer's experts over `x [tokens, hidden]` (docs/MODEL.md section 12): token-slot
    /// `s` (token `s / k`, token-major) goes to expert `choice[s]` (an index stored as f32, not
    /// differentiated) with routing weight `weights[s]`; `w1`, `w3 [experts, ffn, hidden]` and
    /// `w2 [experts, hidden, ffn]` stack the experts' weights. The result is `[tokens, hidden]`.
    fn moe_experts(
        x: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        choice: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        w2: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl FusedKernels for Flex {
    fn rope_causal_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        cos: FlexTensor,
        sin: FlexTensor,
        first_key: FlexTensor,
    ) -> FlexTensor {
        attention_flex(&q, &k, &v, &cos, &sin, &first_key).0
    }

    fn linear(x: FlexTensor, weight: FlexTensor, scale: f64) -> FlexTensor {
        linear::forward_flex(&x, &weight, scale as f32).0
    }

    fn rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        rms_norm::forward_flex(&x, &weight, eps).0
    }

    fn swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        swiglu::forward_flex(&gate, &up)
    }

    fn moe_experts(
        x: FlexTensor,
        weights: FlexTensor,
        choice: FlexTensor,
        w1: FlexTensor,
        w3: FlexTensor,
        w2: FlexTensor,
    ) -> FlexTensor {
        moe_cpu::forward_flex(&x, &weights, &choice, &w1, &w3, &w2).0
    }
}

/// The arithmetic of the training step's large products on the CPU (the linear layers' and the
/// LM head's; attention's per-head products and MoE experts' stay in f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bfloat16, sums in f32 ([`bf16_gemm`]).
    Bf16,
}

static MATMUL_BF16: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets the precision of the products for the whole process, like PyTorch's
/// `torch.set_float32_matmul_precision`: a run sets it once, from `train.matmul`, before its
/// first step. Each linear layer's backward pass keeps the precision its forward pass used.
pub fn set_matmul_precision(precision: MatmulPrecision) {
    let bf16 = precision == MatmulPrecision::Bf16;
    MATMUL_BF16.store(bf16, std::sync::atomic::Ordering::Relaxed);
}

/// The precision [`set_matmul_precision`] set (f32 unless it was called).
pub fn matmul_precision() -> MatmulPrecision {
    match MATMUL_BF16.load(std::sync::atomic::Ordering::Relaxed) {
        true => MatmulPrecision::Bf16,
        false => MatmulPrecision::F32,
    }
}

/// Whether the fused kernels can run on `device` (the CPU backend, with or without autodiff).
pub fn available(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// The bias-free linear layer `scale * x [.., d_in] * weight^T`, `weight [d_out, d_in]`: direct
/// GEMM calls on the CPU, the scale applied inside them ([`linear`](mod@linear)); burn's matmul
/// elsewhere.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, scale: f64) -> Tensor<D> {
    match available(&x.device()) {
        true => fused::linear(x, weight, scale),
        false => reference::linear(x, weight, scale),
    }
}

/// RMSNorm of `x [batch, len, d]` with `weight [d]`: fused on the CPU, the reference elsewhere.
pub fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    match available(&x.device()) {
        true => fused::rms_norm(x, weight, eps),
        false => reference::rms_norm(x, weight, eps),
    }
}

/// SwiGLU's gate `silu(gate) * up`: fused on the CPU, the reference elsewhere.
pub fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    match available(&gate.device()) {
        true => fused::swiglu(gate, up),
        false => reference::swiglu(gate, up),
    }
}

/// An MoE layer's experts in one fused kernel ([`FusedKernels::moe_experts`]); CPU tensors only
/// (callers check [`available`] and compose burn operations elsewhere).
pub fn moe_experts(
    x: Tensor<2>,
    weights: Tensor<1>,
    choice: Tensor<1>,
    w1: Tensor<3>,
    w3: Tensor<3>,
    w2: Tensor<3>,
) -> Tensor<2> {
    fused::moe_experts(x, weights, choice, w1, w3, w2)
}

/// RoPE and causal attention on the projections' own layout, `q [batch, len, heads, head_dim]`,
/// `k`, `v [batch, len, kv_heads, head_dim]`; the result has q's shape. One fused kernel on the
/// CPU when there is no cache; the reference composition otherwise. Packed rows (see
/// [`RopeTables::first_key`]) attend within each sequence only.
pub fn rope_causal_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    rope: &RopeTables,
    cache: Option<&mut LayerCache>,
) -> Tensor<4> {
    if cache.is_none() && available(&q.device()) {
        let [_, t, _, hd] = q.dims();
        let rows = rope.cos.dims()[0] * t;
        let table = |x: &Tensor<4>| x.clone().reshape([rows, hd]);
        let first: Vec<f32> = match &rope.first_key {
            Some(f) => f.iter().map(|&k| k as f32).collect(),
            None => vec![],
        };
        let n = first.len();
        let first = Tensor::from_data(TensorData::new(first, [n]), &q.device());
        return fused::rope_causal_attention(q, k, v, table(&rope.cos), table(&rope.sin), first);
    }
    reference::rope_causal_attention(q, k, v, rope, cache)
}

/// The fused kernels on high-level tensors, whatever the device (tests call them directly).
pub(crate) mod fused {
    use super::FusedKernels;
    use burn::backend::Dispatch;
    use burn::tensor::Tensor;

    /// [`FusedKernels::rope_causal_attention`].
    pub fn rope_causal_attention(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        cos: Tensor<2>,
        sin: Tensor<2>,
        first_key: Tensor<1>,
    ) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as FusedKernels>::rope_causal_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            cos.into_dispatch(),
            sin.into_dispatch(),
            first_key.into_dispatch(),
        ))
    }

    /// [`FusedKernels::linear`].
    pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, scale: f64) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as FusedKernels>::linear(
            x.into_dispatch(),
            weight.into_dispatch(),
            scale,
        ))
    }

    /// [`FusedKernels::rms_norm`].
    pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as FusedKernels>::rms_norm(
            x.into_dispatch(),
            weight.into_dispatch(),
            eps,
        ))
    }

    /// [`FusedKernels::swiglu`].
    pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as FusedKernels>::swiglu(
            gate.into_dispatch(),
            up.into_dispatch(),
        ))
    }

    /// [`FusedKernels::moe_experts`].
    pub fn moe_experts(
        x: Tensor<2>,
        weights: Tensor<1>,
        choice: Tensor<1>,
        w1: Tensor<3>,
        w3: Tensor<3>,
        w2: Tensor<3>,
    ) -> Tensor<2> {
        Tensor::from_dispatch(<Dispatch as FusedKernels>::moe_experts(
            x.into_dispatch(),
            weights.into_dispatch(),
            choice.into_dispatch(),
            w1.into_dispatch(),
            w3.into_dispatch(),
            w2.into_dispatch(),
        ))
    }
}

/// A CPU tensor without autodiff, for arithmetic on its values in host memory (the chunked LM
/// head and its loss).
pub struct HostTensor(FlexTensor);

impl HostTensor {
    /// `t`'s own storage, when it is a CPU tensor without autodiff.
    pub fn new<const D: usize>(t: Tensor<D>) -> Option<Self> {
        t.try_into_primitive::<Flex>().ok().map(HostTensor)
    }

    /// The contiguous f32 elements (copied only when the tensor is a strided view).
    pub fn values(&self) -> std::borrow::Cow<'_, [f32]> {
        host_values(&self.0)
    }
}

/// Elements zeroed per task in [`zeros`].
const ZERO_CHUNK: usize = 64 * 1024;

/// A zero-filled vector of `len` floats, filled on the thread pool. The kernels' outputs are
/// allocated on the calling thread just before a parallel pass, and `vec![0.0; len]` would zero
/// them (and take their page faults) there while the pool waits; here that work is shared.
pub fn zeros(len: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()
        .par_chunks_mut(ZERO_CHUNK)
        .for_each(|c| c.fill(std::mem::MaybeUninit::new(0.0)));
    // SAFETY: every element up to `len` was written just above.
    unsafe { v.set_len(len) };
    v
}

/// The contiguous f32 elements of a CPU tensor (copied only when it is a strided view).
fn host_values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("f32 tensors (the fused kernels compute in f32)")
                .to_vec(),
        ),
    }
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn attention_dims(q: &FlexTensor, k: &FlexTensor) -> attention_cpu::Dims {
    let (qs, ks) = (q.layout().shape(), k.layout().shape());
    attention_cpu::Dims {
        batch: qs[0],
        len: qs[1],
        heads: qs[2],
        kv_heads: ks[2],
        head_dim: qs[3],
    }
}

/// [`FusedKernels::rope_causal_attention`]'s `first_key` as indices.
fn first_keys(first_key: &FlexTensor) -> Vec<usize> {
    host_values(first_key).iter().map(|&k| k as usize).collect()
}

fn attention_scale(dims: &attention_cpu::Dims) -> f32 {
    1.0 / (dims.head_dim as f32).sqrt()
}

/// Forward pass on CPU tensors: the output, and the softmax statistics for the backward pass.
fn attention_flex(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    cos: &FlexTensor,
    sin: &FlexTensor,
    first_key: &FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let dims = attention_dims(q, k);
    let (cos, sin, first) = (host_values(cos), host_values(sin), first_keys(first_key));
    let rope = attention_cpu::Rope {
        cos: &cos,
        sin: &sin,
        first_key: &first,
    };
    let (out, stats) = attention_cpu::forward(
        dims,
        &host_values(q),
        &host_values(k),
        &host_values(v),
        &rope,
        attention_scale(&dims),
    );
    let q_shape = q.layout().shape().to_vec();
    let stats_shape = vec![dims.batch, dims.heads, dims.len, attention_cpu::STATS];
    (flex_tensor(out, q_shape), flex_tensor(stats, stats_shape))
}
