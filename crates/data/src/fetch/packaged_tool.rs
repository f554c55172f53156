//! A program a source needs that ships in a Debian package (mod2imp, in libsword-utils), when
//! the machine lacks it: the package, and those of its dependencies that are not installed, are
//! fetched with `apt-get download` like every other package, unpacked into the cache and run
//! from there with `LD_LIBRARY_PATH` on their libraries. Nothing is installed on the system and
//! no root is needed; a second run finds the unpacked program in the cache.
//!
//! ```text
//! .cache/tools/<package>/
//!   bin/<program>      the program
//!   lib/               the shared libraries of the packages fetched, flat
//! ```

use super::archive::unpack_deb;
use super::client::{is_executable, Client, Clients};
use super::download::apt_download;
use super::error::FetchError;
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Packages fetched for one program at most: a dependency chain longer than this means the
/// system is too far from the package's (another release), where unpacked libraries would not
/// load anyway.
const MAX_PACKAGES: usize = 8;

/// A command running `client`: the one on the search path, or else the one unpacked from
/// `package` (fetched first when the cache has none).
pub fn packaged_command(
    clients: &Clients,
    cache: &Path,
    client: Client,
    package: &'static str,
) -> Result<Command, FetchError> {
    if clients.find(client).is_ok() {
        return clients.command(client);
    }
    let root = cache.join("tools").join(package);
    let program = root.join("bin").join(client.name());
    if !is_executable(&program) {
        unpack_tool(clients, cache, client, package, &root).map_err(|why| {
            FetchError::Unobtainable {
                client: client.name(),
                package,
                install: client.install_hint(),
                why: Box::new(why),
            }
        })?;
    }
    let mut cmd = clients.command_at(&program);
    let mut libraries = vec![root.join("lib")];
    libraries.extend(
        std::env::var_os("LD_LIBRARY_PATH").map_or_else(Vec::new, |p| {
            std::env::split_paths(&p).collect::<Vec<PathBuf>>()
        }),
    );
    let joined = std::env::join_paths(libraries)
        .map_err(|e| FetchError::file(&root, format!("cannot name its libraries: {e}")))?;
    cmd.env("LD_LIBRARY_PATH", joined);
    Ok(cmd)
}

