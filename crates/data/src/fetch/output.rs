//! Writing a source's documents as JSONL. The file is written under a temporary name and renamed
//! into place only when complete and synced (the directory too, as by
//! [`crate::atomic_file::write_atomic`]), so a file with the final name is always whole; its
//! SHA-256 is computed while writing and recorded in the manifest, which is what makes a later
//! run able to trust it without rebuilding.

use super::error::FetchError;
use super::parse::text::strip_controls;
use atomic_write_file::AtomicWriteFile;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One document as extracted from a package.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doc {
    /// A short label (play title, book name, file path); not part of the text.
    pub title: Option<String>,
    pub text: String,
    /// For question/answer sources: the question and answer that `text` joins, kept apart for
    /// building chat-format fine-tuning samples later.
    pub question: Option<String>,
    pub answer: Option<String>,
}

impl Doc {
    pub fn new(title: impl Into<String>, text: impl Into<String>) -> Self {
        Doc {
            title: Some(title.into()),
            text: text.into(),
            ..Doc::default()
        }
    }

    /// A question/answer pair; the text is the question, a blank line, and the answer.
    pub fn qa(title: impl Into<String>, question: String, answer: String) -> Self {
        Doc {
            title: Some(title.into()),
            text: format!("{question}\n\n{answer}"),
            question: Some(question),
            answer: Some(answer),
        }
    }
}

/// One JSONL line.
#[derive(Serialize)]
struct Line<'a> {
    text: &'a str,
    source: &'a str,
    licence: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    question: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<&'a str>,
}

/// What a finished JSONL file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub documents: u64,
    pub text_bytes: u64,
    pub sha256: String,
}

/// Streams documents into a temporary file beside the final path and renames it into place on
/// `finish`.
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<AtomicWriteFile>,
    hash: Sha256,
    source: String,
    licence: String,
    documents: u64,
    text_bytes: u64,
}

impl JsonlWriter {
    pub fn create(path: &Path, source: &str, licence: &str) -> Result<Self, FetchError> {
        let file = AtomicWriteFile::open(path).map_err(|e| FetchError::file(path, e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            hash: Sha256::new(),
            source: source.to_string(),
            licence: licence.to_string(),
            documents: 0,
            text_bytes: 0,
        })
    }

    /// Appends a document; one with blank text is dropped, since it teaches nothing. Control
    /// characters other than tab and newline are removed on the way.
    pub fn push(&mut self, doc: &Doc) -> Result<(), FetchError> {
        let text = strip_controls(&doc.text);
        if text.trim().is_empty() {
            return Ok(());
        }
        let question = doc.question.as_deref().map(strip_controls);
        let answer = doc.answer.as_deref().map(strip_controls);
        let line = Line {
            text: &text,
            source: &self.source,
            licence: &self.licence,
            title: doc.title.as_deref(),
            question: question.as_deref(),
            answer: answer.as_deref(),
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|e| FetchError::file(&self.path, e))?;
        bytes.push(b'\n');
        self.out
            .write_all(&bytes)
            .map_err(|e| FetchError::file(&self.path, e))?;
        self.hash.update(&bytes);
        self.documents += 1;
        self.text_bytes += text.len() as u64;
        Ok(())
    }

    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// Removes the temporary file after a failed extraction; the final path is left as it was.
    pub fn abandon(self) {
        if let Ok(file) = self.out.into_inner() {
            let _ = file.discard();
        }
        // Otherwise the file is discarded when dropped.
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(self) -> Result<Written, FetchError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| FetchError::file(&self.path, e.into_error()))?;
        file.commit().map_err(|e| FetchError::file(&self.path, e))?;
        Ok(Written {
            documents: self.documents,
            text_bytes: self.text_bytes,
            sha256: hex(&self.hash.finalize()),
        })
    }
}

/// The SHA-256 of a file's contents, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut f = std::fs::File::open(path).map_err(|e| FetchError::file(path, e))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut f, &mut hash).map_err(|e| FetchError::file(path, e))?;
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
