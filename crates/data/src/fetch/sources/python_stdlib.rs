//! The Python standard library of this machine: real code, one document per module. Test
//! suites are left out (they are the held-out code evaluation set), as are installed
//! third-party packages and IDLE.

use super::{require, Ctx, Extracted, Sink};
use crate::fetch::client::Client;
use crate::fetch::error::FetchError;
use crate::fetch::output::Doc;
use crate::inputs::walk_error;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

const EXCLUDED_DIRS: &[&str] = &[
    "test",
    "tests",
    "site-packages",
    "dist-packages",
    "idlelib",
    "__pycache__",
];

pub fn extract(ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    let root = match ctx.python_stdlib {
        Some(dir) => dir.to_path_buf(),
        None => find_stdlib(ctx)?,
    };
    let mut files = Vec::new();
    collect(&root, &mut files)?;
    let mut modules = 0;
    for f in files {
        // A module that is not UTF-8 (a handful of encoding test fixtures) is skipped: the
        // corpus is text by construction.
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        // Code is kept exactly as written (blank lines between definitions are style the model
        // should learn); only trailing blank lines go.
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        let rel = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
        sink(Doc::new(rel, text))?;
        modules += 1;
    }
    require(modules, &root.display().to_string(), "Python modules")?;
    let notice = std::fs::read(root.join("LICENSE.txt")).ok();
    Ok(Extracted {
        artifact: root.display().to_string(),
        notice,
    })
}

/// The newest `/usr/lib/python3.N` with an `os.py`, else the standard library of the
/// `python3` on the search path.
fn find_stdlib(ctx: &Ctx<'_>) -> Result<PathBuf, FetchError> {
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let minor = name.strip_prefix("python3.")?.parse().ok()?;
            let path = e.path();
            path.join("os.py").is_file().then_some((minor, path))
        })
        .collect();
    candidates.sort();
    if let Some((_, dir)) = candidates.pop() {
        return Ok(dir);
    }
    let mut cmd = ctx.clients.command(Client::Python3)?;
    cmd.args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
    ]);
    let out = ctx.clients.output(cmd)?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out).trim());
    if dir.join("os.py").is_file() {
        Ok(dir)
    } else {
        Err(FetchError::file(
            &dir,
            "not a Python standard library (no os.py)",
        ))
    }
}

/// `.py` files under `dir`, sorted, skipping the excluded directories and not following links to
/// directories.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FetchError> {
    let excluded = |e: &walkdir::DirEntry| {
        e.depth() > 0
            && e.file_type().is_dir()
            && EXCLUDED_DIRS.contains(&e.file_name().to_string_lossy().as_ref())
    };
    for entry in WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !excluded(e))
    {
        let entry = entry.map_err(|e| walk_error(e, dir, FetchError::file))?;
        if !entry.file_type().is_dir() && entry.file_name().to_string_lossy().ends_with(".py") {
            out.push(entry.into_path());
        }
    }
    Ok(())
}
