//! The MiniCPM decoder (docs/MODEL.md section 1) as burn modules, read top to bottom like the
//! spec.
//!
//! Each module builds itself from a prefixed tensor source ([`Weights`]): the same code makes a
//! randomly initialised model (muP, [`crate::init`]), loads a checkpoint ([`crate::hf`]) and
//! describes a model's tensors without allocating them ([`crate::params`]). Field names follow
//! the HF checkpoint, so the dotted module path of every parameter *is* its HF tensor name, and
//! weights keep PyTorch's `[out, in]` layout: import and export need no renaming and no
//! transposes. Whether an operation runs as a fused CPU kernel is decided in [`crate::kernels`].

use crate::config::ModelConfig;
use crate::kernels;
use crate::kv_cache::{KvCache, LayerCache};
use crate::moe::{Moe, RouterOutput};
use crate::rope::{self, RopeTables};
use crate::weights::Weights;
use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor};

/// A bias-free linear layer with the weight in HF's `[out, in]` layout.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
}

impl Linear {
    pub fn new<E>(w: &mut Weights<E>, d_in: usize, d_out: usize) -> Result<Self, E> {
        Ok(Linear {
            weight: w.param("weight", [d_out, d_in])?,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        kernels::linear(x, self.weight.val(), 1.0)
    }

    /// `scale * forward(x)`, the scale applied inside the product (no pass of its own either
    /// way on the CPU).
    pub fn forward_scaled(&self, x: Tensor<3>, scale: f64) -> Tensor<3> {
        kernels::linear(x, self.weight.val(), scale)
    }
}

/// RMSNorm: `x * rsqrt(mean(x^2) + eps) * weight`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    #[module(skip)]
    eps: f64,
}

impl RmsNorm {
    pub fn new<E>(w: &mut Weights<E>, d: usize, eps: f64) -> Result<Self, E> {
        Ok(RmsNorm {
            weight: w.param("weight", [d])?,
            eps,
        })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        kernels::rms_norm(x, self.weight.val(), self.eps)
    }
}

/// The token embedding table `[vocab, hidden]` (also the LM head when tied).
#[derive(Module, Debug)]
pub struct Embedding {
    pub weight: Param<Tensor<2>>,
}

/// Causal self-attention with RoPE and grouped-query heads (`kv_heads` divides `heads`). The
/// scale is 1/sqrt(head_dim): MiniCPM does not use muP's 1/head_dim.
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    kv_heads: usize,
    #[module(skip)]
    head_dim: usize,
}

impl Attention {
    pub fn new<E>(w: &mut Weights<E>, cfg: &ModelConfig) -> Result<Self, E> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_kv_heads());
        Ok(Attention {
            q_proj: Linear::new(&mut w.pp("q_proj"), d, heads * hd)?,
            k_proj: Linear::new(&mut w.pp("k_proj"), d, kv_heads * hd)?,
            v_proj: Linear::new(&mut w.pp("v_proj"), d, kv_heads * hd)?,
            o_proj: Linear::new(&mut w.pp("o_proj"), heads * hd, d)?,
            heads,
            kv_heads,
            head_dim: hd,
        })
    }

    /// `x [batch, len, hidden]`; with a cache, the new tokens attend to the cached ones too.
    /// The attention's output times `out_scale` (the residual branch's scale, applied by the
    /// output projection).
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RopeTables,
        cache: Option<&mut LayerCache>,
        out_scale: f64,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let q = self.q_proj.forward(x.clone()).reshape([b, t, h, hd]);
        let k = self.k_proj.forward(x.clone()).reshape([b, t, kv, hd]);
        let v = self.v_proj.forward(x).reshape([b, t, kv, hd]);
        let y = kernels::rope_causal_attention(q, k, v, rope, cache);
        self.o_proj
            .forward_scaled(y.reshape([b, t, h * hd]), out_scale)
    }
}

/// The SwiGLU MLP: `down(silu(gate(x)) * up(x))`. An MoE layer ([`Moe`]) stands beside it as
/// the other kind of [`DecoderLayer`] feed-forward.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    pub fn new<E>(w: &mut Weights<E>, d: usize, d_ff: usize) -> Result<Self, E> {
        Ok(Mlp {
            gate_proj: Linear::new(&mut w.pp("gate_proj"), d, d_ff)?,
            up_proj: Linear::new(&mut w.pp("up_proj"), d, d_ff)?,
            down_proj: Linear::new(&mut w.pp("down_proj"), d_ff, d)?,
        })
    }

    /// The MLP's output times `out_scale` (applied by the down projection).
    pub fn forward(&self, x: Tensor<3>, out_scale: f64) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        let up = self.up_proj.forward(x);
        self.down_proj
            .forward_scaled(kernels::swiglu(gate, up), out_scale)
    }
}

/// A decoder layer's feed-forward: the dense MLP or a mixture of experts. Both sit at `mlp` in
/// the HF names; the variant adds no level to them ([`crate::named`]).
#[derive(Module, Debug)]
pub enum FeedForward {
    Dense(Mlp),
    Moe(Moe),
}

impl FeedForward {
    pub fn new<E>(w: &mut Weights<E>, cfg: &ModelConfig) -> Result<Self, E> {
        let (d, d_ff) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(match cfg.moe() {
            None => FeedForward::Dense(Mlp::new(w, d, d_ff)?),
            Some((experts, top_k)) => FeedForward::Moe(Moe::new(w, d, d_ff, experts, top_k)?),
        })
    }

