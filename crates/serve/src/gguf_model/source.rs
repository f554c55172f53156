//! A GGUF file as the runtime's [`TensorSource`]: the file is mapped, not read, and each matrix
//! is a view of its pages in the stored type. Tensors are asked for by HF name; q and k stay in
//! llama.cpp's RoPE layout ([`RopeLayout::Interleaved`]), which the runtime applies as is.

use super::config::{chat_template, config_from_gguf, tokenizer_json};
use super::names::{hf_to_gguf, stacked_expert};
use crate::gguf::{Gguf, Header, TensorInfo, TensorType};
use crate::runtime::{Matrix, RopeLayout, TensorSource};
use minicpm_model::error::ModelError;
use minicpm_model::ModelConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct GgufSource {
    path: PathBuf,
    map: Arc<memmap2::Mmap>,
    header: Header,
    config: ModelConfig,
}

impl GgufSource {
    /// Maps `path` and reads its header; a truncated file or one of another architecture is an
    /// error naming the file.
    pub fn open(path: &Path) -> Result<GgufSource, ModelError> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the file is opened read-only and the project never writes a GGUF in place
        // (exports go to a temp file renamed over the target), so the pages do not change under
        // the mapping.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let origin = path.display().to_string();
        let header = Gguf::parse_header(&map).map_err(|e| ModelError::Parse {
            origin: origin.clone(),
            msg: e.to_string(),
        })?;
        let config = config_from_gguf(&origin, &header)?;
        Ok(GgufSource {
            path: path.to_path_buf(),
            map: Arc::new(map),
            header,
            config,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The HF `tokenizer.json` the file carries, if it was written by this project.
    pub fn tokenizer_json(&self) -> Option<String> {
        tokenizer_json(&self.header.metadata)
    }

    pub fn chat_template(&self) -> Option<String> {
        chat_template(&self.header.metadata)
    }

    fn err(&self, tensor: &str, msg: String) -> ModelError {
        ModelError::Tensor {
            origin: self.origin(),
            tensor: tensor.to_string(),
            msg,
        }
    }

    /// The tensor llama.cpp calls what HF calls `name`, checked to have `shape`.
    fn info(&self, name: &str, shape: &[usize]) -> Result<&TensorInfo, ModelError> {
        let gguf = hf_to_gguf(name)
            .ok_or_else(|| self.err(name, "not a tensor of llama.cpp's minicpm".into()))?;
        let t = self
            .header
            .tensor(&gguf)
            .ok_or_else(|| self.err(&gguf, format!("missing (HF `{name}`)")))?;
        if t.shape
            .iter()
            .map(|&d| d as usize)
            .ne(shape.iter().copied())
        {
            return Err(self.err(&gguf, format!("shape {:?}, expected {shape:?}", t.shape)));
        }
        Ok(t)
    }
}

impl GgufSource {
    /// Expert `expert`'s `[rows, cols]` slice of the stacked tensor `gguf` (`[experts, rows,
    /// cols]`): whole rows, so a quantised type's blocks are never split.
    fn expert_matrix(
        &self,
        gguf: &str,
        expert: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Matrix, ModelError> {
        let experts = self.config.moe().map_or(0, |(e, _)| e);
        let t = self
            .header
            .tensor(gguf)
            .ok_or_else(|| self.err(gguf, "missing".into()))?;
        let want = [experts, rows, cols];
        if t.shape.iter().map(|&d| d as usize).ne(want.iter().copied()) || expert >= experts {
            return Err(self.err(gguf, format!("shape {:?}, expected {want:?}", t.shape)));
        }
        let len = t.len as usize / experts;
        Matrix::mapped(
            rows,
            cols,
            t.ty,
            self.map.clone(),
            t.offset as usize + expert * len,
            len,
        )
        .map_err(|e| self.err(&t.name, e.to_string()))
    }
}

impl TensorSource for GgufSource {
    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        hf_to_gguf(name)
            .or_else(|| stacked_expert(name).map(|(g, _)| g))
            .is_some_and(|g| self.header.tensor(&g).is_some())
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError> {
        if let Some((gguf, expert)) = stacked_expert(name) {
            return self.expert_matrix(&gguf, expert, rows, cols);
        }
        let t = self.info(name, &[rows, cols])?;
        Matrix::mapped(
            rows,
            cols,
            t.ty,
            self.map.clone(),
            t.offset as usize,
            t.len as usize,
        )
        .map_err(|e| self.err(&t.name, e.to_string()))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.info(name, &[len])?;
        let bytes = &self.map[t.offset as usize..(t.offset + t.len) as usize];
        match t.ty {
            TensorType::F32 => Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect()),
            TensorType::F16 => Ok(bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()),
            other => Err(self.err(&t.name, format!("a vector stored as {other:?}"))),
        }
    }

    fn rope_layout(&self) -> RopeLayout {
        RopeLayout::Interleaved
    }
}
