//! An HF MiniCPM directory written as a GGUF file of llama.cpp's `minicpm` architecture, as
//! llama.cpp's converter (convert_hf_to_gguf.py, `MiniCPMModel`) writes it: its tensor names, q/k
//! rows permuted to its RoPE layout, its metadata keys in its order, and the tokenizer as a
//! "llama" vocabulary (vocab.rs).

use super::names::{hf_to_gguf, permute_rows, rope_heads, stacked_expert};
use super::types::{tensor_type, FileType};
use super::vocab;
use crate::gguf::{Gguf, Tensor, TensorType, Value};
use minicpm_model::config::RopeScaling;
use minicpm_model::error::ModelError;
use minicpm_model::hf::{open_weights, CONFIG_FILE};
use minicpm_model::params::tensor_shapes;
use minicpm_model::ModelConfig;
use std::io::Write;
use std::path::Path;

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The model's metadata (before the tokenizer's), in the converter's order: `general.*`, then
/// `TextModel.set_gguf_parameters`, then `MiniCPMModel`'s three multipliers, then two keys
/// llama.cpp reads where present (rope dimension count, vocabulary size) and the quantisation
/// version.
pub fn model_metadata(cfg: &ModelConfig, name: &str, file_type: FileType) -> Vec<(String, Value)> {
    let u = |x: usize| Value::U32(x as u32);
    let f = |x: f64| Value::F32(x as f32);
    let s = |x: &str| Value::String(x.to_string());
    let mut m: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s("minicpm")),
        ("general.type".into(), s("model")),
        ("general.name".into(), s(name)),
        ("minicpm.block_count".into(), u(cfg.num_hidden_layers)),
        (
            "minicpm.context_length".into(),
            u(cfg.max_position_embeddings),
        ),
        ("minicpm.embedding_length".into(), u(cfg.hidden_size)),
        (
            "minicpm.feed_forward_length".into(),
            u(cfg.intermediate_size),
        ),
        (
            "minicpm.attention.head_count".into(),
            u(cfg.num_attention_heads),
        ),
        (
            "minicpm.attention.head_count_kv".into(),
            u(cfg.num_kv_heads()),
        ),
    ];
    // `llama_cpp_rope_scaling` has refused what llama.cpp cannot compute.
    if let Some(r) = &cfg.rope_scaling {
        m.push(("minicpm.rope.scaling.type".into(), s(&r.kind)));
        m.push(("minicpm.rope.scaling.factor".into(), f(r.factor)));
        if let Some(o) = r.original_max_position_embeddings {
            m.push(("minicpm.rope.scaling.original_context_length".into(), u(o)));
        }
    }
    m.extend([
        ("minicpm.rope.freq_base".into(), f(cfg.rope_theta)),
        (
            "minicpm.attention.layer_norm_rms_epsilon".into(),
            f(cfg.rms_norm_eps),
        ),
        ("general.file_type".into(), Value::U32(file_type.code())),
        ("minicpm.embedding_scale".into(), f(cfg.scale_emb)),
        ("minicpm.residual_scale".into(), f(cfg.residual_scale())),
        ("minicpm.logit_scale".into(), f(cfg.scale_width())),
        ("minicpm.rope.dimension_count".into(), u(cfg.head_dim())),
    ]);
    if let Some((experts, top_k)) = cfg.moe() {
        m.push(("minicpm.expert_count".into(), u(experts)));
        m.push(("minicpm.expert_used_count".into(), u(top_k)));
    }
    m.extend([
        ("minicpm.vocab_size".into(), u(cfg.vocab_size)),
        ("general.quantization_version".into(), Value::U32(2)),
    ]);
    m
}

/// Why llama.cpp could not run a model with this RoPE scaling, if it could not. It computes
/// linear scaling, and YaRN with the paper's defaults (its ramp between 32 and 1 rotations,
/// truncated to whole dimensions, and the temperature `0.1 ln(factor) + 1`), but has no dynamic
/// NTK: a file that silently ran without it would answer differently past the trained context.
fn unsupported_rope_scaling(r: &RopeScaling) -> Option<String> {
    match r.kind.as_str() {
        "linear" => None,
        "dynamic" => Some(
            "dynamic NTK scaling cannot be exported: llama.cpp has no equivalent (export a \
             config with linear or yarn scaling, or a larger rope_theta, instead)"
                .into(),
        ),
        "yarn" => {
            let custom = [
                ("attention_factor", r.attention_factor.is_some()),
                ("beta_fast", r.beta_fast.is_some_and(|b| b != 32.0)),
                ("beta_slow", r.beta_slow.is_some_and(|b| b != 1.0)),
                ("mscale", r.mscale.is_some()),
                ("mscale_all_dim", r.mscale_all_dim.is_some()),
                ("truncate", r.truncate == Some(false)),
            ];
            custom.iter().find(|(_, set)| *set).map(|(key, _)| {
                format!("yarn with {key} set cannot be exported: llama.cpp uses YaRN's defaults")
            })
        }
        other => Some(format!("type {other:?} is not supported")),
    }
}

