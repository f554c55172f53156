//! Durable atomic writes: a temporary file in the target's directory, synced, renamed over the
//! target, and the directory synced so that the rename survives a crash. Readers see the old
//! file or the new one, never a partial one. The model crate writes its files through the same
//! crate (`minicpm_model::safetensors_io::write_atomic`).

use atomic_write_file::AtomicWriteFile;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`; on an error the temporary file is removed and `path` is left as
/// it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = AtomicWriteFile::open(path)?;
    file.write_all(bytes)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing_dir = dir.path().join("absent/manifest.json");
        assert_eq!(
            write_atomic(&missing_dir, b"x").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
