//! An HF model directory as a [`TensorSource`]: `model.safetensors` or its shards, matrices kept
//! in their stored float type (f32, f16 or bf16).

use super::matrix::Matrix;
use super::source::{RopeLayout, TensorSource};
use crate::gguf::TensorType;
use minicpm_model::error::ModelError;
use minicpm_model::hf;
use minicpm_model::safetensors_io::TensorFile;
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct SafetensorsSource {
    dir: PathBuf,
    files: Vec<TensorFile>,
    owner: HashMap<String, usize>,
}

impl SafetensorsSource {
    pub fn open(dir: &Path) -> Result<SafetensorsSource, ModelError> {
        let (files, owner) = hf::open_weights(dir)?;
        Ok(SafetensorsSource {
            dir: dir.to_path_buf(),
            files,
            owner,
        })
    }

    fn file(&self, name: &str) -> Result<&TensorFile, ModelError> {
        self.owner
            .get(name)
            .map(|&i| &self.files[i])
            .ok_or_else(|| ModelError::Tensor {
                origin: self.origin(),
                tensor: name.into(),
                msg: "missing".into(),
            })
    }
}

impl TensorSource for SafetensorsSource {
    fn origin(&self) -> String {
        self.dir.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        self.owner.contains_key(name)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        let file = self.file(name)?;
        let (dtype, shape, bytes) = file.raw(name)?;
        if shape != [rows, cols] {
            return Err(file.err(
                name,
                format!("shape {shape:?} does not match the config's [{rows}, {cols}]"),
            ));
        }
        let ty = match dtype {
            Dtype::F32 => TensorType::F32,
            Dtype::F16 => TensorType::F16,
            Dtype::BF16 => TensorType::Bf16,
            other => return Err(file.err(name, format!("dtype {other:?} is not a float type"))),
        };
        Matrix::from_bytes(rows, cols, ty, bytes.to_vec())
            .map_err(|e| file.err(name, e.to_string()))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        self.file(name)?.f32(name, Some(&[len]))
    }

    fn rope_layout(&self) -> RopeLayout {
        RopeLayout::Halves
    }
}
