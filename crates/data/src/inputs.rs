//! The corpus on disk: which files are inputs, and the documents each one holds. Plain text is one
//! document per file; JSONL one per line, its text in a configurable field and its source in the
//! `source` field (else the file's name); Parquet one per row, its text in the column of that
//! name (see `parquet_input`), its source the file's name.
//!
//! Invalid UTF-8 is skipped and counted, never fatal: real corpora carry stray bytes, and one bad
//! file should not stop a long job. So are Parquet rows whose text is null. A JSONL line without
//! the text field, or a Parquet file without the text column, is an error.

use crate::error::DataError;
use crate::parquet_input::read_parquet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// The file name endings read as input; anything else in a directory is passed over.
pub const INPUT_EXTENSIONS: [&str; 5] = ["jsonl", "parquet", "txt", "md", "py"];

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
            let is_input = p
                .extension()
                .is_some_and(|e| INPUT_EXTENSIONS.iter().any(|known| e == *known));
            if is_input {
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
            let Some(star_in_name) = star.checked_sub(s.len() - pattern.len()) else {
                return Err(DataError::file(
                    i,
                    "only the file name may hold a `*` (dir/prefix*suffix)",
                ));
            };
            let (pre, post) = pattern.split_at(star_in_name);
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
        return Err(DataError::Invalid(format!(
            "no input files (.{}) found",
            INPUT_EXTENSIONS.join(", .")
        )));
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

/// Documents of a file left out without failing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    pub invalid_utf8: u64,
    /// Parquet rows whose text is null.
    pub null_text: u64,
}

/// Streams the documents of one file into `sink`; returns what was skipped.
pub fn read_file(
    p: &Path,
    text_field: &str,
    sink: &mut dyn FnMut(Doc) -> Result<(), DataError>,
) -> Result<Skipped, DataError> {
    match p.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => read_jsonl(p, text_field, sink),
        Some("parquet") => read_parquet(p, text_field, sink),
        _ => read_plain_text(p, sink),
    }
}

/// One document: the whole file.
fn read_plain_text(
    p: &Path,
    sink: &mut dyn FnMut(Doc) -> Result<(), DataError>,
) -> Result<Skipped, DataError> {
    let bytes = std::fs::read(p).map_err(|e| DataError::file(p, e))?;
    match String::from_utf8(bytes) {
        Ok(text) if text.trim().is_empty() => {}
        Ok(text) => sink(Doc {
            source: source_of_file(p),
            text,
        })?,
        Err(_) => {
            return Ok(Skipped {
                invalid_utf8: 1,
                ..Default::default()
            })
        }
    }
    Ok(Skipped::default())
}

/// One document per line.
fn read_jsonl(
    p: &Path,
    text_field: &str,
    sink: &mut dyn FnMut(Doc) -> Result<(), DataError>,
) -> Result<Skipped, DataError> {
    let file = std::fs::File::open(p).map_err(|e| DataError::file(p, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut skipped = Skipped::default();
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
            skipped.invalid_utf8 += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_outside_the_file_name_is_refused() {
        let e = expand_inputs(&[PathBuf::from("data*/corpus.jsonl")])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("only the file name"), "{e}");
    }
}
