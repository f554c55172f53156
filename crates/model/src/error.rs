//! Errors of the model crate. Each names the file and, where there is one, the field or tensor.
//! Where a library's or the operating system's error is the cause, it is kept as the `source`
//! (so a caller can walk the chain or match on an `io::ErrorKind`) and also shown in the message,
//! which therefore stays complete on its own line.

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
    /// A file or directory that is missing or unusable, said in words.
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    /// An operating-system error on a file or directory ([`ModelError::io`]).
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: tensor `{tensor}`: {msg}")]
    Tensor {
        origin: String,
        tensor: String,
        msg: String,
    },
    /// The safetensors library refused a file or a tensor; `what` says which and how.
    #[error("{origin}: {what}: {source}")]
    Safetensors {
        origin: String,
        what: String,
        #[source]
        source: safetensors::SafeTensorError,
    },
}

impl ModelError {
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        ModelError::File {
            path: path.display().to_string(),
            source: e,
        }
    }

    pub fn safetensors(
        path: &Path,
        what: impl Into<String>,
        e: safetensors::SafeTensorError,
    ) -> Self {
        ModelError::Safetensors {
            origin: path.display().to_string(),
            what: what.into(),
            source: e,
        }
    }
}
