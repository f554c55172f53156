//! The documents `prepare` holds out for validation, found again from the corpus alone: the
//! same numbering of each source's documents in reading order, the same hash of (source,
//! document number) and the same rule for a source's last document. Evaluation sets built from
//! them therefore share no document with what the model trained on (SFT data made from the same
//! sources leaves the same documents out).

use crate::error::DataError;
use crate::inputs::{expand_inputs, read_file};
use crate::prepare::{is_valid_doc, place_last, LastPlace};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Per source, a document not yet known to be its last.
#[derive(Default)]
struct Source {
    documents: u64,
    split: Split,
    last: Option<(String, bool)>,
}

/// A source's documents on either side of `prepare`'s split, each in corpus order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub train: Vec<String>,
    pub held_out: Vec<String>,
}

/// The held-out text of every source in `inputs`, in corpus order: whole documents, or for a
/// source of one document, its held-out tail. `text_field` and `permille` as given to
/// `prepare`.
pub fn held_out_documents(
    inputs: &[PathBuf],
    text_field: &str,
    permille: u64,
) -> Result<BTreeMap<String, Vec<String>>, DataError> {
    let split = split_documents(inputs, text_field, permille)?;
    Ok(split.into_iter().map(|(n, s)| (n, s.held_out)).collect())
}

/// Every source's documents as `prepare` splits them: what the model trained on and what it
/// held out (a source of one document is cut in two).
pub fn split_documents(
    inputs: &[PathBuf],
    text_field: &str,
    permille: u64,
) -> Result<BTreeMap<String, Split>, DataError> {
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    for f in expand_inputs(inputs)? {
        read_file(&f, text_field, &mut |doc| {
            let s = sources.entry(doc.source.clone()).or_default();
            let valid = is_valid_doc(&doc.source, s.documents, permille);
            s.documents += 1;
            match s.last.replace((doc.text, valid)) {
                Some((text, true)) => s.split.held_out.push(text),
                Some((text, false)) => s.split.train.push(text),
                None => {}
            }
            Ok(())
        })?;
    }
    Ok(sources
        .into_iter()
        .map(|(name, mut s)| {
            if let Some((text, valid)) = s.last.take() {
                let before = s.split.held_out.len() as u64;
                match place_last(&text, valid, s.documents, before, permille) {
                    LastPlace::Train => s.split.train.push(text),
                    LastPlace::Valid => s.split.held_out.push(text),
                    LastPlace::Split(cut) => {
                        s.split.train.push(text[..cut].to_string());
                        s.split.held_out.push(text[cut..].to_string());
                    }
                }
            }
            (name, s.split)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::{prepare, PrepareOptions};
    use crate::shards::TokenDataset;
    use crate::TextTokenizer;

    /// `prepare` is the oracle: the held-out texts, each encoded and followed by EOS, are the
    /// valid shards token for token, for a source whose documents the hash splits, one where
    /// the hash holds out nothing (its last document goes), and a single plain text (its tail).
    #[test]
    fn the_held_out_documents_are_the_valid_shards() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        std::fs::create_dir(&corpus).unwrap();
        let mut lines = String::new();
        let mut all = Vec::new();
        for i in 0..400 {
            let source = if i < 397 { "many" } else { "few" };
            let text = format!("entry {i}: a line of {source} text, 汉字 {}", i * 7);
            lines += &serde_json::json!({"text": text, "source": source}).to_string();
            lines.push('\n');
            all.push(text);
        }
        std::fs::write(corpus.join("mixed.jsonl"), lines).unwrap();
        let essay: String = (0..50)
            .map(|i| format!("line {i} of one essay\n"))
            .collect();
        std::fs::write(corpus.join("essay.txt"), &essay).unwrap();
        all.push(essay);
        let tok = TextTokenizer::train_bpe(all.iter(), 400).unwrap();
        let opts = PrepareOptions {
            valid_permille: 20,
            ..Default::default()
        };
        let shards = dir.path().join("shards");
        prepare(std::slice::from_ref(&corpus), &tok, &shards, &opts, |_| {}).unwrap();

        let held = held_out_documents(&[corpus], "text", 20).unwrap();
        assert_eq!(held.keys().collect::<Vec<_>>(), ["essay", "few", "many"]);
        assert!(
            held["many"].len() > 1,
            "the hash held out {:?}",
            held["many"]
        );
        assert_eq!(held["few"].len(), 1);
        assert!(
            held["essay"][0].starts_with("line 49 "),
            "{}",
            held["essay"][0]
        );
        for (source, texts) in &held {
            let valid = TokenDataset::open(&shards.join(source).join("valid")).unwrap();
            let mut want = Vec::new();
            for t in texts {
                want.extend(tok.encode(t).unwrap());
                want.push(2);
            }
            assert_eq!(valid.tokens, want, "{source}");
            let bytes: usize = texts.iter().map(String::len).sum();
            assert_eq!(valid.index.bytes(), bytes as u64, "{source}");
        }
    }
}
