//! Why training could not start or go on, each case named so that the CLI's one-line message
//! says what to do.

use minicpm_data::DataError;
use minicpm_model::ModelError;
use std::path::PathBuf;

/// A setting that cannot work (a schedule, a branch point, a data mixture, a command-line
/// option), under its config key; the message names the key too.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{msg}")]
pub struct InvalidSetting {
    pub key: String,
    pub msg: String,
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, msg: impl Into<String>) -> Self {
        InvalidSetting {
            key: key.into(),
            msg: msg.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or writing a model, checkpoint, metrics or config file.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Opening or reading the run's data.
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Setting(#[from] InvalidSetting),
    #[error("a new run needs --config")]
    NoConfig,
    #[error("{}: a run already exists here; continue it with --resume or choose another --out", .0.display())]
    RunExists(PathBuf),
    #[error("{}: another process is training this run", .0.display())]
    Locked(PathBuf),
    #[error("{}: cannot resume: the model config changed: {diff}", .path.display())]
    ConfigChanged { path: PathBuf, diff: String },
    /// A step that every rank of a data-parallel run took failed on `rank` (collective.rs).
    #[error("rank {rank} of {size}: {message}")]
    OnRank {
        rank: usize,
        size: usize,
        message: String,
    },
    /// What one process does alone cannot be spread over the ranks as asked.
    #[error("{0}")]
    Distribution(String),
}
