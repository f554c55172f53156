//! Helpers for tests of this crate and of the crates that use it: what prepared output looks like
//! on disk, to compare two runs byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Every file under `dir` with its contents, by path relative to `dir`. Panics on an unreadable
/// directory or file: it is meant for tests.
pub fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    WalkDir::new(dir)
        .into_iter()
        .map(|entry| entry.expect("a readable directory"))
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            let relative = entry.path().strip_prefix(dir).expect("under dir");
            let bytes = std::fs::read(entry.path()).expect("a readable file");
            (relative.to_path_buf(), bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_files_by_relative_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.bin"), [1, 2]).unwrap();
        std::fs::write(dir.path().join("top.json"), "{}").unwrap();
        let files = files_under(dir.path());
        let expected: BTreeMap<PathBuf, Vec<u8>> = [
            (PathBuf::from("a/b/x.bin"), vec![1, 2]),
            (PathBuf::from("top.json"), b"{}".to_vec()),
        ]
        .into();
        assert_eq!(files, expected);
    }
}
