//! Reading and writing safetensors files: f32/bf16/f16 in, f32 out, with errors that name the
//! file and the tensor, and atomic writes (temp file, fsync, rename, fsync of the directory) so
//! that a crash mid-write never replaces a good file.

use crate::error::ModelError;
use safetensors::tensor::{Metadata, TensorView};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A safetensors file held in memory, its header parsed and validated once.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
    header_len: usize,
    metadata: Metadata,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let invalid = |e| {
            ModelError::safetensors(
                path,
                "not a valid safetensors file (truncated or corrupt?)",
                e,
            )
        };
        // `deserialize` checks that every tensor lies inside the buffer (catches truncation).
        SafeTensors::deserialize(&bytes).map_err(invalid)?;
        let (header_len, metadata) = SafeTensors::read_metadata(&bytes).map_err(invalid)?;
        Ok(TensorFile {
            path: path.to_path_buf(),
            bytes,
            header_len,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.metadata.tensors().into_keys().collect();
        v.sort();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.metadata.info(name).is_some()
    }

    pub fn user_metadata(&self) -> HashMap<String, String> {
        self.metadata.metadata().clone().unwrap_or_default()
    }

    pub fn err(&self, tensor: &str, msg: impl Into<String>) -> ModelError {
        ModelError::Tensor {
            origin: self.path.display().to_string(),
            tensor: tensor.to_string(),
            msg: msg.into(),
        }
    }

    /// A tensor's dtype, shape and bytes as stored.
    pub fn raw(&self, name: &str) -> Result<(Dtype, &[usize], &[u8]), ModelError> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| self.err(name, "missing"))?;
        let base = 8 + self.header_len;
        let (a, b) = info.data_offsets;
        Ok((info.dtype, &info.shape, &self.bytes[base + a..base + b]))
    }

    /// The tensor as f32, converting from bf16 or f16. Its shape must equal `expected` when given.
    pub fn f32(&self, name: &str, expected: Option<&[usize]>) -> Result<Vec<f32>, ModelError> {
        let (dtype, shape, data) = self.raw(name)?;
        if let Some(want) = expected {
            if shape != want {
                return Err(self.err(
                    name,
                    format!("shape {shape:?} does not match the config's {want:?}"),
                ));
            }
        }
        let words = |n: usize| data.chunks_exact(n);
        Ok(match dtype {
            Dtype::F32 => words(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => words(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F16 => words(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => return Err(self.err(name, format!("dtype {other:?} is not a float type"))),
        })
    }

    pub fn i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>), ModelError> {
        let (dtype, shape, data) = self.raw(name)?;
        if dtype != Dtype::I64 {
            return Err(self.err(name, format!("expected I64, found {dtype:?}")));
        }
        let v = data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok((shape.to_vec(), v))
    }

    pub fn shape(&self, name: &str) -> Result<Vec<usize>, ModelError> {
        Ok(self.raw(name)?.1.to_vec())
    }
}

/// One f32 tensor to be written.
pub struct F32Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Writes f32 tensors as a safetensors file, atomically.
pub fn write_f32(
    path: &Path,
    tensors: &[F32Tensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), ModelError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b)
            .map_err(|e| ModelError::safetensors(path, format!("tensor `{}`", t.name), e))?;
        views.push((t.name.clone(), view));
    }
    let buf = safetensors::serialize(views, metadata)
        .map_err(|e| ModelError::safetensors(path, "cannot serialise", e))?;
    write_atomic(path, &buf)
}

/// Writes `bytes` to `path` through a temp file in the same directory, fsynced, then renamed
/// over the target, and the directory fsynced so that the rename itself survives a crash: readers
/// see the old file or the new one, never a partial one. The data crate's writes go through the
/// same crate, so every result file of the project is written this way.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let write = || -> std::io::Result<()> {
        let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
        file.write_all(bytes)?;
        // Dropped without a commit (an error above), the temp file is removed.
        file.commit()
    };
    write().map_err(|e| ModelError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_names_the_path_and_keeps_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir/run.toml");
        let e = write_atomic(&path, b"x").unwrap_err();
        assert!(e.to_string().contains("no-such-dir/run.toml"), "{e}");
        let source = std::error::Error::source(&e).expect("the io error is kept");
        let io = source.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}
