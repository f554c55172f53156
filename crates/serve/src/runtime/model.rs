//! The model as the runtime holds it: per-layer matrices in their stored type, norms in f32,
//! and the scalar multipliers of docs/MODEL.md section 1. Built from any [`TensorSource`] by HF
//! tensor name.

use super::matrix::Matrix;
use super::source::{RopeLayout, TensorSource};
use minicpm_model::error::ModelError;
use minicpm_model::ModelConfig;

pub struct Layer {
    pub input_norm: Vec<f32>,
    pub q: Matrix,
    pub k: Matrix,
    pub v: Matrix,
    pub o: Matrix,
    pub post_norm: Vec<f32>,
    pub ffn: FeedForward,
}

/// One SwiGLU MLP: `down(silu(gate x) * up x)`.
pub struct Mlp {
    pub gate: Matrix,
    pub up: Matrix,
    pub down: Matrix,
}

/// A layer's feed-forward: the dense MLP, or a router over experts of which each token runs
/// `top_k` (docs/MODEL.md section 12).
pub enum FeedForward {
    Dense(Mlp),
    Moe {
        router: Matrix,
        experts: Vec<Mlp>,
        top_k: usize,
    },
}

impl FeedForward {
    fn matrices(&self) -> Vec<&Matrix> {
        fn mlp(m: &Mlp) -> [&Matrix; 3] {
            [&m.gate, &m.up, &m.down]
        }
        match self {
            FeedForward::Dense(m) => mlp(m).to_vec(),
            FeedForward::Moe {
                router, experts, ..
            } => std::iter::once(router)
                .chain(experts.iter().flat_map(|m| mlp(m)))
                .collect(),
        }
    }
}

pub struct Weights {
    pub embed: Matrix,
    pub layers: Vec<Layer>,
    pub norm: Vec<f32>,
    /// The untied LM head; `None` means the embedding serves.
    pub lm_head: Option<Matrix>,
}

impl Weights {
    /// Every tensor `cfg` implies, read from `src`; a missing or misshapen tensor is an error
    /// naming it.
    pub fn load(src: &dyn TensorSource, cfg: &ModelConfig) -> Result<Weights, ModelError> {
        let (d, ff, vocab, hd) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.vocab_size,
            cfg.head_dim(),
        );
        let (q_dim, kv_dim) = (cfg.num_attention_heads * hd, cfg.num_kv_heads() * hd);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let name = |n: &str| format!("model.layers.{i}.{n}.weight");
                let m = |n: &str, rows, cols| src.matrix(&name(n), rows, cols);
                let mlp = |gate: &str, up: &str, down: &str| -> Result<Mlp, ModelError> {
                    Ok(Mlp {
                        gate: m(gate, ff, d)?,
                        up: m(up, ff, d)?,
                        down: m(down, d, ff)?,
                    })
                };
                let ffn = match cfg.moe() {
                    None => {
                        FeedForward::Dense(mlp("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")?)
                    }
                    Some((experts, top_k)) => FeedForward::Moe {
                        router: m("mlp.gate", experts, d)?,
                        experts: (0..experts)
                            .map(|e| {
                                let w = |k: &str| format!("mlp.experts.{e}.{k}");
                                mlp(&w("w1"), &w("w3"), &w("w2"))
                            })
                            .collect::<Result<_, ModelError>>()?,
                        top_k,
                    },
                };
                Ok(Layer {
                    input_norm: src.vector(&name("input_layernorm"), d)?,
                    q: m("self_attn.q_proj", q_dim, d)?,
                    k: m("self_attn.k_proj", kv_dim, d)?,
                    v: m("self_attn.v_proj", kv_dim, d)?,
                    o: m("self_attn.o_proj", d, q_dim)?,
                    post_norm: src.vector(&name("post_attention_layernorm"), d)?,
                    ffn,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let lm_head = match cfg.tie_word_embeddings {
            true => None,
            false => Some(src.matrix("lm_head.weight", vocab, d)?),
        };
        Ok(Weights {
            embed: src.matrix("model.embed_tokens.weight", vocab, d)?,
            layers,
            norm: src.vector("model.norm.weight", d)?,
            lm_head,
        })
    }

    pub fn head(&self) -> &Matrix {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Bytes of all weights as stored.
    pub fn bytes(&self) -> usize {
        let norms = |l: &Layer| (l.input_norm.len() + l.post_norm.len()) * 4;
        let matrices = |l: &Layer| {
            [&l.q, &l.k, &l.v, &l.o]
                .into_iter()
                .chain(l.ffn.matrices())
                .map(|m| m.stored_bytes())
                .sum::<usize>()
        };
        self.embed.stored_bytes()
            + self.lm_head.as_ref().map_or(0, |m| m.stored_bytes())
            + self.norm.len() * 4
            + self
                .layers
                .iter()
                .map(|l| norms(l) + matrices(l))
                .sum::<usize>()
    }
}

/// A loaded model: its config, its weights, the RoPE layout of its q/k rows, and the thread
/// pool its forward passes run on.
pub struct InferenceModel {
    pub config: ModelConfig,
    pub weights: Weights,
    pub rope_layout: RopeLayout,
    pub(crate) pool: rayon::ThreadPool,
}

impl InferenceModel {
    /// `threads` 0 means one per available core.
    pub fn load(
        src: &dyn TensorSource,
        config: ModelConfig,
        threads: usize,
    ) -> Result<InferenceModel, ModelError> {
        let weights = Weights::load(src, &config)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| ModelError::Parse {
                origin: src.origin(),
                msg: format!("cannot start {threads} threads: {e}"),
            })?;
        Ok(InferenceModel {
            config,
            weights,
            rope_layout: src.rope_layout(),
            pool,
        })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// A cache for `slots` sequences of up to `capacity` tokens.
    pub fn new_cache(&self, slots: usize, capacity: usize) -> super::cache::KvCache {
        self.try_new_cache(slots, capacity)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`InferenceModel::new_cache`], or why the system cannot give it (a server's slots and
    /// context chosen beyond the machine).
    pub fn try_new_cache(
        &self,
        slots: usize,
        capacity: usize,
    ) -> Result<super::cache::KvCache, super::cache::CacheError> {
        let cfg = &self.config;
        super::cache::KvCache::try_new(
            cfg.num_hidden_layers,
            cfg.num_kv_heads(),
            cfg.head_dim(),
            slots,
            capacity,
            minicpm_model::rope::depends_on_length(cfg),
        )
    }
}
