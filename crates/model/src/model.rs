//! The MiniCPM decoder (MINICPM.md section 1) as burn modules.
//!
//! Field names follow the HF checkpoint, so the dotted module path of every parameter *is* its HF
//! tensor name (`model.layers.3.self_attn.q_proj.weight`), and weights keep PyTorch's `[out, in]`
//! layout: import and export need no renaming and no transposes.

use crate::config::ModelConfig;
use crate::kernels;
use crate::kv_cache::{KvCache, LayerCache};
use crate::rope::{self, RopeTables};
use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// A bias-free linear layer with the weight in HF's `[out, in]` layout.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
}

impl Linear {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d_in] = x.dims();
        let w = self.weight.val();
        let d_out = w.dims()[0];
        x.reshape([b * t, d_in])
            .matmul(w.transpose())
            .reshape([b, t, d_out])
    }
}

/// RMSNorm: `x * rsqrt(mean(x^2) + eps) * weight`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
}

impl RmsNorm {
    pub fn forward(&self, x: Tensor<3>, eps: f64) -> Tensor<3> {
        if kernels::available(&x.device()) {
            return kernels::rms_norm(x, self.weight.val(), eps);
        }
        rms_norm_unfused(x, self.weight.val(), eps)
    }
}

/// RMSNorm as burn operations: the path off the CPU, and the reference for the fused kernel.
pub(crate) fn rms_norm_unfused(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    let inv_rms = x
        .clone()
        .square()
        .mean_dim(2)
        .add_scalar(eps)
        .sqrt()
        .recip();
    x * inv_rms * weight.unsqueeze::<3>()
}

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if kernels::available(&x.device()) {
            let gate = self.gate_proj.forward(x.clone());
            return self
                .down_proj
                .forward(kernels::swiglu(gate, self.up_proj.forward(x)));
        }
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

#[derive(Module, Debug)]
pub struct Embedding {
    pub weight: Param<Tensor<2>>,
}

/// The whole causal LM. `lm_head` is `None` when the head is tied to the embedding.
#[derive(Module, Debug)]
pub struct MiniCpm {
    pub model: Decoder,
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub config: ModelConfig,
}

/// Shapes of every tensor of a model, in HF order and with HF names: the one list that
/// initialisation, import, export and parameter counting share.
/// Where [`MiniCpm::hidden_probed`] shows an activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// The embedding times scale_emb.
    Embedding,
    /// A layer's attention output times scale_depth / sqrt(L).
    Attention,
    /// A layer's MLP output times scale_depth / sqrt(L).
    Mlp,
    /// The residual stream after the last layer, before the final norm.
    Residual,
}

impl Site {
    pub fn label(self) -> &'static str {
        match self {
            Site::Embedding => "embedding",
            Site::Attention => "attention",
            Site::Mlp => "mlp",
            Site::Residual => "residual",
        }
    }
}

pub fn tensor_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, hd, ff) = (cfg.hidden_size, cfg.head_dim(), cfg.intermediate_size);
    let (h, kv) = (cfg.num_attention_heads, cfg.num_kv_heads());
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, d],
    )];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![d]));
        out.push((format!("{p}.self_attn.q_proj.weight"), vec![h * hd, d]));
        out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv * hd, d]));
        out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv * hd, d]));
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![d, h * hd]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![ff, d]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![ff, d]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![d, ff]));
    }
    out.push(("model.norm.weight".to_string(), vec![d]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, d]));
    }
    out
}

impl MiniCpm {
    /// Builds a model whose tensors come from `source(name, shape)`: a random initialiser or a
    /// checkpoint reader. `source` is called once per tensor, in [`tensor_shapes`] order.
    pub fn build<E>(
        cfg: &ModelConfig,
        device: &Device,
        mut source: impl FnMut(&str, &[usize]) -> Result<Vec<f32>, E>,
    ) -> Result<Self, E> {
        let src = &mut source;
        let (d, hd, ff) = (cfg.hidden_size, cfg.head_dim(), cfg.intermediate_size);
        let (h, kv) = (cfg.num_attention_heads, cfg.num_kv_heads());
        let lin = |weight| Linear { weight };
        let norm = |weight| RmsNorm { weight };
        let embed_tokens = Embedding {
            weight: take(
                src,
                device,
                "model.embed_tokens.weight".into(),
                [cfg.vocab_size, d],
            )?,
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let input_layernorm = norm(take(
                src,
                device,
                format!("{p}.input_layernorm.weight"),
                [d],
            )?);
            let self_attn = Attention {
                q_proj: lin(take(
                    src,
                    device,
                    format!("{p}.self_attn.q_proj.weight"),
                    [h * hd, d],
                )?),
                k_proj: lin(take(
                    src,
                    device,
                    format!("{p}.self_attn.k_proj.weight"),
                    [kv * hd, d],
                )?),
                v_proj: lin(take(
                    src,
                    device,
                    format!("{p}.self_attn.v_proj.weight"),
                    [kv * hd, d],
                )?),
                o_proj: lin(take(
                    src,
                    device,
                    format!("{p}.self_attn.o_proj.weight"),
                    [d, h * hd],
                )?),
            };
            let post_attention_layernorm = norm(take(
                src,
                device,
                format!("{p}.post_attention_layernorm.weight"),
                [d],
            )?);
            let mlp = Mlp {
                gate_proj: lin(take(
                    src,
                    device,
                    format!("{p}.mlp.gate_proj.weight"),
                    [ff, d],
                )?),
                up_proj: lin(take(
                    src,
                    device,
                    format!("{p}.mlp.up_proj.weight"),
                    [ff, d],
                )?),
                down_proj: lin(take(
                    src,
                    device,
                    format!("{p}.mlp.down_proj.weight"),
                    [d, ff],
                )?),
            };
            layers.push(DecoderLayer {
                input_layernorm,
                self_attn,
                post_attention_layernorm,
                mlp,
            });
        }
        let final_norm = norm(take(src, device, "model.norm.weight".into(), [d])?);
        let lm_head = match cfg.tie_word_embeddings {
            true => None,
            false => Some(lin(take(
                src,
                device,
                "lm_head.weight".into(),
                [cfg.vocab_size, d],
            )?)),
        };
        Ok(MiniCpm {
            model: Decoder {
                embed_tokens,
                layers,
                norm: final_norm,
            },
            lm_head,
            config: cfg.clone(),
        })
    }

