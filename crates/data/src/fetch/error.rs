//! Errors of fetching the demo corpus. They are typed so a caller can tell a missing client (fix
//! the machine) from a failed download (retry) from a package whose layout changed (fix the
//! code); each converts into the crate's [`DataError`] for the public entry point.

use crate::error::DataError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A package client is not on the search path; the message names what to install.
    #[error("{client} not found: install {install}")]
    MissingClient {
        client: &'static str,
        install: &'static str,
    },
    /// A program is not on the search path and its package could not be fetched either; the
    /// message says why, and what to install instead.
    #[error(
        "{client} not found, and fetching it from {package} failed: {why}; or install {install}"
    )]
    Unobtainable {
        client: &'static str,
        package: &'static str,
        install: &'static str,
        why: Box<FetchError>,
    },
    /// A client ran but failed; `detail` is the tail of what it printed.
    #[error("`{command}` failed ({status}): {detail}")]
    Command {
        command: String,
        status: String,
        detail: String,
    },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    /// A package no longer has the layout or format the extractor expects.
    #[error("{package}: {msg}")]
    Format { package: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    pub(crate) fn file(path: &std::path::Path, msg: impl std::fmt::Display) -> Self {
        FetchError::File {
            path: path.to_path_buf(),
            msg: msg.to_string(),
        }
    }

    pub(crate) fn format(package: &str, msg: impl std::fmt::Display) -> Self {
        FetchError::Format {
            package: package.to_string(),
            msg: msg.to_string(),
        }
    }
}

impl From<FetchError> for DataError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::File { path, msg } => DataError::file(&path, msg),
            other => DataError::Invalid(other.to_string()),
        }
    }
}
