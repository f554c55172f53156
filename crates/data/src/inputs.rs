//! The corpus on disk: which files are inputs, and the documents each one holds. Plain text is one
//! document per file; JSONL one per line, its text in a configurable field and its source in the
//! `source` field (else the file's name).
//!
//! Invalid UTF-8 is skipped and counted, never fatal: real corpora carry stray bytes, and one bad
//! file should not stop a long job. A JSONL line without the text field is an error.

use crate::error::DataError;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Expands files, directories (recursively, sorted) and `*` globs into input files.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| DataError::file(p, e))?
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, out)?;
            }
        } else if p.is_file() {
            let name = p.to_string_lossy();
            if name.ends_with(".jsonl")
                || name.ends_with(".txt")
                || name.ends_with(".md")
                || name.ends_with(".py")
            {
                out.push(p.to_path_buf());
            }
        } else {
            return Err(DataError::file(p, "no such file or directory"));
        }
        Ok(())
    }
    let mut out = Vec::new();
    for i in inputs {
        let s = i.to_string_lossy();
        if let Some(star) = s.find('*') {
            // A simple glob: `dir/prefix*suffix` within one directory.
            let (dir, pattern) = s.rsplit_once('/').unwrap_or((".", &s));
            let (pre, post) = pattern.split_at(star - (s.len() - pattern.len()));
            let post = &post[1..];
            let mut matched: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| DataError::file(Path::new(dir), e))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        n.to_string_lossy().starts_with(pre) && n.to_string_lossy().ends_with(post)
                    })
                })
                .collect();
            if matched.is_empty() {
                return Err(DataError::file(i, "the pattern matches no file"));
            }
            matched.sort();
            for m in matched {
                walk(&m, &mut out)?;
            }
        } else {
            walk(i, &mut out)?;
        }
    }
    if out.is_empty() {
        return Err(DataError::Invalid(
            "no input files (.jsonl, .txt, .md, .py) found".into(),
        ));
    }
    Ok(out)
}

/// A document and its source.
pub struct Doc {
    pub source: String,
    pub text: String,
}

pub(crate) fn source_of_file(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into())
}

/// Streams the documents of one file into `sink`; returns the invalid-UTF-8 items skipped.
pub fn read_file(
    p: &Path,
    text_field: &str,
    sink: &mut dyn FnMut(Doc) -> Result<(), DataError>,
) -> Result<u64, DataError> {
    let is_jsonl = p.extension().is_some_and(|e| e == "jsonl");
    if !is_jsonl {
        let bytes = std::fs::read(p).map_err(|e| DataError::file(p, e))?;
        return match String::from_utf8(bytes) {
            Ok(text) if text.trim().is_empty() => Ok(0),
            Ok(text) => sink(Doc {
                source: source_of_file(p),
                text,
            })
            .map(|_| 0),
            Err(_) => Ok(1),
        };
    }
    let file = std::fs::File::open(p).map_err(|e| DataError::file(p, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut skipped = 0;
    let mut n = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| DataError::file(p, e))?;
        if read == 0 {
            break;
        }
        n += 1;
        let Ok(s) = std::str::from_utf8(&line) else {
            skipped += 1;
            continue;
        };
        if s.trim().is_empty() {
            continue;
        }
        let where_ = || format!("{}:{n}", p.display());
        let v: serde_json::Value = serde_json::from_str(s)
            .map_err(|e| DataError::Invalid(format!("{}: not JSON: {e}", where_())))?;
        let text = v.get(text_field).and_then(|t| t.as_str()).ok_or_else(|| {
            DataError::Invalid(format!("{}: no string field `{text_field}`", where_()))
        })?;
        let source = v
            .get("source")
            .and_then(|s| s.as_str())
            .map(String::from)
            .unwrap_or_else(|| source_of_file(p));
        if !text.trim().is_empty() {
            sink(Doc {
                source,
                text: text.to_string(),
            })?;
        }
    }
    Ok(skipped)
}
