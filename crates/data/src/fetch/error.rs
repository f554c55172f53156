//! Errors of fetching the demo corpus. They are typed so a caller can tell a missing client (fix
//! the machine) from a failed download (retry) from a package whose layout changed (fix the
//! code); each converts into the crate's [`DataError`] for the public entry point.

use crate::error::{Cause, DataError};
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
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    /// A package no longer has the layout or format the extractor expects.
    #[error("{package}: {source}")]
    Format {
        package: String,
        #[source]
        source: Cause,
    },
    /// A client could not be started or waited for.
    #[error("cannot run `{command}`: {source}")]
    Run {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    pub(crate) fn file(path: &std::path::Path, cause: impl Into<Cause>) -> Self {
        FetchError::File {
            path: path.to_path_buf(),
            source: cause.into(),
        }
    }

    pub(crate) fn format(package: &str, cause: impl Into<Cause>) -> Self {
        FetchError::Format {
            package: package.to_string(),
            source: cause.into(),
        }
    }
}

impl From<FetchError> for DataError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::File { path, source } => DataError::file(&path, source),
            other => DataError::Fetch(other),
        }
    }
}
