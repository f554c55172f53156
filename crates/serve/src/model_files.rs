//! Opening a model for inference from what users have: an HF directory (config.json,
//! safetensors, tokenizer.json, tokenizer_config.json, generation_config.json) or a GGUF file,
//! with the tokenizer, chat template and sampling defaults that travel with it.

use crate::gguf_model::GgufSource;
use crate::runtime::{InferenceModel, SafetensorsSource};
use crate::sampling::SamplingParams;
use minicpm_model::error::ModelError;
use minicpm_model::{hf, ModelConfig};
use std::path::Path;

pub struct ModelFiles {
    pub model: InferenceModel,
    /// The HF tokenizer.json text.
    pub tokenizer_json: Option<String>,
    /// The Jinja chat template, if the files carry one.
    pub chat_template: Option<String>,
    /// Sampling defaults: the built-in ones overridden by generation_config.json's keys.
    pub sampling: SamplingParams,
    pub max_new_tokens: Option<usize>,
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>, ModelError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::Parse {
            origin: path.display().to_string(),
            msg: e.to_string(),
        })
}

/// Sampling settings from a generation_config.json: each key present overrides the built-in
/// default, and `do_sample: false` means greedy (transformers' reading of the file).
pub fn sampling_defaults(config: Option<&serde_json::Value>) -> (SamplingParams, Option<usize>) {
    let mut p = SamplingParams::default();
    let Some(c) = config else {
        return (p, None);
    };
    let f = |k: &str| c.get(k).and_then(|v| v.as_f64());
    if let Some(t) = f("temperature") {
        p.temperature = t;
    }
    if let Some(t) = f("top_p") {
        p.top_p = t;
    }
    if let Some(k) = c.get("top_k").and_then(|v| v.as_u64()) {
        p.top_k = k as usize;
    }
    if let Some(r) = f("repetition_penalty") {
        p.repetition_penalty = r;
    }
    if c.get("do_sample").and_then(|v| v.as_bool()) == Some(false) {
        p.temperature = 0.0;
    }
    let max_new = c
        .get("max_new_tokens")
        .and_then(|v| v.as_u64())
        .map(|v| v as usize);
    (p, max_new)
}

/// Opens an HF directory or a `.gguf` file with `threads` threads (0: one per core).
pub fn open(path: &Path, threads: usize) -> Result<ModelFiles, ModelError> {
    if path.is_file() {
        return open_gguf(path, threads);
    }
    let config = ModelConfig::from_hf_json(&path.join(hf::CONFIG_FILE))?;
    let model = InferenceModel::load(&SafetensorsSource::open(path)?, config, threads)?;
    let tokenizer_path = path.join("tokenizer.json");
    let tokenizer_json = match tokenizer_path.exists() {
        true => Some(
            std::fs::read_to_string(&tokenizer_path)
                .map_err(|e| ModelError::io(&tokenizer_path, e))?,
        ),
        false => None,
    };
    let chat_template = read_json(&path.join("tokenizer_config.json"))?.and_then(|c| {
        c.get("chat_template")
            .and_then(|t| t.as_str())
            .map(String::from)
    });
    let (sampling, max_new_tokens) =
        sampling_defaults(read_json(&path.join("generation_config.json"))?.as_ref());
    Ok(ModelFiles {
        model,
        tokenizer_json,
        chat_template,
        sampling,
        max_new_tokens,
    })
}

/// A GGUF file: its configuration, tokenizer and chat template come from its metadata; it has
/// no generation_config.json, so sampling starts from the built-in defaults.
fn open_gguf(path: &Path, threads: usize) -> Result<ModelFiles, ModelError> {
    let src = GgufSource::open(path)?;
    let model = InferenceModel::load(&src, src.config().clone(), threads)?;
    let (sampling, max_new_tokens) = sampling_defaults(None);
    Ok(ModelFiles {
        tokenizer_json: src.tokenizer_json(),
        chat_template: src.chat_template(),
        model,
        sampling,
        max_new_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_config_keys_override_the_defaults_and_do_sample_false_is_greedy() {
        let (p, max_new) = sampling_defaults(None);
        assert_eq!((p, max_new), (SamplingParams::default(), None));
        let c = serde_json::json!({"temperature": 0.5, "top_k": 40, "top_p": 0.8,
            "repetition_penalty": 1.02, "max_new_tokens": 99, "eos_token_id": 2});
        let (p, max_new) = sampling_defaults(Some(&c));
        assert_eq!(
            (
                p.temperature,
                p.top_p,
                p.top_k,
                p.repetition_penalty,
                max_new
            ),
            (0.5, 0.8, 40, 1.02, Some(99))
        );
        let greedy = serde_json::json!({"do_sample": false, "temperature": 0.7});
        assert_eq!(sampling_defaults(Some(&greedy)).0.temperature, 0.0);
    }
}
