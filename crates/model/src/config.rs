//! The model configuration: the keys of a Hugging Face MiniCPM `config.json`, with the same names,
//! so one struct reads HF checkpoints, the project's TOML presets and writes `config.json` back.

use crate::error::ModelError;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use std::path::Path;

/// `rope_scaling` as HF writes it, e.g. `{"type": "dynamic", "factor": 4.0}` (docs/MODEL.md
/// section 13 gives each type's formula).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScaling {
    /// "linear", "dynamic" (NTK-aware, the 128K model) or "yarn". Newer HF configs call it
    /// `rope_type`.
    #[serde(rename = "type", alias = "rope_type")]
    pub kind: String,
    pub factor: f64,
    /// YaRN: the context the model was trained at; absent means `max_position_embeddings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
    /// YaRN: the scale on cos and sin; absent means `0.1 ln(factor) + 1` (or the `mscale` ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f64>,
    /// YaRN: rotations per trained context above which a frequency is kept (default 32) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_fast: Option<f64>,
    /// ... and below which it is interpolated (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_slow: Option<f64>,
    /// YaRN (DeepSeek's form): the attention factor as `mscale(factor, mscale) /
    /// mscale(factor, mscale_all_dim)` when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mscale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mscale_all_dim: Option<f64>,
    /// YaRN: whether the ramp's ends are rounded to whole dimensions (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
}

/// The RoPE scaling types this crate computes.
pub const ROPE_SCALING_TYPES: [&str; 3] = ["linear", "dynamic", "yarn"];

impl RopeScaling {
    /// A scaling of `kind` by `factor` with every optional key absent.
    pub fn new(kind: &str, factor: f64) -> RopeScaling {
        RopeScaling {
            kind: kind.into(),
            factor,
            original_max_position_embeddings: None,
            attention_factor: None,
            beta_fast: None,
            beta_slow: None,
            mscale: None,
            mscale_all_dim: None,
            truncate: None,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !ROPE_SCALING_TYPES.contains(&self.kind.as_str()) {
            return Err(format!(
                "type {:?} is not supported ({})",
                self.kind,
                ROPE_SCALING_TYPES.join(", ")
            ));
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(format!("factor must be >= 1, got {}", self.factor));
        }
        let yarn_keys = [
            (
                "original_max_position_embeddings",
                self.original_max_position_embeddings.is_some(),
            ),
            ("attention_factor", self.attention_factor.is_some()),
            ("beta_fast", self.beta_fast.is_some()),
            ("beta_slow", self.beta_slow.is_some()),
            ("mscale", self.mscale.is_some()),
            ("mscale_all_dim", self.mscale_all_dim.is_some()),
            ("truncate", self.truncate.is_some()),
        ];
        if self.kind != "yarn" {
            if let Some((key, _)) = yarn_keys.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{key} applies to type \"yarn\" only, not {:?}",
                    self.kind
                ));
            }
        }
        for (key, v) in [
            ("attention_factor", self.attention_factor),
            ("beta_fast", self.beta_fast),
            ("beta_slow", self.beta_slow),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{key} must be a positive number, got {v}"));
                }
            }
        }
        if self.original_max_position_embeddings == Some(0) {
            return Err("original_max_position_embeddings must be positive".into());
        }
        Ok(())
    }
}

/// A value or a list of values, as config files write either (`"eos_token_id": 2` or
/// `[2, 73440]`; `valid = "shards/valid"` or a list of paths).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(x) => std::slice::from_ref(x),
            OneOrMany::Many(v) => v,
        }
    }
}

impl<T: PartialEq + Copy> OneOrMany<T> {
    pub fn contains(&self, x: T) -> bool {
        self.as_slice().contains(&x)
    }
}

/// `eos_token_id`: an integer in MiniCPM's configs and a list in some others.
pub type TokenIds = OneOrMany<u32>;

