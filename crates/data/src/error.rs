//! Errors of the data crate, each naming the file involved.

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub fn file(path: &std::path::Path, msg: impl std::fmt::Display) -> Self {
        DataError::File {
            path: path.display().to_string(),
            msg: msg.to_string(),
        }
    }
}
