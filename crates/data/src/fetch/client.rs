//! Finding and running the package clients. Every download goes through the ordinary client of
//! its registry (npm, pip, apt-get) so proxies, mirrors and credentials configured for that client
//! apply unchanged. Clients are looked up on an explicit search path so a missing one is reported
//! before anything is downloaded, with what to install.

use super::error::FetchError;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// An external program a source needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Npm,
    Pip,
    AptGet,
    DpkgDeb,
    DpkgQuery,
    Mod2imp,
    Python3,
}

impl Client {
    /// Executable names tried in order.
    fn programs(self) -> &'static [&'static str] {
        match self {
            Client::Npm => &["npm"],
            Client::Pip => &["pip3", "pip"],
            Client::AptGet => &["apt-get"],
            Client::DpkgDeb => &["dpkg-deb"],
            Client::DpkgQuery => &["dpkg-query"],
            Client::Mod2imp => &["mod2imp"],
            Client::Python3 => &["python3"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Client::Pip => "pip",
            other => other.programs()[0],
        }
    }

    /// What to install to get the client, for the one-line error.
    pub fn install_hint(self) -> &'static str {
        match self {
            Client::Npm => "Node.js and npm",
            Client::Pip => "Python 3 and pip",
            Client::AptGet => "apt (this source needs a Debian or Ubuntu system)",
            Client::DpkgDeb => "dpkg (dpkg-deb)",
            Client::DpkgQuery => "dpkg (dpkg-query)",
            Client::Mod2imp => "libsword-utils (apt-get install libsword-utils)",
            Client::Python3 => "python3",
        }
    }
}

/// The clients available to one fetch, and whether the apt package lists were already refreshed.
pub struct Clients {
    search_path: OsString,
    apt_updated: std::cell::Cell<bool>,
}

impl Clients {
    /// `search_path` is a PATH-style list of directories; `None` uses the process's PATH.
    pub fn new(search_path: Option<OsString>) -> Self {
        let search_path = search_path
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        Clients {
            search_path,
            apt_updated: std::cell::Cell::new(false),
        }
    }

    /// The executable for `client`, or the error that says what to install.
    pub fn find(&self, client: Client) -> Result<PathBuf, FetchError> {
        for dir in std::env::split_paths(&self.search_path) {
            for program in client.programs() {
                let candidate = dir.join(program);
                if is_executable(&candidate) {
                    return Ok(candidate);
                }
            }
        }
        Err(FetchError::MissingClient {
            client: client.name(),
            install: client.install_hint(),
        })
    }

    /// A command for `client` whose children see the same search path (npm, for one, finds
    /// `node` through it).
    pub fn command(&self, client: Client) -> Result<Command, FetchError> {
        Ok(self.command_at(&self.find(client)?))
    }

    /// A command for a program found elsewhere (one unpacked from a package), with the same
    /// search path as the clients.
    pub fn command_at(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PATH", &self.search_path);
        cmd
    }

    /// Runs `cmd` to completion and returns its standard output; a failure carries the tail of
    /// standard error.
    pub fn output(&self, mut cmd: Command) -> Result<Vec<u8>, FetchError> {
        let shown = describe(&cmd);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|source| FetchError::Run {
                command: shown.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(FetchError::Command {
                command: shown,
                status: out.status.to_string(),
                detail: tail(&out.stderr),
            })
        }
    }

    /// Starts `cmd` with its standard output piped, for output streamed rather than held whole.
    pub fn spawn(&self, mut cmd: Command) -> Result<(Child, String), FetchError> {
        let shown = describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FetchError::Run {
                command: shown.clone(),
                source,
            })?;
        Ok((child, shown))
    }

    /// Waits for a spawned command and turns a failure into an error.
    pub fn finish(&self, child: Child, shown: String) -> Result<(), FetchError> {
        let out = child.wait_with_output().map_err(|source| FetchError::Run {
            command: shown.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(FetchError::Command {
                command: shown,
                status: out.status.to_string(),
                detail: tail(&out.stderr),
            })
        }
    }

    /// Refreshes the apt package lists, at most once per fetch: `apt-get download` resolves
    /// names and versions from them, and stale lists point at files the archive has dropped.
    pub fn apt_update_once(&self) -> Result<bool, FetchError> {
        if self.apt_updated.get() {
            return Ok(false);
        }
        self.apt_updated.set(true);
        let mut cmd = self.command(Client::AptGet)?;
        cmd.arg("update").arg("-qq");
        self.output(cmd)?;
        Ok(true)
    }
}

pub(super) fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// The command line as it would be typed, program by file name only.
fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program());
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last few non-empty lines of a client's error output, joined on one line.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(3);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        "no error output".to_string()
    } else {
        joined
    }
}
