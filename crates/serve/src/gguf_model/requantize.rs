//! A GGUF file written again in another type (`minicpm quantize` of a GGUF): every tensor read
//! back to f32 in HF's layout, then through the same export as an HF directory, so the type
//! rule, the metadata and the tokenizer are those of a direct export.

use super::export::{build_from, TokenizerFiles};
use super::names::{rope_heads, unpermute_rows};
use super::source::GgufSource;
use super::types::FileType;
use crate::gguf::Gguf;
use crate::runtime::TensorSource;
use minicpm_model::error::ModelError;

/// `src` as a GGUF of `file_type`, named `name`. It needs the tokenizer.json that files written
/// by this project carry.
pub fn rebuild(src: &GgufSource, name: &str, file_type: FileType) -> Result<Gguf, ModelError> {
    let origin = src.origin();
    let json = src.tokenizer_json().ok_or_else(|| ModelError::Parse {
        origin: origin.clone(),
        msg: "no tokenizer.huggingface.json in the file: only GGUF files written by minicpm can be re-quantised"
            .into(),
    })?;
    let config = src
        .chat_template()
        .map(|t| serde_json::json!({ "chat_template": t }));
    let tokenizer = TokenizerFiles {
        json,
        config,
        origin: origin.clone(),
    };
    let cfg = src.config().clone();
    let values = |hf_name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
        match *shape {
            [len] => src.vector(hf_name, len),
            [rows, cols] => {
                let v = src.matrix(hf_name, rows, cols)?.to_f32();
                Ok(
                    match rope_heads(hf_name, cfg.num_attention_heads, cfg.num_kv_heads()) {
                        Some(heads) => unpermute_rows(&v, cols, heads),
                        None => v,
                    },
                )
            }
            _ => Err(ModelError::Tensor {
                origin: origin.clone(),
                tensor: hf_name.into(),
                msg: format!("unexpected shape {shape:?}"),
            }),
        }
    };
    build_from(&cfg, &origin, &tokenizer, name, file_type, values)
}