/// A MiniCPM model's shape and multipliers. Field names are HF `config.json` keys; defaults follow
/// HF's `MiniCPMConfig` where the key is optional.
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Absent means multi-head attention (as many KV heads as query heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde_inline_default("silu".into())]
    pub hidden_act: String,
    #[serde_inline_default(4096)]
    pub max_position_embeddings: usize,
    /// muP's `init_std` (MiniCPM: 0.1).
    #[serde_inline_default(0.1)]
    pub initializer_range: f64,
    #[serde_inline_default(1e-5)]
    pub rms_norm_eps: f64,
    #[serde_inline_default(10_000.0)]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Absent means tied, as in HF.
    #[serde_inline_default(true)]
    pub tie_word_embeddings: bool,
    #[serde_inline_default(1)]
    pub bos_token_id: u32,
    #[serde_inline_default(TokenIds::One(2))]
    pub eos_token_id: TokenIds,
    #[serde_inline_default(1.0)]
    pub scale_emb: f64,
    #[serde_inline_default(1.0)]
    pub scale_depth: f64,
    #[serde_inline_default(1.0)]
    pub dim_model_base: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_experts: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_experts_per_tok: Option<usize>,
    /// Weight of the MoE load-balancing loss in the training objective (HF Mixtral's and
    /// GraniteMoE's key); absent means 0.01, MiniCPM-MoE's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_aux_loss_coef: Option<f64>,
    /// Weight of the router z-loss (HF SwitchTransformers' key); absent means 0 (off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_z_loss_coef: Option<f64>,
}

/// MiniCPM-MoE's load-balancing coefficient (docs/MODEL.md section 12).
pub const DEFAULT_ROUTER_AUX_LOSS_COEF: f64 = 0.01;

/// HF `config.json` keys that describe the file rather than the model; accepted and dropped.
const HF_BOOKKEEPING_KEYS: &[&str] = &[
    "architectures",
    "model_type",
    "auto_map",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "_name_or_path",
    "use_cache",
    "pretraining_tp",
    "attention_bias",
    "attention_dropout",
    "pad_token_id",
    "initializer_range_embed",
    "mlp_bias",
    "head_dim",
    "use_sliding_window",
    "sliding_window",
];

impl ModelConfig {
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// muP's width multiplier: hidden / dim_model_base (6 for MiniCPM-1.2B, 9 for 2.4B).
    pub fn scale_width(&self) -> f64 {
        self.hidden_size as f64 / self.dim_model_base
    }

    /// `(num_experts, num_experts_per_tok)` of a mixture-of-experts model; `None` when dense.
    pub fn moe(&self) -> Option<(usize, usize)> {
        self.num_experts
            .map(|e| (e, self.num_experts_per_tok.unwrap_or(2)))
    }

    /// Weights of the load-balancing and z losses (0 for a dense model).
    pub fn router_loss_coefs(&self) -> (f64, f64) {
        match self.moe() {
            None => (0.0, 0.0),
            Some(_) => (
                self.router_aux_loss_coef
                    .unwrap_or(DEFAULT_ROUTER_AUX_LOSS_COEF),
                self.router_z_loss_coef.unwrap_or(0.0),
            ),
        }
    }

    /// The factor on every residual branch: scale_depth / sqrt(L).
    pub fn residual_scale(&self) -> f64 {
        self.scale_depth / (self.num_hidden_layers as f64).sqrt()
    }

