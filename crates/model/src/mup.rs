//! The muP ("tensor program") rules of MiniCPM: how each tensor is initialised and which share of
//! the base learning rate it gets, plus standard parametrisation (SP) for comparison experiments.
//!
//! Every rule is a function of the tensor's HF name, so the optimizer, the initialiser and the
//! `info` command agree by construction.

use crate::config::ModelConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parametrization {
    /// MiniCPM's muP: scaled embedding, scaled residual branches, logits divided by the width
    /// multiplier, width-dependent init and learning rates for the hidden matrices.
    #[default]
    Mup,
    /// Standard parametrisation: no multipliers, one learning rate, one init std.
    Sp,
}

impl Parametrization {
    /// Both, muP first: the order in which the wind tunnel compares them.
    pub const ALL: [Parametrization; 2] = [Parametrization::Mup, Parametrization::Sp];

    /// The name used in run configs, on the command line and in file names (serde's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Parametrization::Mup => "mup",
            Parametrization::Sp => "sp",
        }
    }
}

impl std::fmt::Display for Parametrization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Parametrization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Parametrization::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown parametrization `{s}` (expected mup or sp)"))
    }
}

/// What a tensor is, as far as the parametrisation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    Embedding,
    LmHead,
    /// A hidden weight matrix (q, k, v, o, gate, up, down, and each expert's w1, w2, w3).
    Matrix,
    Norm,
    /// An MoE layer's router, `mlp.gate.weight [experts, hidden]`.
    Router,
}

impl TensorRole {
    pub fn of(name: &str) -> TensorRole {
        if name == "model.embed_tokens.weight" {
            TensorRole::Embedding
        } else if name == "lm_head.weight" {
            TensorRole::LmHead
        } else if name.ends_with("norm.weight") || name.ends_with("layernorm.weight") {
            TensorRole::Norm
        } else if name.ends_with(".mlp.gate.weight") {
            TensorRole::Router
        } else {
            TensorRole::Matrix
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TensorRole::Embedding => "embedding",
            TensorRole::LmHead => "lm_head",
            TensorRole::Matrix => "matrices",
            TensorRole::Norm => "norms",
            TensorRole::Router => "router",
        }
    }
}

/// How one tensor starts and how it is optimised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorRule {
    /// Standard deviation of the normal init; `None` means ones (norm weights).
    pub init_std: Option<f64>,
    /// The tensor's learning rate is `base_lr * lr_scale`.
    pub lr_scale: f64,
    /// Whether decoupled weight decay applies (never on norms).
    pub weight_decay: bool,
}

/// The router's init std, independent of width: MiniCPM-MoE's N(0, 0.01^2).
pub const ROUTER_INIT_STD: f64 = 0.01;

/// The rules. The router (docs/MODEL.md section 12) starts at N(0, 0.01^2) at every
/// width and, under muP, learns at `lr / scale_width` like the hidden matrices: its fan-in grows
/// with the width and no multiplier divides its logits, so a width-independent step would move
/// them more at larger widths.
pub fn rule(cfg: &ModelConfig, p: Parametrization, role: TensorRole) -> TensorRule {
    let std = cfg.initializer_range;
    let width = cfg.scale_width();
    match (p, role) {
        (_, TensorRole::Router) => TensorRule {
            init_std: Some(ROUTER_INIT_STD),
            lr_scale: match p {
                Parametrization::Mup => 1.0 / width,
                Parametrization::Sp => 1.0,
            },
            weight_decay: true,
        },
        (_, TensorRole::Norm) => TensorRule {
            init_std: None,
            lr_scale: 1.0,
            weight_decay: false,
        },
        (Parametrization::Mup, TensorRole::Matrix) => TensorRule {
            init_std: Some(std / width.sqrt()),
            lr_scale: 1.0 / width,
            weight_decay: true,
        },
        (Parametrization::Mup, _) | (Parametrization::Sp, _) => TensorRule {
            init_std: Some(std),
            lr_scale: 1.0,
            weight_decay: true,
        },
    }
}

/// The model config with SP's neutral multipliers: embedding x1, residual branches x1, logits
/// undivided. Under muP the config is used as is.
pub fn resolve(cfg: &ModelConfig, p: Parametrization) -> ModelConfig {
    match p {
        Parametrization::Mup => cfg.clone(),
        Parametrization::Sp => ModelConfig {
            scale_emb: 1.0,
            scale_depth: (cfg.num_hidden_layers as f64).sqrt(),
            dim_model_base: cfg.hidden_size as f64,
            ..cfg.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_config_spelling() {
        for p in Parametrization::ALL {
            let json = serde_json::to_value(p).unwrap();
            assert_eq!(json, p.name(), "serde and name() agree");
            assert_eq!(p.to_string().parse::<Parametrization>(), Ok(p));
        }
        let e = "muP".parse::<Parametrization>().unwrap_err();
        assert!(e.contains("muP") && e.contains("mup or sp"), "{e}");
    }

    #[test]
    fn minicpm_2b_rules_match_the_paper() {
        let cfg: ModelConfig = serde_json::from_value(serde_json::json!({
            "vocab_size": 122753, "hidden_size": 2304, "intermediate_size": 5760,
            "num_hidden_layers": 40, "num_attention_heads": 36,
            "scale_emb": 12, "scale_depth": 1.4, "dim_model_base": 256, "initializer_range": 0.1
        }))
        .unwrap();
        let m = rule(
            &cfg,
            Parametrization::Mup,
            TensorRole::of("model.layers.3.mlp.down_proj.weight"),
        );
        assert!((m.lr_scale - 1.0 / 9.0).abs() < 1e-15);
        assert!((m.init_std.unwrap() - 0.1 / 3.0).abs() < 1e-15);
        let e = rule(
            &cfg,
            Parametrization::Mup,
            TensorRole::of("model.embed_tokens.weight"),
        );
        assert_eq!((e.init_std, e.lr_scale), (Some(0.1), 1.0));
        let n = rule(
            &cfg,
            Parametrization::Mup,
            TensorRole::of("model.layers.0.input_layernorm.weight"),
        );
        assert_eq!((n.init_std, n.lr_scale, n.weight_decay), (None, 1.0, false));
        assert_eq!(TensorRole::of("model.norm.weight"), TensorRole::Norm);
        let sp = resolve(&cfg, Parametrization::Sp);
        assert_eq!(
            (sp.scale_emb, sp.residual_scale(), sp.scale_width()),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(
            rule(&cfg, Parametrization::Sp, TensorRole::Matrix).lr_scale,
            1.0
        );
    }
}
