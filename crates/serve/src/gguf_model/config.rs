//! The model configuration back from a GGUF file's metadata: the inverse of
//! `export::model_metadata`.

use crate::gguf::{Header, Value};
use minicpm_model::config::{RopeScaling, TokenIds};
use minicpm_model::error::ModelError;
use minicpm_model::ModelConfig;

pub const ARCHITECTURE: &str = "minicpm";

fn get<'a>(metadata: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x as u64),
        Value::U16(x) => Some(x as u64),
        Value::U32(x) => Some(x as u64),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => Some(x as f64),
        Value::F64(x) => Some(x),
        _ => as_u64(v).map(|x| x as f64),
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// `tokenizer.huggingface.json`: the HF tokenizer the file was made from.
pub fn tokenizer_json(metadata: &[(String, Value)]) -> Option<String> {
    get(metadata, "tokenizer.huggingface.json")
        .and_then(as_str)
        .map(String::from)
}

/// `tokenizer.chat_template`.
pub fn chat_template(metadata: &[(String, Value)]) -> Option<String> {
    get(metadata, "tokenizer.chat_template")
        .and_then(as_str)
        .map(String::from)
}

/// The decimal with fewest digits that `forward` maps to the stored f32 `stored` (`approx` is
/// the f64 estimate): 1.4, not 1.39999997, when the file holds f32(1.4 / sqrt(L)).
fn shortest_preimage(stored: f32, approx: f64, forward: impl Fn(f64) -> f64) -> f64 {
    (1..=17)
        .filter_map(|digits| format!("{:.*e}", digits - 1, approx).parse::<f64>().ok())
        .find(|&d| forward(d) as f32 == stored)
        .unwrap_or(approx)
}

/// The HF configuration of a `minicpm` GGUF file (`origin` names it in errors): shapes from the
/// `minicpm.*` keys, `scale_emb` = embedding_scale, `scale_depth` = residual_scale * sqrt(L),
/// `dim_model_base` = hidden / logit_scale, tied unless the file has `output.weight`, the
/// vocabulary from `token_embd.weight`'s rows, BOS/EOS from the tokenizer's keys.
pub fn config_from_gguf(origin: &str, header: &Header) -> Result<ModelConfig, ModelError> {
    let m = &header.metadata;
    let err = |key: &str, msg: String| ModelError::Config {
        origin: origin.to_string(),
        field: key.to_string(),
        msg,
    };
    let arch = get(m, "general.architecture").and_then(as_str);
    if arch != Some(ARCHITECTURE) {
        return Err(err(
            "general.architecture",
            format!("{arch:?}: only llama.cpp's \"minicpm\" architecture is supported"),
        ));
    }
    let key = |k: &str| format!("{ARCHITECTURE}.{k}");
    let int = |k: &str| -> Result<usize, ModelError> {
        let full = key(k);
        get(m, &full)
            .ok_or_else(|| err(&full, "missing".into()))
            .and_then(|v| as_u64(v).ok_or_else(|| err(&full, format!("{v:?} is not an integer"))))
            .map(|x| x as usize)
    };
    let optional_int = |k: &str| match get(m, &key(k)) {
        Some(_) => int(k).map(Some),
        None => Ok(None),
    };
    let float = |k: &str, default: Option<f64>| -> Result<f64, ModelError> {
        let full = key(k);
        match get(m, &full) {
            Some(v) => as_f64(v).ok_or_else(|| err(&full, format!("{v:?} is not a number"))),
            None => default.ok_or_else(|| err(&full, "missing".into())),
        }
    };
    let layers = int("block_count")?;
    let hidden = int("embedding_length")?;
    let heads = int("attention.head_count")?;
    let kv_heads = match get(m, &key("attention.head_count_kv")) {
        Some(_) => int("attention.head_count_kv")?,
        None => heads,
    };
    let embd = header
        .tensor("token_embd.weight")
        .ok_or_else(|| ModelError::Tensor {
            origin: origin.to_string(),
            tensor: "token_embd.weight".into(),
            msg: "missing".into(),
        })?;
    let vocab_size = embd.shape[0] as usize;
    let residual = float("residual_scale", Some(1.4 / (layers as f64).sqrt()))?;
    let logit = float("logit_scale", Some(1.0))?;
    let sqrt_l = (layers as f64).sqrt();
    let scale_depth = shortest_preimage(residual as f32, residual * sqrt_l, |d| d / sqrt_l);
    let dim_model_base =
        shortest_preimage(logit as f32, hidden as f64 / logit, |d| hidden as f64 / d);
    let scaling_type = key("rope.scaling.type");
    let rope_scaling = match get(m, &scaling_type).and_then(as_str) {
        None | Some("none") => None,
        Some(kind) => {
            let factor_key = key("rope.scaling.factor");
            let factor = get(m, &factor_key)
                .and_then(as_f64)
                .ok_or_else(|| err(&factor_key, "missing".into()))?;
            let original = get(m, &key("rope.scaling.original_context_length"));
            let mut r = RopeScaling::new(kind, shortest_preimage(factor as f32, factor, |x| x));
            r.original_max_position_embeddings = original.and_then(as_u64).map(|x| x as usize);
            Some(r)
        }
    };
    let round = |x: f64| shortest_preimage(x as f32, x, |y| y);
    let token = |k: &str, default: u32| {
        get(m, k)
            .and_then(as_u64)
            .map(|x| x as u32)
            .unwrap_or(default)
    };
    let cfg = ModelConfig {
        vocab_size,
        hidden_size: hidden,
        intermediate_size: int("feed_forward_length")?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        hidden_act: "silu".into(),
        max_position_embeddings: int("context_length")?,
        initializer_range: 0.1,
        rms_norm_eps: round(float("attention.layer_norm_rms_epsilon", None)?),
        rope_theta: round(float("rope.freq_base", Some(10_000.0))?),
        rope_scaling,
        tie_word_embeddings: header.tensor("output.weight").is_none(),
        bos_token_id: token("tokenizer.ggml.bos_token_id", 1),
        eos_token_id: TokenIds::One(token("tokenizer.ggml.eos_token_id", 2)),
        scale_emb: round(float("embedding_scale", Some(12.0))?),
        scale_depth,
        dim_model_base,
        num_experts: optional_int("expert_count")?,
        num_experts_per_tok: optional_int("expert_used_count")?,
        router_aux_loss_coef: None,
        router_z_loss_coef: None,
    };
    cfg.validate(origin)?;
    Ok(cfg)
}
