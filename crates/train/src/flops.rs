//! Model FLOPs of one training step, the figure that tokens/s and MFU are quoted against.
//!
//! Per token, training costs 6 FLOPs per weight of every matrix multiply (2 forward, 4 backward):
//! the hidden matrices of every layer (q, k, v, o, gate, up, down) and the LM head (counted even
//! when it is tied to the embedding, since it is a real matmul; the embedding lookup is not).
//! Attention adds its two matmuls, QK^T and AV, over the causal context: a token at position p
//! attends to p+1 keys, so averaged over a sequence of T tokens each head does 2 x 2 x head_dim
//! x T/2 forward FLOPs per token, 3 times that in training: 6 x layers x heads x head_dim x T.
//! Norms, RoPE, softmax and element-wise work are not counted (they are not model FLOPs).
//! In a mixture-of-experts model a token runs k of each layer's E experts, so only the active
//! expert weights count (the router is a matrix like the others).

use minicpm_model::params::ParamCounts;
use minicpm_model::ModelConfig;

/// Weights of the matrix multiplies one token runs through: hidden matrices of every layer
/// (active experts only) plus the LM head (whose matrix has the embedding's shape, tied or not),
/// counted from the model's own description.
pub fn matmul_params(cfg: &ModelConfig) -> u64 {
    let counts = ParamCounts::of(cfg);
    counts.matrices - counts.inactive + counts.embedding
}

/// Training FLOPs per token at sequence length `seq_len` (see the module comment).
pub fn train_flops_per_token(cfg: &ModelConfig, seq_len: usize) -> f64 {
    let attention = 6.0
        * cfg.num_hidden_layers as f64
        * (cfg.num_attention_heads * cfg.head_dim()) as f64
        * seq_len as f64;
    6.0 * matmul_params(cfg) as f64 + attention
}

/// The formula in words, for reports.
pub const FORMULA: &str =
    "6 x (hidden matrices + LM head) + 6 x layers x heads x head_dim x seq_len (causal attention)";

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tied: bool) -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 100, "hidden_size": 8, "intermediate_size": 20,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "tie_word_embeddings": tied
        }))
        .unwrap()
    }

    /// The count by hand: q, k, v, o and three MLP matrices per layer, and the head.
    #[test]
    fn matmul_params_by_hand() {
        for tied in [true, false] {
            let (d, hd, ff, v) = (8u64, 4u64, 20u64, 100u64);
            let per_layer = d * 2 * hd + 2 * d * hd + 2 * hd * d + 3 * d * ff;
            assert_eq!(matmul_params(&cfg(tied)), 2 * per_layer + v * d);
        }
    }

    #[test]
    fn matmul_params_are_the_non_embedding_matrices_plus_the_head() {
        for tied in [true, false] {
            let c = cfg(tied);
            // Norm vectors: two per layer plus the final one.
            let norms = (2 * c.num_hidden_layers as u64 + 1) * c.hidden_size as u64;
            assert_eq!(
                matmul_params(&c),
                c.non_embedding_params() - norms + (c.vocab_size * c.hidden_size) as u64
            );
        }
    }

    #[test]
    fn attention_term_grows_with_the_context() {
        let c = cfg(true);
        let per_doubling = train_flops_per_token(&c, 64) - train_flops_per_token(&c, 32);
        assert_eq!(per_doubling, 6.0 * 2.0 * 8.0 * 32.0);
    }
}
