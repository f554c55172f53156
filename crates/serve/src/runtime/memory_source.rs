//! Tensors already in memory as f32 (a model just trained, or built by a test) as a
//! [`TensorSource`], stored as `ty` (f32, f16 or bf16).

use super::matrix::Matrix;
use super::source::{RopeLayout, TensorSource};
use crate::gguf::TensorType;
use minicpm_model::error::ModelError;
use minicpm_model::safetensors_io::F32Tensor;
use minicpm_model::MiniCpm;
use std::collections::HashMap;

pub struct MemorySource {
    tensors: HashMap<String, F32Tensor>,
    ty: TensorType,
}

impl MemorySource {
    pub fn new(tensors: Vec<F32Tensor>, ty: TensorType) -> MemorySource {
        MemorySource {
            tensors: tensors.into_iter().map(|t| (t.name.clone(), t)).collect(),
            ty,
        }
    }

    /// The parameters of a training-graph model, by their HF names.
    pub fn of_model(model: &MiniCpm, ty: TensorType) -> MemorySource {
        MemorySource::new(minicpm_model::hf::named_tensors(model), ty)
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<&F32Tensor, ModelError> {
        let err = |msg: String| ModelError::Tensor {
            origin: self.origin(),
            tensor: name.into(),
            msg,
        };
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| err("missing".into()))?;
        if t.shape != shape {
            return Err(err(format!("shape {:?}, expected {shape:?}", t.shape)));
        }
        Ok(t)
    }
}

impl TensorSource for MemorySource {
    fn origin(&self) -> String {
        "model in memory".into()
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        let t = self.get(name, &[rows, cols])?;
        Matrix::from_f32(rows, cols, &t.data, self.ty).map_err(|e| ModelError::Tensor {
            origin: self.origin(),
            tensor: name.into(),
            msg: e.to_string(),
        })
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        Ok(self.get(name, &[len])?.data.clone())
    }

    fn rope_layout(&self) -> RopeLayout {
        RopeLayout::Halves
    }
}
