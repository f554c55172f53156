//! The unfused compositions of burn operations that the fused kernels replace: the path off the
//! CPU backend and while decoding with a KV cache, and the reference every kernel is tested
//! against (kernels/tests.rs).

use crate::kv_cache::LayerCache;
use crate::rope::{self, RopeTables};
use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor, TensorData};

/// The bias-free linear layer `scale * x [.., d_in] * weight^T` with `weight [d_out, d_in]`.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, scale: f64) -> Tensor<D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let mut out = dims;
    out[D - 1] = weight.dims()[0];
    let y = x
        .reshape([dims.iter().product::<usize>() / d_in.max(1), d_in])
        .matmul(weight.transpose())
        .reshape(out);
    match scale == 1.0 {
        true => y,
        false => y.mul_scalar(scale),
    }
}

/// RMSNorm: `x * rsqrt(mean(x^2) + eps) * weight`.
pub fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    let inv_rms = x
        .clone()
        .square()
        .mean_dim(2)
        .add_scalar(eps)
        .sqrt()
        .recip();
    x * inv_rms * weight.unsqueeze::<3>()
}

/// SwiGLU's gate: `silu(gate) * up`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    silu(gate) * up
}

/// RoPE on `q [batch, len, heads, head_dim]` and `k`, `v [batch, len, kv_heads, head_dim]`, the
/// cached keys and values prepended when there is a cache, then causal softmax attention, within
/// each sequence for packed rows ([`RopeTables::first_key`]); the result has q's shape.
pub fn rope_causal_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    rope: &RopeTables,
    cache: Option<&mut LayerCache>,
) -> Tensor<4> {
    let groups = q.dims()[2] / k.dims()[2];
    let q = rope::apply(q.swap_dims(1, 2), rope);
    let mut k = rope::apply(k.swap_dims(1, 2), rope);
    let mut v = v.swap_dims(1, 2);
    if let Some(c) = cache {
        (k, v) = c.append(k, v);
    }
    let (k, v) = (repeat_kv(k, groups), repeat_kv(v, groups));
    let mask = rope.first_key.as_ref().map(|first| {
        let [b, h, t, _] = q.dims();
        let earlier: Vec<bool> = (0..b * t * t)
            .map(|i| i % t < first[i / t] as usize)
            .collect();
        Tensor::<4, Bool>::from_data(TensorData::new(earlier, [b, 1, t, t]), &q.device())
            .expand([b, h, t, t])
    });
    // Causal masking in burn aligns the last query with the last key, which is what decoding
    // with a cache needs. `scale: None` is 1/sqrt(head_dim).
    let opts = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: true,
    };
    attention(q, k, v, mask, None, opts).swap_dims(1, 2)
}

/// Grouped-query attention: each KV head of `x [batch, kv_heads, len, head_dim]` serves
/// `groups` query heads.
fn repeat_kv(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return x;
    }
    let [b, kv, t, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, groups, t, hd])
        .reshape([b, kv * groups, t, hd])
}