/// One tensor in its GGUF name, layout and type; `values` are HF's, row-major.
pub fn gguf_tensor(
    cfg: &ModelConfig,
    hf_name: &str,
    shape: &[usize],
    values: Vec<f32>,
    file_type: FileType,
) -> Result<Tensor, String> {
    let name = hf_to_gguf(hf_name)
        .or_else(|| stacked_expert(hf_name).map(|(g, _)| g))
        .ok_or_else(|| "llama.cpp's minicpm architecture has no such tensor".to_string())?;
    let cols = *shape.last().expect("a shape");
    let values = match rope_heads(hf_name, cfg.num_attention_heads, cfg.num_kv_heads()) {
        Some(heads) => permute_rows(&values, cols, heads),
        None => values,
    };
    let ty = tensor_type(file_type, &name, shape);
    let data: Vec<u8> = match ty {
        TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        TensorType::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        TensorType::Bf16 => unreachable!("the export never asks for bf16"),
        TensorType::Quant(q) => {
            let mut out = Vec::new();
            for row in values.chunks_exact(cols) {
                out.extend(q.quantize(row).map_err(|e| e.to_string())?);
            }
            out
        }
    };
    Ok(Tensor {
        name,
        shape: shape.iter().map(|&d| d as u64).collect(),
        ty,
        data,
    })
}

/// The tokenizer a GGUF file carries: the HF tokenizer.json text and, if there is one, the
/// tokenizer_config.json (its chat template and BOS/EOS flags).
pub struct TokenizerFiles {
    pub json: String,
    pub config: Option<serde_json::Value>,
    /// Where the tokenizer came from, for error messages.
    pub origin: String,
}