    /// Checks shapes and values; `origin` names the file in the error.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let bad = |field: &str, msg: String| ModelError::Config {
            origin: origin.to_string(),
            field: field.to_string(),
            msg,
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(bad(field, "must be positive".into()));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(bad(
                "num_attention_heads",
                format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(bad(
                "num_attention_heads",
                format!("head dimension {} must be even for RoPE", self.head_dim()),
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "num_attention_heads {} is not divisible by num_key_value_heads {}",
                    self.num_attention_heads,
                    self.num_kv_heads()
                ),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(bad(
                "hidden_act",
                format!("{:?} is not supported (only \"silu\")", self.hidden_act),
            ));
        }
        for (field, v) in [
            ("scale_emb", self.scale_emb),
            ("scale_depth", self.scale_depth),
            ("dim_model_base", self.dim_model_base),
            ("rope_theta", self.rope_theta),
            ("rms_norm_eps", self.rms_norm_eps),
            ("initializer_range", self.initializer_range),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(field, format!("must be a positive number, got {v}")));
            }
        }
        if let Some(rs) = &self.rope_scaling {
            rs.validate().map_err(|msg| bad("rope_scaling", msg))?;
        }
        self.validate_moe().map_err(|(field, msg)| bad(field, msg))
    }

    fn validate_moe(&self) -> Result<(), (&'static str, String)> {
        let Some((experts, top_k)) = self.moe() else {
            return match (
                self.num_experts_per_tok,
                self.router_aux_loss_coef,
                self.router_z_loss_coef,
            ) {
                (None, None, None) => Ok(()),
                _ => Err((
                    "num_experts",
                    "num_experts_per_tok and the router loss weights need num_experts".into(),
                )),
            };
        };
        if experts == 0 {
            return Err(("num_experts", "must be positive".into()));
        }
        if top_k == 0 || top_k > experts {
            return Err((
                "num_experts_per_tok",
                format!("must be between 1 and num_experts ({experts}), got {top_k}"),
            ));
        }
        for (field, v) in [
            ("router_aux_loss_coef", self.router_aux_loss_coef),
            ("router_z_loss_coef", self.router_z_loss_coef),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err((field, format!("must be a non-negative number, got {v}")));
                }
            }
        }
        Ok(())
    }

    /// Reads an HF `config.json`. Keys that describe the file (architectures, torch_dtype, ...) are
    /// dropped; any other unknown key is an error, because silently ignoring a model hyper-parameter
    /// would run a different model than the one asked for.
    pub fn from_hf_json(path: &Path) -> Result<Self, ModelError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Parse {
                origin: origin.clone(),
                msg: e.to_string(),
            })?;
        if let Some(map) = value.as_object_mut() {
            for key in HF_BOOKKEEPING_KEYS {
                map.remove(*key);
            }
        }
        let cfg: ModelConfig = crate::strict::from_value(value, &origin)?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }

    /// The `config.json` an HF loader (transformers with MiniCPM's remote code, vLLM, llama.cpp's
    /// converter) expects next to the weights.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a config always serialises");
        let map = v.as_object_mut().expect("config is an object");
        map.insert(
            "architectures".into(),
            serde_json::json!(["MiniCPMForCausalLM"]),
        );
        map.insert("model_type".into(), serde_json::json!("minicpm"));
        map.insert("torch_dtype".into(), serde_json::json!("float32"));
        map.insert(
            "num_key_value_heads".into(),
            serde_json::json!(self.num_kv_heads()),
        );
        map.insert("use_cache".into(), serde_json::json!(true));
        v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// MiniCPM-2.4B's shape, for tests across the crate.
    pub(crate) fn minicpm_2b() -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 122753, "hidden_size": 2304, "intermediate_size": 5760,
            "num_hidden_layers": 40, "num_attention_heads": 36, "num_key_value_heads": 36,
            "scale_emb": 12, "scale_depth": 1.4, "dim_model_base": 256
        }))
        .unwrap()
    }

    #[test]
    fn rejects_inconsistent_heads() {
        let mut c = minicpm_2b();
        c.num_attention_heads = 35;
        let e = c.validate("x.toml").unwrap_err().to_string();
        assert!(
            e.contains("x.toml") && e.contains("num_attention_heads"),
            "{e}"
        );
        let mut c = minicpm_2b();
        c.num_key_value_heads = Some(5);
        let e = c.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("num_key_value_heads"), "{e}");
    }
}
