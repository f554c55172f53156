//! Proxy model shapes from a width, as the paper's wind tunnel built them: head_dim 64,
//! d_ff = 2.5 d, and depth growing with width.

use minicpm_model::ModelConfig;
use serde::{Deserialize, Serialize};

/// The paper's proxies (hidden, layers): docs/MODEL.md section 8.
pub const PAPER_PROXIES: [(usize, usize); 7] = [
    (320, 8),
    (512, 12),
    (640, 14),
    (768, 16),
    (896, 18),
    (1024, 20),
    (1344, 24),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyShape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: usize,
}

impl ProxyShape {
    /// The proxy of width `hidden` with heads of `head_dim`. `layers: None` follows the paper:
    /// its table where it has the width, otherwise heads + 4, which is the table's own rule
    /// within one layer (8 heads: 12 layers, 16 heads: 20).
    pub fn of_width(hidden: usize, head_dim: usize, layers: Option<usize>) -> Result<Self, String> {
        if head_dim == 0 || hidden == 0 || !hidden.is_multiple_of(head_dim) {
            return Err(format!(
                "width {hidden} is not a positive multiple of the head size {head_dim}"
            ));
        }
        let heads = hidden / head_dim;
        let layers = match layers {
            Some(0) => return Err("the depth must be positive".into()),
            Some(l) => l,
            None => PAPER_PROXIES
                .iter()
                .find(|(h, _)| *h == hidden)
                .map_or(heads + 4, |(_, l)| *l),
        };
        let intermediate = (hidden * 5).div_ceil(2); // d_ff = 2.5 d
        Ok(ProxyShape {
            hidden,
            heads,
            intermediate,
            layers,
        })
    }

    /// Gives a model config this shape (all heads full: no grouped KV).
    pub fn apply(&self, model: &mut ModelConfig) {
        model.hidden_size = self.hidden;
        model.intermediate_size = self.intermediate;
        model.num_hidden_layers = self.layers;
        model.num_attention_heads = self.heads;
        model.num_key_value_heads = Some(self.heads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_table_is_reproduced() {
        // docs/MODEL.md section 8: (N, hidden, d_ff, heads, layers).
        for (hidden, ff, heads, layers) in [
            (320, 800, 5, 8),
            (512, 1280, 8, 12),
            (640, 1600, 10, 14),
            (768, 1920, 12, 16),
            (896, 2240, 14, 18),
            (1024, 2560, 16, 20),
            (1344, 3360, 21, 24),
        ] {
            let p = ProxyShape::of_width(hidden, 64, None).unwrap();
            assert_eq!((p.intermediate, p.heads, p.layers), (ff, heads, layers));
        }
        let small = ProxyShape::of_width(128, 64, None).unwrap();
        assert_eq!((small.heads, small.intermediate, small.layers), (2, 320, 6));
        assert_eq!(ProxyShape::of_width(256, 64, Some(4)).unwrap().layers, 4);
        assert!(ProxyShape::of_width(100, 64, None).is_err());
        assert!(ProxyShape::of_width(128, 64, Some(0)).is_err());
    }

    #[test]
    fn shaped_configs_have_the_papers_parameter_counts() {
        // docs/MODEL.md section 8: N (non-embedding parameters, millions) of each proxy.
        let millions = [9, 36, 66, 109, 166, 241, 499];
        let mut model: ModelConfig = serde_json::from_value(serde_json::json!({
            "vocab_size": 122753, "hidden_size": 64, "intermediate_size": 160,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2
        }))
        .unwrap();
        for ((hidden, _), n) in PAPER_PROXIES.iter().zip(millions) {
            ProxyShape::of_width(*hidden, 64, None)
                .unwrap()
                .apply(&mut model);
            model.validate("proxy").unwrap();
            assert_eq!(model.num_key_value_heads, Some(model.num_attention_heads));
            let got = model.non_embedding_params() as f64 / 1e6;
            assert_eq!(got.round() as u64, n, "width {hidden}: {got}M");
        }
    }
}
