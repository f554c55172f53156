//! Errors of the data crate, each naming the file involved. The cause (an I/O error, a library's
//! error, or a message in words) is kept as the error's `source`, so a caller can walk the chain,
//! and is also part of the message, which therefore stands complete on one line.

use crate::fetch::FetchError;

/// Why something failed: the operating system's or a library's error, or words (`String` and
/// `&str` convert into it).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: Cause,
    },
    /// A step that failed because a library did; `what` names the step (and the file, if any).
    #[error("{what}: {source}")]
    Failed {
        what: String,
        #[source]
        source: Cause,
    },
    #[error("{0}")]
    Invalid(String),
    /// Fetching the demo corpus failed.
    #[error(transparent)]
    Fetch(FetchError),
}

impl DataError {
    pub fn file(path: &std::path::Path, cause: impl Into<Cause>) -> Self {
        DataError::File {
            path: path.display().to_string(),
            source: cause.into(),
        }
    }

    pub fn failed(what: impl Into<String>, cause: impl Into<Cause>) -> Self {
        DataError::Failed {
            what: what.into(),
            source: cause.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_file_and_the_cause_stays_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = DataError::file(std::path::Path::new("corpus.jsonl"), io);
        assert_eq!(e.to_string(), "corpus.jsonl: denied");
        let source = std::error::Error::source(&e).unwrap();
        let io = source.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);

        let words = DataError::file(std::path::Path::new("a.txt"), "no such file or directory");
        assert_eq!(words.to_string(), "a.txt: no such file or directory");
    }
}
