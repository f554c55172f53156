//! Names, shapes and counts of a config's tensors, read off the modules' one description (a
//! model built from [`Weights::describe`], whose parameters hold no values).

use crate::config::ModelConfig;
use crate::model::MiniCpm;
use crate::mup::TensorRole;
use crate::named::named_shapes;
use crate::weights::Weights;

/// Every tensor of a model for `cfg` as (HF name, shape), in module order.
pub fn tensor_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    match MiniCpm::new(&mut Weights::describe(), cfg) {
        Ok(model) => named_shapes(&model),
        Err(never) => match never {},
    }
}

/// Parameter counts by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamCounts {
    /// The token embedding table.
    pub embedding: u64,
    /// The untied LM head (0 when tied to the embedding).
    pub lm_head: u64,
    /// The hidden weight matrices of every layer (every expert's, and the routers).
    pub matrices: u64,
    /// The norm weights.
    pub norms: u64,
    /// Expert weights a token does not use: of each MoE layer's E experts it runs k, so
    /// `(E - k) / E` of the expert matrices (0 for a dense model).
    pub inactive: u64,
}

impl ParamCounts {
    pub fn of(cfg: &ModelConfig) -> ParamCounts {
        let mut c = ParamCounts::default();
        let mut experts = 0u64;
        for (name, shape) in tensor_shapes(cfg) {
            let n: u64 = shape.iter().map(|&d| d as u64).product();
            *match TensorRole::of(&name) {
                TensorRole::Embedding => &mut c.embedding,
                TensorRole::LmHead => &mut c.lm_head,
                TensorRole::Matrix | TensorRole::Router => &mut c.matrices,
                TensorRole::Norm => &mut c.norms,
            } += n;
            if name.contains(".mlp.experts.") {
                experts += n;
            }
        }
        if let Some((e, k)) = cfg.moe() {
            c.inactive = experts / e as u64 * (e - k) as u64;
        }
        c
    }

    /// Non-embedding parameters one token runs through (all of them for a dense model).
    pub fn active_non_embedding(&self) -> u64 {
        self.non_embedding() - self.inactive
    }

    /// Parameters outside the embedding and the LM head (the paper's N).
    pub fn non_embedding(&self) -> u64 {
        self.matrices + self.norms
    }

    /// The embedding, plus the LM head when it is untied.
    pub fn embedding_and_head(&self) -> u64 {
        self.embedding + self.lm_head
    }

    pub fn total(&self) -> u64 {
        self.non_embedding() + self.embedding_and_head()
    }
}

impl ModelConfig {
    /// Parameters outside the embedding and the LM head (the paper's N).
    pub fn non_embedding_params(&self) -> u64 {
        ParamCounts::of(self).non_embedding()
    }

    /// Embedding parameters, plus the LM head when it is untied.
    pub fn embedding_params(&self) -> u64 {
        ParamCounts::of(self).embedding_and_head()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::minicpm_2b;

    #[test]
    fn published_non_embedding_counts() {
        assert_eq!(minicpm_2b().non_embedding_params(), 2_442_057_984);
        let mut c1 = minicpm_2b();
        c1.vocab_size = 73440;
        c1.hidden_size = 1536;
        c1.intermediate_size = 3840;
        c1.num_hidden_layers = 52;
        c1.num_attention_heads = 24;
        c1.num_key_value_heads = Some(8);
        assert_eq!(c1.non_embedding_params(), 1_247_442_432);
        assert_eq!(c1.scale_width(), 6.0);
    }

    #[test]
    fn names_and_shapes_follow_hf() {
        let mut c = minicpm_2b();
        c.num_hidden_layers = 1;
        c.tie_word_embeddings = false;
        let names: Vec<String> = tensor_shapes(&c).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "model.embed_tokens.weight",
                "model.layers.0.input_layernorm.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.self_attn.k_proj.weight",
                "model.layers.0.self_attn.v_proj.weight",
                "model.layers.0.self_attn.o_proj.weight",
                "model.layers.0.post_attention_layernorm.weight",
                "model.layers.0.mlp.gate_proj.weight",
                "model.layers.0.mlp.up_proj.weight",
                "model.layers.0.mlp.down_proj.weight",
                "model.norm.weight",
                "lm_head.weight",
            ]
        );
        let counts = ParamCounts::of(&c);
        assert_eq!(counts.lm_head, counts.embedding);
        assert_eq!(counts.total(), counts.non_embedding() + 2 * 122753 * 2304);
    }
}
