//! Hugging Face model directories: `config.json` + `model.safetensors` (or a sharded index),
//! read into a [`MiniCpm`] and written back so that other tools load what we train.

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::model::MiniCpm;
use crate::params::tensor_shapes;
use crate::safetensors_io::{write_atomic, write_f32, TensorFile};
use crate::weights::Weights;
use burn::tensor::Device;
use std::collections::HashMap;
use std::path::Path;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

/// Tensors that some checkpoints carry but the model does not use.
fn ignorable(name: &str, cfg: &ModelConfig) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (cfg.tie_word_embeddings && name == "lm_head.weight")
}

/// Opens the weight files of an HF directory: one `model.safetensors` or the shards listed in
/// `model.safetensors.index.json`. Returns each tensor's file.
pub fn open_weights(dir: &Path) -> Result<(Vec<TensorFile>, HashMap<String, usize>), ModelError> {
    let single = dir.join(WEIGHTS_FILE);
    let files = if single.exists() {
        vec![TensorFile::open(&single)?]
    } else if dir.join(INDEX_FILE).exists() {
        let index_path = dir.join(INDEX_FILE);
        let text =
            std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
        let index: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Parse {
                origin: index_path.display().to_string(),
                msg: e.to_string(),
            })?;
        let mut shards: Vec<String> = index["weight_map"]
            .as_object()
            .ok_or_else(|| ModelError::Parse {
                origin: index_path.display().to_string(),
                msg: "no weight_map".into(),
            })?
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        shards.sort();
        shards.dedup();
        shards
            .iter()
            .map(|s| TensorFile::open(&dir.join(s)))
            .collect::<Result<_, _>>()?
    } else {
        return Err(ModelError::Io {
            path: single.display().to_string(),
            msg: "missing (no model.safetensors or model.safetensors.index.json in the directory)"
                .into(),
        });
    };
    let mut owner = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        for n in f.names() {
            owner.insert(n, i);
        }
    }
    Ok((files, owner))
}

/// Loads an HF MiniCPM directory onto `device`.
pub fn load(dir: &Path, device: &Device) -> Result<MiniCpm, ModelError> {
    let cfg = ModelConfig::from_hf_json(&dir.join(CONFIG_FILE))?;
    load_weights(dir, &cfg, device)
}

/// Loads the weights of `dir` for a config already in hand. Every tensor the config implies must
/// be present with the right shape; unexpected tensors are errors (they mean a different model).
pub fn load_weights(dir: &Path, cfg: &ModelConfig, device: &Device) -> Result<MiniCpm, ModelError> {
    let (files, owner) = open_weights(dir)?;
    let expected: HashMap<String, Vec<usize>> = tensor_shapes(cfg).into_iter().collect();
    for (name, &i) in &owner {
        if !expected.contains_key(name) && !ignorable(name, cfg) {
            return Err(ModelError::Tensor {
                origin: files[i].path().display().to_string(),
                tensor: name.clone(),
                msg: "unexpected for this config (does config.json describe these weights?)".into(),
            });
        }
    }
    // A tensor no file holds is blamed on the file that should list it.
    let listing = if dir.join(WEIGHTS_FILE).exists() {
        dir.join(WEIGHTS_FILE)
    } else {
        dir.join(INDEX_FILE)
    };
    let mut read = |name: &str, shape: &[usize]| match owner.get(name) {
        Some(&i) => files[i].f32(name, Some(shape)),
        None => Err(ModelError::Tensor {
            origin: listing.display().to_string(),
            tensor: name.to_string(),
            msg: "missing".into(),
        }),
    };
    MiniCpm::new(&mut Weights::new(&mut read, device), cfg)
}

pub use crate::named::named_tensors;

/// Writes `model` as an HF directory (config.json, generation_config.json, model.safetensors).
pub fn save(model: &MiniCpm, dir: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    write_f32(&dir.join(WEIGHTS_FILE), &named_tensors(model), Some(meta))?;
    let cfg = &model.config;
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("json");
    write_atomic(&dir.join(CONFIG_FILE), &json(&cfg.to_hf_json()))?;
    let gen =
        serde_json::json!({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id});
    write_atomic(&dir.join("generation_config.json"), &json(&gen))?;
    Ok(())
}