/// Fetches the package and its missing dependencies and unpacks the program and their shared
/// libraries into `root`, through a temporary directory renamed at the end, so that a failure
/// leaves nothing that looks usable.
fn unpack_tool(
    clients: &Clients,
    cache: &Path,
    client: Client,
    package: &str,
    root: &Path,
) -> Result<(), FetchError> {
    // Needed to tell which dependencies the system already has; checked before any download.
    clients.find(Client::DpkgQuery)?;
    let debs = fetch_with_dependencies(clients, cache, package)?;
    let parent = root
        .parent()
        .expect("the tool directory is under the cache");
    std::fs::create_dir_all(parent).map_err(|e| FetchError::file(parent, e))?;
    let partial = parent.join(format!(".{package}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let program = format!("usr/bin/{}", client.name());
    let unpacked = (|| {
        for deb in &debs {
            unpack_deb(clients, deb, |path| place(path, &program), &partial)?;
        }
        if !is_executable(&partial.join("bin").join(client.name())) {
            return Err(FetchError::format(
                package,
                format!("the package has no executable {program}"),
            ));
        }
        if root.exists() {
            std::fs::remove_dir_all(root).map_err(|e| FetchError::file(root, e))?;
        }
        std::fs::rename(&partial, root).map_err(|e| FetchError::file(root, e))
    })();
    if unpacked.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    unpacked
}

/// Where a member of a fetched package goes: the program to `bin/`, shared libraries (files
/// and the links naming their versions) flat into `lib/`; everything else stays out.
fn place(path: &str, program: &str) -> Option<String> {
    if path == program {
        return Some(format!("bin/{}", path.rsplit('/').next()?));
    }
    let name = path.rsplit('/').next()?;
    let library = path.starts_with("usr/lib/") || path.starts_with("lib/");
    (library && (name.ends_with(".so") || name.contains(".so."))).then(|| format!("lib/{name}"))
}

/// Downloads `package` and, breadth first, every dependency that is not installed (the first
/// of alternatives when none is), at most [`MAX_PACKAGES`] in all.
fn fetch_with_dependencies(
    clients: &Clients,
    cache: &Path,
    package: &str,
) -> Result<Vec<PathBuf>, FetchError> {
    let mut queue = VecDeque::from([package.to_string()]);
    let mut seen = BTreeSet::from([package.to_string()]);
    let mut debs = Vec::new();
    while let Some(name) = queue.pop_front() {
        if debs.len() == MAX_PACKAGES {
            return Err(FetchError::format(
                package,
                format!(
                    "needs more than {MAX_PACKAGES} packages this system lacks (next: {name}); \
                     it is probably built for another release"
                ),
            ));
        }
        let deb = apt_download(clients, cache, &name)?;
        for alternatives in depends(&control_field(clients, &deb, "Depends")?) {
            let mut satisfied = false;
            for a in &alternatives {
                if seen.contains(a) || installed(clients, a)? {
                    satisfied = true;
                    break;
                }
            }
            if !satisfied {
                seen.insert(alternatives[0].clone());
                queue.push_back(alternatives[0].clone());
            }
        }
        debs.push(deb);
    }
    Ok(debs)
}

/// A field of a package's control file (`dpkg-deb -f`), empty when the package has none.
fn control_field(clients: &Clients, deb: &Path, field: &str) -> Result<String, FetchError> {
    let mut cmd = clients.command(Client::DpkgDeb)?;
    cmd.arg("-f").arg(deb).arg(field);
    let out = clients.output(cmd)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The package names of a `Depends` field, one list of alternatives per dependency, without
/// version constraints or architecture qualifiers.
fn depends(field: &str) -> Vec<Vec<String>> {
    field
        .split(',')
        .map(|dependency| {
            dependency
                .split('|')
                .filter_map(|alternative| {
                    let name = alternative.split_whitespace().next()?;
                    let name = name.split('(').next()?.split(':').next()?;
                    (!name.is_empty()).then(|| name.to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|alternatives| !alternatives.is_empty())
        .collect()
}

/// Whether dpkg has `package` installed; an unknown package is not an error but not installed.
fn installed(clients: &Clients, package: &str) -> Result<bool, FetchError> {
    let mut cmd = clients.command(Client::DpkgQuery)?;
    cmd.args(["-W", "-f=${db:Status-Abbrev}", package]);
    match clients.output(cmd) {
        Ok(status) => Ok(status.starts_with(b"ii")),
        Err(FetchError::Command { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_fields_give_package_names() {
        // libsword1.9.0's field in Debian 12, shortened, with alternatives and a qualifier.
        let field = "libsword-common, libbz2-1.0, libc6 (>= 2.33), libclucene-core1v5 \
                     (>= 2.3.3.4+dfsg), libcurl3-gnutls (>= 7.16.2) | libcurl4, python3:any";
        let got = depends(field);
        let want: Vec<Vec<&str>> = vec![
            vec!["libsword-common"],
            vec!["libbz2-1.0"],
            vec!["libc6"],
            vec!["libclucene-core1v5"],
            vec!["libcurl3-gnutls", "libcurl4"],
            vec!["python3"],
        ];
        assert_eq!(got, want);
        assert!(depends("").is_empty());
    }

    #[test]
    fn only_the_program_and_shared_libraries_are_unpacked() {
        let program = "usr/bin/mod2imp";
        let cases = [
            ("usr/bin/mod2imp", Some("bin/mod2imp")),
            ("usr/bin/osis2mod", None),
            (
                "usr/lib/x86_64-linux-gnu/libsword.so.1.9.0",
                Some("lib/libsword.so.1.9.0"),
            ),
            (
                "usr/lib/x86_64-linux-gnu/libclucene-core.so.1",
                Some("lib/libclucene-core.so.1"),
            ),
            ("usr/share/doc/libsword-utils/copyright", None),
            ("usr/share/sword/locales.d/de.conf", None),
            ("etc/sword.conf", None),
        ];
        for (path, want) in cases {
            assert_eq!(place(path, program).as_deref(), want, "{path}");
        }
    }

    /// A shell script; the system's tools are put back on its own PATH, since the clients run
    /// with the stand-ins' directory as theirs.
    #[cfg(unix)]
    fn write_script(path: &Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let body = body.replacen("#!/bin/sh\n", "#!/bin/sh\nPATH=/usr/bin:/bin:$PATH\n", 1);
        std::fs::write(path, body).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A package archive as the stand-in `dpkg-deb` reads it: a plain tar of its file system,
    /// plus its Depends field in a file next to it.
    #[cfg(unix)]
    fn package(
        repo: &Path,
        name: &str,
        depends: &str,
        files: &[(&str, &str, u32)],
        links: &[(&str, &str)],
    ) {
        let mut b =
            tar::Builder::new(std::fs::File::create(repo.join(format!("{name}.tar"))).unwrap());
        for (path, body, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(*mode);
            h.set_cksum();
            b.append_data(&mut h, format!("./{path}"), body.as_bytes())
                .unwrap();
        }
        for (path, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, format!("./{path}"), target).unwrap();
        }
        b.finish().unwrap();
        std::fs::write(repo.join(format!("{name}.depends")), depends).unwrap();
    }

    /// Stand-ins for apt-get (serving the packages of `repo` and logging each download),
    /// dpkg-deb (reading them) and dpkg-query (knowing libc6 and libstdc++6 as installed).
    #[cfg(unix)]
    fn stand_in_clients(bin: &Path, repo: &Path) {
        let r = repo.display();
        write_script(
            &bin.join("apt-get"),
            &format!(
                "#!/bin/sh\ncase \"$1\" in\n  update) ;;\n  download)\n    \
                 echo \"$3\" >> {r}/downloads\n    \
                 if [ -f {r}/\"$3\".tar ]; then cp {r}/\"$3\".tar \"$3\"_1.0_amd64.deb\n    \
                 else echo \"E: Unable to locate package $3\" >&2; exit 100; fi ;;\nesac\n"
            ),
        );
        write_script(
            &bin.join("dpkg-deb"),
            &format!(
                "#!/bin/sh\ncase \"$1\" in\n  --fsys-tarfile) cat \"$2\" ;;\n  \
                 -f) name=$(basename \"$2\" | cut -d_ -f1); cat {r}/\"$name\".depends ;;\n  \
                 *) exit 2 ;;\nesac\n"
            ),
        );
        write_script(
            &bin.join("dpkg-query"),
            "#!/bin/sh\ncase \"$3\" in\n  libc6|libstdc++6) printf 'ii ' ;;\n  \
             *) echo \"dpkg-query: no packages found matching $3\" >&2; exit 1 ;;\nesac\n",
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_program_is_fetched_with_its_missing_libraries_and_runs() {
        let (bin, repo, cache) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        stand_in_clients(bin.path(), repo.path());
        // The program runs only when the loader path holds its library and, through the
        // version link, the library that one needs.
        let mod2imp = "#!/bin/sh\nlib=${LD_LIBRARY_PATH%%:*}\n\
                       [ -f \"$lib/libsword.so.1.9.0\" ] && [ -f \"$lib/libclucene-core.so.1\" ] \
                       || { echo 'cannot load libraries' >&2; exit 127; }\necho \"exported $1\"\n";
        package(
            repo.path(),
            "libsword-utils",
            "libc6 (>= 2.34), libstdc++6 (>= 11), libsword1.9.0 (>= 1.9.0+dfsg)",
            &[
                ("usr/bin/mod2imp", mod2imp, 0o755),
                ("usr/bin/osis2mod", "#!/bin/sh\n", 0o755),
                ("usr/share/doc/libsword-utils/copyright", "GPL", 0o644),
            ],
            &[],
        );
        package(
            repo.path(),
            "libsword1.9.0",
            "libsword-common, libc6 (>= 2.33), libclucene-core1v5 (>= 2.3.3.4+dfsg) | libclucene-core2",
            &[("usr/lib/x86_64-linux-gnu/libsword.so.1.9.0", "elf", 0o644)],
            &[],
        );
        package(
            repo.path(),
            "libclucene-core1v5",
            "libc6 (>= 2.33), libstdc++6 (>= 11)",
            &[(
                "usr/lib/x86_64-linux-gnu/libclucene-core.so.2.3.3.4",
                "elf",
                0o644,
            )],
            &[(
                "usr/lib/x86_64-linux-gnu/libclucene-core.so.1",
                "libclucene-core.so.2.3.3.4",
            )],
        );
        package(
            repo.path(),
            "libsword-common",
            "",
            &[("etc/sword.conf", "[Install]", 0o644)],
            &[],
        );
        let clients = Clients::new(Some(bin.path().as_os_str().to_owned()));
        let run = |clients: &Clients| {
            let mut cmd =
                packaged_command(clients, cache.path(), Client::Mod2imp, "libsword-utils").unwrap();
            cmd.arg("engWEB");
            String::from_utf8(clients.output(cmd).unwrap()).unwrap()
        };
        assert_eq!(run(&clients), "exported engWEB\n");
        // What the system has (libc6, libstdc++6) was not fetched; each missing package once.
        let downloads = std::fs::read_to_string(repo.path().join("downloads")).unwrap();
        assert_eq!(
            downloads.lines().collect::<Vec<_>>(),
            [
                "libsword-utils",
                "libsword1.9.0",
                "libsword-common",
                "libclucene-core1v5"
            ]
        );
        let tool = cache.path().join("tools/libsword-utils");
        let mut unpacked: Vec<String> = walk(&tool);
        unpacked.sort();
        assert_eq!(
            unpacked,
            [
                "bin/mod2imp",
                "lib/libclucene-core.so.1",
                "lib/libclucene-core.so.2.3.3.4",
                "lib/libsword.so.1.9.0"
            ]
        );

        // A second run uses the unpacked program: no download, even with apt-get gone.
        std::fs::remove_file(bin.path().join("apt-get")).unwrap();
        assert_eq!(run(&clients), "exported engWEB\n");
        assert_eq!(
            std::fs::read_to_string(repo.path().join("downloads")).unwrap(),
            downloads
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_program_that_cannot_be_had_says_why_and_what_to_install() {
        let (bin, repo, cache) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        stand_in_clients(bin.path(), repo.path());
        // The package is there, but a library it needs is not in the archive.
        package(
            repo.path(),
            "libsword-utils",
            "libsword1.9.0",
            &[("usr/bin/mod2imp", "#!/bin/sh\n", 0o755)],
            &[],
        );
        let clients = Clients::new(Some(bin.path().as_os_str().to_owned()));
        let err = packaged_command(&clients, cache.path(), Client::Mod2imp, "libsword-utils")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("mod2imp not found, and fetching it from libsword-utils failed: "),
            "{err}"
        );
        assert!(
            err.contains("Unable to locate package libsword1.9.0"),
            "{err}"
        );
        assert!(
            err.ends_with("or install libsword-utils (apt-get install libsword-utils)"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        // Nothing half-unpacked is left to be mistaken for the program.
        assert!(!cache.path().join("tools/libsword-utils").exists());
        let tools: Vec<_> = std::fs::read_dir(cache.path().join("tools"))
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        assert!(tools.is_empty(), "{tools:?}");
    }

    /// Every file and link under `dir`, relative to it.
    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out
    }
}
