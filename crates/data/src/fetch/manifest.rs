//! `manifest.json`: what each source's JSONL file holds and where it came from. Its SHA-256 per
//! file is the test for "already fetched", and its licence, package and notice fields are what
//! a corpus needs to be redistributable.

use super::error::FetchError;
use super::source::{Kind, SourceId};
use crate::atomic_file::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";

/// One source's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub source: String,
    /// The JSONL file, relative to the output directory.
    pub file: String,
    pub kind: Kind,
    pub language: String,
    pub documents: u64,
    /// UTF-8 bytes of document text (not counting the JSON around it).
    pub text_bytes: u64,
    pub licence: String,
    pub package: String,
    pub client: String,
    /// The downloaded file (or local directory) the text was extracted from.
    pub artifact: String,
    /// SHA-256 of the JSONL file.
    pub sha256: String,
    /// The package's copyright or licence file, copied next to the data, relative to the
    /// output directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// What one document is.
    pub document: String,
    pub format_version: u32,
    /// Wall-clock seconds the download and extraction took.
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub sources: Vec<ManifestEntry>,
}

impl Manifest {
    /// Reads `dir/manifest.json`; a missing file is an empty manifest. An unreadable one is an
    /// empty manifest too (with a warning): every source is then rebuilt, which is always safe.
    pub fn load(dir: &Path) -> Manifest {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Manifest::default(),
            Err(e) => {
                eprintln!("warning: {}: {e}; rebuilding every source", path.display());
                return Manifest::default();
            }
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            eprintln!("warning: {}: {e}; rebuilding every source", path.display());
            Manifest::default()
        })
    }

    pub fn get(&self, source: &str) -> Option<&ManifestEntry> {
        self.sources.iter().find(|e| e.source == source)
    }

    /// Replaces the entry of the same source, keeping entries in the canonical source order.
    pub fn upsert(&mut self, entry: ManifestEntry) {
        self.sources.retain(|e| e.source != entry.source);
        self.sources.push(entry);
        let rank = |name: &str| {
            SourceId::ALL
                .iter()
                .chain(&SourceId::EVAL)
                .position(|id| id.name() == name)
                .unwrap_or(usize::MAX)
        };
        self.sources.sort_by_key(|e| rank(&e.source));
    }

    pub fn save(&self, dir: &Path) -> Result<(), FetchError> {
        let path = dir.join(MANIFEST_FILE);
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| FetchError::file(&path, e))?;
        json.push(b'\n');
        write_atomic(&path, &json).map_err(|e| FetchError::file(&path, e))
    }
}