impl TokenizerFiles {
    /// tokenizer.json and tokenizer_config.json of an HF directory.
    pub fn read(dir: &Path) -> Result<TokenizerFiles, ModelError> {
        let tok_path = dir.join(TOKENIZER_FILE);
        let json = std::fs::read_to_string(&tok_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelError::Io {
                path: tok_path.display().to_string(),
                msg: "missing (a GGUF file carries the model's tokenizer)".into(),
            },
            _ => ModelError::io(&tok_path, e),
        })?;
        let tc_path = dir.join(TOKENIZER_CONFIG_FILE);
        let config = match std::fs::read_to_string(&tc_path) {
            Ok(text) => Some(serde_json::from_str(&text).map_err(|e| ModelError::Parse {
                origin: tc_path.display().to_string(),
                msg: e.to_string(),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ModelError::io(&tc_path, e)),
        };
        Ok(TokenizerFiles {
            json,
            config,
            origin: tok_path.display().to_string(),
        })
    }
}

/// The GGUF file of the HF directory `dir`, named `name` (`general.name`).
pub fn build(dir: &Path, name: &str, file_type: FileType) -> Result<Gguf, ModelError> {
    let config_path = dir.join(CONFIG_FILE);
    let cfg = ModelConfig::from_hf_json(&config_path)?;
    let tokenizer = TokenizerFiles::read(dir)?;
    let (files, owner) = open_weights(dir)?;
    let values = |hf_name: &str, shape: &[usize]| match owner.get(hf_name) {
        Some(&i) => files[i].f32(hf_name, Some(shape)),
        None => Err(ModelError::Tensor {
            origin: dir.display().to_string(),
            tensor: hf_name.to_string(),
            msg: "missing".into(),
        }),
    };
    build_from(
        &cfg,
        &config_path.display().to_string(),
        &tokenizer,
        name,
        file_type,
        values,
    )
}

/// The GGUF file of a model whose tensors `values(hf_name, shape)` gives as f32 in HF's layout;
/// `origin` names the model's configuration in errors.
pub fn build_from(
    cfg: &ModelConfig,
    origin: &str,
    tokenizer: &TokenizerFiles,
    name: &str,
    file_type: FileType,
    mut values: impl FnMut(&str, &[usize]) -> Result<Vec<f32>, ModelError>,
) -> Result<Gguf, ModelError> {
    let unsupported = |field: &str, msg: &str| ModelError::Config {
        origin: origin.to_string(),
        field: field.into(),
        msg: msg.into(),
    };
    if cfg.hidden_act != "silu" {
        return Err(unsupported(
            "hidden_act",
            "llama.cpp's minicpm runs silu only",
        ));
    }
    if let Some(msg) = cfg.rope_scaling.as_ref().and_then(unsupported_rope_scaling) {
        return Err(unsupported("rope_scaling", &msg));
    }
    let eos = cfg.eos_token_id.as_slice().first().copied().unwrap_or(2);
    let mut metadata = model_metadata(cfg, name, file_type);
    let tok_meta = vocab::metadata(
        &tokenizer.json,
        tokenizer.config.as_ref(),
        cfg.vocab_size,
        cfg.bos_token_id,
        eos,
    )
    .map_err(|msg| ModelError::Parse {
        origin: tokenizer.origin.clone(),
        msg,
    })?;
    metadata.extend(tok_meta);

    let mut tensors = Vec::new();
    for (hf_names, shape) in stacked(ordered(tensor_shapes(cfg))) {
        // A stacked tensor's parts have its shape without the leading expert axis.
        let part = match stacked_expert(&hf_names[0]) {
            Some(_) => &shape[1..],
            None => &shape[..],
        };
        let mut v = Vec::new();
        for n in &hf_names {
            v.extend(values(n, part)?);
        }
        let hf_name = &hf_names[0];
        let t =
            gguf_tensor(cfg, hf_name, &shape, v, file_type).map_err(|msg| ModelError::Tensor {
                origin: origin.to_string(),
                tensor: hf_name.clone(),
                msg,
            })?;
        tensors.push(t);
    }
    Ok(Gguf { metadata, tensors })
}

/// The model's tensors in the order llama.cpp's own files list them: the embedding, each layer,
/// the final norm, the head.
fn ordered(shapes: Vec<(String, Vec<usize>)>) -> Vec<(String, Vec<usize>)> {
    let key = |name: &str| match name {
        "model.embed_tokens.weight" => 0,
        "model.norm.weight" => 2,
        "lm_head.weight" => 3,
        _ => 1,
    };
    let mut v = shapes;
    v.sort_by_key(|(n, _)| key(n)); // stable: layers keep module order
    v
}

/// The tensors as llama.cpp stores them: each HF tensor alone, except that an MoE layer's
/// experts are stacked, their `w1`s into one `[experts, rows, cols]` tensor (in expert order),
/// likewise `w3` and `w2`. Each entry lists the HF tensors it holds and its shape.
fn stacked(shapes: Vec<(String, Vec<usize>)>) -> Vec<(Vec<String>, Vec<usize>)> {
    let mut out: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    let mut index_of: std::collections::HashMap<String, usize> = Default::default();
    for (name, shape) in shapes {
        match stacked_expert(&name) {
            None => out.push((vec![name], shape)),
            Some((gguf, _)) => match index_of.get(&gguf) {
                Some(&i) => {
                    out[i].0.push(name);
                    out[i].1[0] += 1;
                }
                None => {
                    index_of.insert(gguf, out.len());
                    out.push((vec![name], [vec![1], shape].concat()));
                }
            },
        }
    }
    out
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub tensors: usize,
    pub bytes: u64,
}

/// Writes `dir` as the GGUF file `out`: a temp file beside it, renamed over `out` once whole,
/// so a failure never leaves part of a file.
pub fn export(
    dir: &Path,
    out: &Path,
    name: &str,
    file_type: FileType,
) -> Result<Summary, ModelError> {
    write(&build(dir, name, file_type)?, out)
}

/// Writes `gguf` as the file `out`, atomically.
pub fn write(gguf: &Gguf, out: &Path) -> Result<Summary, ModelError> {
    let write = || -> std::io::Result<u64> {
        let mut file = atomic_write_file::AtomicWriteFile::open(out)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
        gguf.write_to(&mut w)?;
        w.flush()?;
        drop(w);
        file.commit()?;
        Ok(std::fs::metadata(out)?.len())
    };
    let bytes = write().map_err(|e| ModelError::io(out, e))?;
    Ok(Summary {
        tensors: gguf.tensors.len(),
        bytes,
    })
}
