//! A small built-in corpus made from text every machine of this kind already has (licence texts
//! and the Python standard library's sources), so the demo trains on real text with no download.

use crate::error::DataError;
use crate::shards::{DatasetIndex, ShardWriter};
use crate::tokenizer::TextTokenizer;
use std::path::{Path, PathBuf};

/// A document and where it came from.
pub struct Document {
    pub source: String,
    pub text: String,
}

fn collect_files(dir: &Path, ext: Option<&str>, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_dir() {
            if !matches!(
                name.as_str(),
                "test" | "tests" | "site-packages" | "__pycache__" | "idlelib"
            ) {
                collect_files(&p, ext, out);
            }
        } else if ext.is_none_or(|e| name.ends_with(e)) {
            out.push(p);
        }
    }
}

/// The Python standard library directories present on this machine, newest first.
fn python_stdlib_dirs() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/usr/lib")];
    if let Ok(home) = std::env::var("HOME") {
        if let Ok(versions) = std::fs::read_dir(Path::new(&home).join(".pyenv/versions")) {
            roots.extend(versions.flatten().map(|v| v.path().join("lib")));
        }
    }
    roots.push(PathBuf::from("/usr/local/lib"));
    let mut dirs = Vec::new();
    for r in roots {
        if let Ok(es) = std::fs::read_dir(&r) {
            let mut found: Vec<PathBuf> = es
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
                        && p.join("os.py").exists()
                })
                .collect();
            found.sort();
            dirs.extend(found.into_iter().rev());
        }
    }
    dirs
}

/// Up to `max_bytes` of local text: English licence prose first, then Python sources.
pub fn collect(max_bytes: usize) -> Result<Vec<Document>, DataError> {
    let mut files = Vec::new();
    collect_files(Path::new("/usr/share/common-licenses"), None, &mut files);
    if let Some(stdlib) = python_stdlib_dirs().first() {
        collect_files(stdlib, Some(".py"), &mut files);
    }
    let mut docs = Vec::new();
    let mut total = 0;
    for f in files {
        if total >= max_bytes {
            break;
        }
        // Non-UTF-8 files are skipped: the corpus is text by construction.
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        total += text.len();
        let source = if f.starts_with("/usr/share/common-licenses") {
            "licences"
        } else {
            "python"
        };
        docs.push(Document {
            source: source.into(),
            text,
        });
    }
    if docs.is_empty() {
        return Err(DataError::Invalid(
            "no local text found (looked in /usr/share/common-licenses and the Python standard library)".into(),
        ));
    }
    Ok(docs)
}

/// Tokenises documents into `out/train` and `out/valid`. Every `valid_every`-th document goes to
/// validation, so the split is the same on every run.
pub fn prepare(
    docs: &[Document],
    tok: &TextTokenizer,
    out: &Path,
    valid_every: usize,
) -> Result<(DatasetIndex, DatasetIndex), DataError> {
    let eos = tok.token_id("</s>").unwrap_or(2);
    let shard_tokens = 1 << 22;
    let mut train = ShardWriter::create(&out.join("train"), tok.vocab_size(), eos, shard_tokens)?;
    let mut valid = ShardWriter::create(&out.join("valid"), tok.vocab_size(), eos, shard_tokens)?;
    for (i, d) in docs.iter().enumerate() {
        let ids = tok.encode(&d.text)?;
        let w = if i % valid_every == valid_every - 1 {
            &mut valid
        } else {
            &mut train
        };
        w.push_document(&ids, d.text.len() as u64)?;
    }
    Ok((train.finish()?, valid.finish()?))
}