    /// The output times `out_scale`, and the router's side outputs for an MoE layer.
    pub fn forward(&self, x: Tensor<3>, out_scale: f64) -> (Tensor<3>, Option<RouterOutput>) {
        match self {
            FeedForward::Dense(mlp) => (mlp.forward(x, out_scale), None),
            FeedForward::Moe(moe) => {
                let (y, router) = moe.forward(x);
                (y.mul_scalar(out_scale), Some(router))
            }
        }
    }
}

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

/// A shape-erased view of an activation for probes.
pub type Probe<'p> = &'p mut dyn FnMut(Site, &Tensor<3>);

/// One pre-norm decoder layer; muP scales each residual branch by scale_depth / sqrt(L).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: FeedForward,
    #[module(skip)]
    residual_scale: f64,
}

impl DecoderLayer {
    pub fn new<E>(w: &mut Weights<E>, cfg: &ModelConfig) -> Result<Self, E> {
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(DecoderLayer {
            input_layernorm: RmsNorm::new(&mut w.pp("input_layernorm"), d, eps)?,
            self_attn: Attention::new(&mut w.pp("self_attn"), cfg)?,
            post_attention_layernorm: RmsNorm::new(&mut w.pp("post_attention_layernorm"), d, eps)?,
            mlp: FeedForward::new(&mut w.pp("mlp"), cfg)?,
            residual_scale: cfg.residual_scale(),
        })
    }

    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RopeTables,
        cache: Option<&mut LayerCache>,
        probe: Probe<'_>,
        routers: &mut Vec<RouterOutput>,
    ) -> Tensor<3> {
        let h = self.input_layernorm.forward(x.clone());
        let a = self.self_attn.forward(h, rope, cache, self.residual_scale);
        probe(Site::Attention, &a);
        let x = x + a;
        let h = self.post_attention_layernorm.forward(x.clone());
        let (m, router) = self.mlp.forward(h, self.residual_scale);
        routers.extend(router);
        probe(Site::Mlp, &m);
        x + m
    }
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

/// The whole causal LM. `lm_head` is `None` when the head is tied to the embedding.
#[derive(Module, Debug)]
pub struct MiniCpm {
    pub model: Decoder,
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub config: ModelConfig,
}

impl MiniCpm {
    /// The model whose tensors `w` provides, for `cfg`.
    pub fn new<E>(w: &mut Weights<E>, cfg: &ModelConfig) -> Result<Self, E> {
        let (d, vocab) = (cfg.hidden_size, cfg.vocab_size);
        let mut m = w.pp("model");
        let embed_tokens = Embedding {
            weight: m.pp("embed_tokens").param("weight", [vocab, d])?,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(&mut m.pp("layers").pp(i), cfg))
            .collect::<Result<_, E>>()?;
        let norm = RmsNorm::new(&mut m.pp("norm"), d, cfg.rms_norm_eps)?;
        let lm_head = match cfg.tie_word_embeddings {
            true => None,
            false => Some(Linear::new(&mut w.pp("lm_head"), d, vocab)?),
        };
        Ok(MiniCpm {
            model: Decoder {
                embed_tokens,
                layers,
                norm,
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

    /// [`Self::hidden`] of rows that pack several sequences: `positions [batch * len]` count
    /// from 0 in each sequence, which attends to itself only (no cache).
    pub fn hidden_packed(&self, ids: Tensor<2, Int>, positions: &[u32]) -> Tensor<3> {
        self.hidden_routed(ids, Some(positions)).0
    }

    /// The final hidden states of `ids` (no cache; with `positions`, packed rows as in
    /// [`Self::hidden_packed`]) and every MoE layer's router output, in layer order (none for a
    /// dense model): what a training objective reads to add the router losses.
    pub fn hidden_routed(
        &self,
        ids: Tensor<2, Int>,
        positions: Option<&[u32]>,
    ) -> (Tensor<3>, Vec<RouterOutput>) {
        let [rows, len] = ids.dims();
        let rope = match positions {
            Some(p) => rope::packed_tables(&self.config, p, rows, &ids.device()),
            None => rope::tables(&self.config, 0, len, &ids.device()),
        };
        let mut routers = vec![];
        let h = self.layers_from(ids, rope, None, &mut |_, _| {}, &mut routers);
        (h, routers)
    }

    /// [`Self::hidden`], showing `probe` every activation a coordinate check looks at, in order:
    /// the scaled embedding, then per layer the attention and MLP contributions to the residual
    /// stream (after the depth scaling), then the residual stream after the last layer.
    pub fn hidden_probed(
        &self,
        ids: Tensor<2, Int>,
        cache: Option<&mut KvCache>,
        probe: Probe<'_>,
    ) -> Tensor<3> {
        let [_, len] = ids.dims();
        let start = cache.as_ref().map_or(0, |c| c.len());
        let rope = rope::tables(&self.config, start, len, &ids.device());
        self.layers_from(ids, rope, cache, probe, &mut vec![])
    }

    /// Embedding, layers and final norm with the given RoPE tables.
    fn layers_from(
        &self,
        ids: Tensor<2, Int>,
        rope: rope::RopeTables,
        mut cache: Option<&mut KvCache>,
        probe: Probe<'_>,
        routers: &mut Vec<RouterOutput>,
    ) -> Tensor<3> {
        let cfg = &self.config;
        let [_, len] = ids.dims();
        let emb = burn::tensor::module::embedding(self.model.embed_tokens.weight.val(), ids);
        let mut x = emb.mul_scalar(cfg.scale_emb);
        probe(Site::Embedding, &x);
        for (i, layer) in self.model.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, &rope, layer_cache, &mut *probe, routers);
        }
        if let Some(c) = cache {
            c.advance(len);
        }
        probe(Site::Residual, &x);
        self.model.norm.forward(x).div_scalar(cfg.scale_width())
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