    /// Final hidden states, already divided by the muP width multiplier: `[batch, len, hidden]`.
    /// With a cache, `ids` are the new tokens and their positions continue after the cached ones.
    pub fn hidden(&self, ids: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.hidden_probed(ids, cache, &mut |_, _| {})
    }

    /// [`Self::hidden`], showing `probe` every activation a coordinate check looks at, in order:
    /// the scaled embedding, then per layer the attention and MLP contributions to the residual
    /// stream (after the depth scaling), then the residual stream after the last layer.
    pub fn hidden_probed(
        &self,
        ids: Tensor<2, Int>,
        mut cache: Option<&mut KvCache>,
        probe: &mut dyn FnMut(Site, &Tensor<3>),
    ) -> Tensor<3> {
        let cfg = &self.config;
        let [_, len] = ids.dims();
        let start = cache.as_ref().map_or(0, |c| c.len());
        let device = ids.device();
        let rope = rope::tables(cfg, start, len, &device);
        let emb = burn::tensor::module::embedding(self.model.embed_tokens.weight.val(), ids);
        let mut x = emb.mul_scalar(cfg.scale_emb);
        probe(Site::Embedding, &x);
        let res = cfg.residual_scale();
        for (i, layer) in self.model.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let h = layer.input_layernorm.forward(x.clone(), cfg.rms_norm_eps);
            let a = self_attention(&layer.self_attn, h, cfg, &rope, layer_cache).mul_scalar(res);
            probe(Site::Attention, &a);
            x = x + a;
            let h = layer
                .post_attention_layernorm
                .forward(x.clone(), cfg.rms_norm_eps);
            let m = layer.mlp.forward(h).mul_scalar(res);
            probe(Site::Mlp, &m);
            x = x + m;
        }
        if let Some(c) = cache {
            c.advance(len);
        }
        probe(Site::Residual, &x);
        self.model
            .norm
            .forward(x, cfg.rms_norm_eps)
            .div_scalar(cfg.scale_width())
    }

    /// The LM-head weight `[vocab, hidden]` (the embedding when tied).
    pub fn head_weight(&self) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.weight.val(),
            None => self.model.embed_tokens.weight.val(),
        }
    }

    /// Logits `[batch, len, vocab]`.
    pub fn forward(&self, ids: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        let h = self.hidden(ids, cache);
        let [b, t, d] = h.dims();
        let w = self.head_weight();
        let v = w.dims()[0];
        h.reshape([b * t, d])
            .matmul(w.transpose())
            .reshape([b, t, v])
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_hidden_layers)
    }
}

fn take<const D: usize, E>(
    source: &mut impl FnMut(&str, &[usize]) -> Result<Vec<f32>, E>,
    device: &Device,
    name: String,
    shape: [usize; D],
) -> Result<Param<Tensor<D>>, E> {
    let values = source(&name, &shape)?;
    Ok(Param::from_data(TensorData::new(values, shape), device))
}

fn self_attention(
    attn: &Attention,
    x: Tensor<3>,
    cfg: &ModelConfig,
    rope: &RopeTables,
    cache: Option<&mut LayerCache>,
) -> Tensor<3> {
    let [b, t, _] = x.dims();
    let (h, kv, hd) = (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim());
    if cache.is_none() && kernels::available(&x.device()) {
        // One fused kernel for RoPE and causal attention, in the projections' own layout.
        let q = attn.q_proj.forward(x.clone()).reshape([b, t, h, hd]);
        let k = attn.k_proj.forward(x.clone()).reshape([b, t, kv, hd]);
        let v = attn.v_proj.forward(x).reshape([b, t, kv, hd]);
        let table = |x: &Tensor<4>| x.clone().reshape([t, hd]);
        let y = kernels::rope_causal_attention(q, k, v, table(&rope.cos), table(&rope.sin));
        return attn.o_proj.forward(y.reshape([b, t, h * hd]));
    }
    let heads = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]).swap_dims(1, 2);
    let q = rope::apply(heads(attn.q_proj.forward(x.clone()), h), rope);
    let mut k = rope::apply(heads(attn.k_proj.forward(x.clone()), kv), rope);
    let mut v = heads(attn.v_proj.forward(x), kv);
    if let Some(c) = cache {
        (k, v) = c.append(k, v);
    }
    let (k, v) = (repeat_kv(k, h / kv), repeat_kv(v, h / kv));
    // Causal masking in burn aligns the last query with the last key, which is what decoding
    // with a cache needs. The scale is 1/sqrt(head_dim) (MiniCPM does not use muP's 1/d).
    let opts = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: true,
    };
    let y = attention(q, k, v, None, None, opts);
    attn.o_proj
        .forward(y.swap_dims(1, 2).reshape([b, t, h * hd]))
}

/// Grouped-query attention: each KV head serves `groups` query heads.
fn repeat_kv(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return x;
    }
    let [b, kv, t, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, groups, t, hd])
        .reshape([b, kv * groups, t, hd])
}
