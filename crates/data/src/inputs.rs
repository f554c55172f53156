//! The corpus on disk: which files are inputs, and the documents each one holds. Plain text is one
//! document per file; JSONL one per line, its text in a configurable field and its source in the
//! `source` field (else the file's name); Parquet one per row, its text in the column of that
//! name (see `parquet_input`), its source the file's name.
//!
//! Invalid UTF-8 is skipped and counted, never fatal: real corpora carry stray bytes, and one bad
//! file should not stop a long job. So are Parquet rows whose text is null. A JSONL line without
//! the text field, or a Parquet file without the text column, is an error.

use crate::error::{Cause, DataError};
use crate::parquet_input::read_parquet;
use globset::GlobBuilder;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// The file name endings read as input; anything else in a directory is passed over.
pub const INPUT_EXTENSIONS: [&str; 5] = ["jsonl", "parquet", "txt", "md", "py"];

/// Expands files, directories (recursively, in sorted order) and glob patterns (`data/*.jsonl`,
/// `corpus/**/*.txt`, in `globset`'s syntax, where `*` stays within one path component) into
/// input files. A path that exists is taken as it is, even if it holds a glob character.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.exists() || !is_glob(input.as_os_str()) {
            walk(input, &mut out)?;
        } else {
            let matched = glob(input)?;
            if matched.is_empty() {
                return Err(DataError::file(input, "the pattern matches no file"));
            }
            for m in matched {
                walk(&m, &mut out)?;
            }
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

fn is_glob(s: &std::ffi::OsStr) -> bool {
    s.to_string_lossy().contains(['*', '?', '[', '{'])
}

/// The input files under `p` (itself, if it is a file), in sorted order; symbolic links are
/// followed.
fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    if !p.exists() {
        return Err(DataError::file(p, "no such file or directory"));
    }
    for entry in WalkDir::new(p).follow_links(true).sort_by_file_name() {
        let entry = entry.map_err(|e| walk_error(e, p, DataError::file))?;
        let is_input = entry
            .path()
            .extension()
            .is_some_and(|e| INPUT_EXTENSIONS.iter().any(|known| e == *known));
        if entry.file_type().is_file() && is_input {
            out.push(entry.into_path());
        }
    }
    Ok(())
}

/// The error of a failed step of a directory walk, made by `make` from the path it failed on and
/// the cause: the I/O error itself (whose message does not repeat the path), or the walk's own
/// (a link that loops back).
pub(crate) fn walk_error<E>(
    e: walkdir::Error,
    root: &Path,
    make: impl FnOnce(&Path, Cause) -> E,
) -> E {
    let path = e.path().unwrap_or(root).to_path_buf();
    let cause: Cause = if e.io_error().is_some() {
        Box::new(e.into_io_error().expect("an I/O error"))
    } else {
        Box::new(e)
    };
    make(&path, cause)
}

/// The files and directories that `pattern` matches, in sorted order. The walk starts at the
/// pattern's leading components without glob characters and goes no deeper than the pattern
/// does (unless it holds `**`); a matching directory is not searched further, since it is
/// taken whole.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, DataError> {
    let text = pattern.to_string_lossy();
    let matcher = GlobBuilder::new(&text)
        .literal_separator(true)
        .build()
        .map_err(|e| DataError::file(pattern, e))?
        .compile_matcher();
    let base: PathBuf = pattern
        .components()
        .take_while(|c| !is_glob(c.as_os_str()))
        .collect();
    let rest = pattern.components().count() - base.components().count();
    let (root, implicit_root) = if base.as_os_str().is_empty() {
        (PathBuf::from("."), true)
    } else {
        (base, false)
    };
    let max_depth = if text.contains("**") {
        usize::MAX
    } else {
        rest
    };
    let mut matched = Vec::new();
    let mut entries = WalkDir::new(&root)
        .min_depth(1)
        .max_depth(max_depth)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| walk_error(e, &root, DataError::file))?;
        // A relative pattern is matched without the `./` the walk starts from.
        let path = entry.path();
        let candidate = if implicit_root {
            path.strip_prefix(&root).unwrap_or(path)
        } else {
            path
        };
        if matcher.is_match(candidate) {
            if entry.file_type().is_dir() {
                entries.skip_current_dir();
            }
            matched.push(entry.into_path());
        }
    }
    Ok(matched)
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
            .map_err(|e| DataError::failed(format!("{}: not JSON", where_()), e))?;
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

    fn touch(dir: &Path, names: &[&str]) {
        for name in names {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
    }

    fn relative(dir: &Path, files: Vec<PathBuf>) -> Vec<String> {
        files
            .iter()
            .map(|f| f.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn directories_are_walked_in_order_keeping_only_inputs() {
        let dir = tempfile::tempdir().unwrap();
        touch(
            dir.path(),
            &[
                "b/z.txt",
                "b/a.jsonl",
                "a.md",
                "c.bin",
                "b/sub/x.py",
                "b/sub/y.csv",
            ],
        );
        let files = expand_inputs(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(
            relative(dir.path(), files),
            ["a.md", "b/a.jsonl", "b/sub/x.py", "b/z.txt"]
        );
    }

    #[test]
    fn globs_match_within_a_component_and_across_with_two_stars() {
        let dir = tempfile::tempdir().unwrap();
        touch(
            dir.path(),
            &[
                "d1/a.jsonl",
                "d1/b.txt",
                "d2/c.jsonl",
                "d2/deep/e.jsonl",
                "f.jsonl",
            ],
        );
        let one = |pattern: &str| {
            let files = expand_inputs(&[dir.path().join(pattern)]).unwrap();
            relative(dir.path(), files)
        };
        assert_eq!(one("d1/*.jsonl"), ["d1/a.jsonl"]);
        assert_eq!(one("d*/*.jsonl"), ["d1/a.jsonl", "d2/c.jsonl"]);
        assert_eq!(
            one("**/*.jsonl"),
            ["d1/a.jsonl", "d2/c.jsonl", "d2/deep/e.jsonl", "f.jsonl"]
        );
        // A matching directory is taken whole, once.
        assert_eq!(one("d2*"), ["d2/c.jsonl", "d2/deep/e.jsonl"]);
    }

    #[test]
    fn a_pattern_that_matches_nothing_or_does_not_parse_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("*.parquet");
        let e = expand_inputs(&[none]).unwrap_err().to_string();
        assert!(
            e.contains("*.parquet") && e.contains("matches no file"),
            "{e}"
        );
        let bad = dir.path().join("[a.jsonl");
        let e = expand_inputs(&[bad]).unwrap_err().to_string();
        assert!(e.contains("[a.jsonl") && e.contains("glob"), "{e}");
        let missing = dir.path().join("missing.jsonl");
        let e = expand_inputs(&[missing]).unwrap_err().to_string();
        assert!(e.contains("missing.jsonl: no such file"), "{e}");
    }
}
