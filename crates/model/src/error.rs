//! Errors of the model crate. Each names the file and, where there is one, the field or tensor.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{origin}: field `{field}`: {msg}")]
    Config {
        origin: String,
        field: String,
        msg: String,
    },
    #[error("{origin}: {msg}")]
    Parse { origin: String, msg: String },
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{origin}: tensor `{tensor}`: {msg}")]
    Tensor {
        origin: String,
        tensor: String,
        msg: String,
    },
}

impl ModelError {
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        ModelError::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        }
    }
}
