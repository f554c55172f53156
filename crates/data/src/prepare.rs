//! Corpus -> token shards. Documents (see `inputs` for the formats read) are grouped into
//! sources, tokenised in parallel batches and written as shards per source: `out/<source>/train`
//! and `out/<source>/valid`. The split is by document, decided by a hash of (source, document
//! number), so it is the same on every run and never cuts a document.
//!
//! Every source gets held-out text, however few its documents: when the hash sends none of a
//! source's documents to validation, its last document goes there instead, and a source of a
//! single document (a plain text file) holds out the tail of that document, from a line start.
//! Both rules depend only on the corpus, so the split stays deterministic.
//!
//! Memory stays bounded: documents stream through batches of bounded size. A source whose shards
//! are complete (index written) is skipped, so an interrupted preparation resumes.

use crate::error::DataError;
use crate::inputs::{expand_inputs, Doc, Skipped};
use crate::read_ahead::{read_ahead, BatchLimits, FromReader};
use crate::shards::{DatasetIndex, ShardWriter, INDEX_FILE};
use crate::tokenizer::TextTokenizer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

pub struct PrepareOptions {
    /// JSONL field or Parquet column holding the text.
    pub text_field: String,
    /// Documents per thousand that go to validation (at least one per source unless 0; see the
    /// module documentation).
    pub valid_permille: u64,
    /// Documents tokenised per parallel batch, at most.
    pub batch_docs: usize,
    /// Bytes of text per batch, at most (a batch holds at least one document, however long).
    pub batch_bytes: usize,
    pub shard_tokens: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            text_field: "text".into(),
            valid_permille: 10,
            batch_docs: 512,
            batch_bytes: 8 << 20,
            shard_tokens: 1 << 24,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceSummary {
    pub documents: u64,
    pub train_tokens: u64,
    pub valid_tokens: u64,
    /// Documents written to validation; a source of one document counts its held-out tail.
    pub valid_documents: u64,
    pub bytes: u64,
    pub skipped_invalid_utf8: u64,
    /// Parquet rows whose text is null.
    pub skipped_null_text: u64,
    pub resumed: bool,
}

/// Whether document `n` of `source` goes to validation.
pub fn is_valid_doc(source: &str, n: u64, permille: u64) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source.bytes().chain(n.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 1000 < permille
}

/// Tokenises `inputs` into `out/<source>/{train,valid}`; returns a summary per source.
///
/// Documents are read one batch ahead on a thread of their own (`read_ahead`) and tokenised on
/// rayon's pool; writing stays in document order, so shards do not depend on thread timing.
pub fn prepare(
    inputs: &[PathBuf],
    tok: &TextTokenizer,
    out: &Path,
    opts: &PrepareOptions,
    mut progress: impl FnMut(u64),
) -> Result<BTreeMap<String, SourceSummary>, DataError> {
    let files = expand_inputs(inputs)?;
    let mut sources = Sources {
        out,
        vocab: tok.vocab_size(),
        eos: tok.token_id("</s>").unwrap_or(2),
        opts,
        writers: BTreeMap::new(),
        done: BTreeMap::new(),
        skipped: BTreeMap::new(),
    };
    let limits = BatchLimits {
        docs: opts.batch_docs,
        bytes: opts.batch_bytes,
    };
    std::thread::scope(|scope| {
        let (batches, reader) = read_ahead(scope, &files, &opts.text_field, limits);
        let written = write_batches(batches, tok, &mut sources, &mut progress);
        let read = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A failed write stops the reader, whose own error then only says so.
        written.and(read)
    })?;
    sources.finish(tok)
}

/// Tokenises and writes each batch as it arrives, until the reader is done.
fn write_batches(
    batches: Receiver<FromReader>,
    tok: &TextTokenizer,
    sources: &mut Sources,
    progress: &mut impl FnMut(u64),
) -> Result<(), DataError> {
    for message in batches {
        let mut docs = match message {
            FromReader::Docs(docs) => docs,
            FromReader::Skipped { source, skipped } => {
                let total = sources.skipped.entry(source).or_default();
                total.invalid_utf8 += skipped.invalid_utf8;
                total.null_text += skipped.null_text;
                continue;
            }
        };
        let mut kept = Vec::with_capacity(docs.len());
        for doc in docs.drain(..) {
            if sources.wants(&doc.source)? {
                kept.push(doc);
            }
        }
        let texts: Vec<&str> = kept.iter().map(|d| d.text.as_str()).collect();
        let encoded = tok.encode_batch(&texts)?;
        let mut bytes = 0;
        for (doc, ids) in kept.into_iter().zip(encoded) {
            bytes += doc.text.len() as u64;
            sources.write(doc, ids)?;
        }
        progress(bytes);
    }
    Ok(())
}

struct SourceWriter {
    train: ShardWriter,
    valid: ShardWriter,
    /// The latest document, its tokens and whether the hash sends it to validation, written
    /// only when the next one arrives: should the source end with nothing held out, this one
    /// (or, when it is the only one, its tail) is held out instead.
    held: Option<(Doc, Vec<u32>, bool)>,
    summary: SourceSummary,
}

impl SourceWriter {
    fn push_train(&mut self, text: &str, ids: &[u32]) -> Result<(), DataError> {
        self.summary.train_tokens += ids.len() as u64 + 1;
        self.train.push_document(ids, text.len() as u64)
    }

    fn push_valid(&mut self, text: &str, ids: &[u32]) -> Result<(), DataError> {
        self.summary.valid_tokens += ids.len() as u64 + 1;
        self.summary.valid_documents += 1;
        self.valid.push_document(ids, text.len() as u64)
    }

    /// Writes a document where the hash sends it.
    fn push(&mut self, doc: &Doc, ids: &[u32], valid: bool) -> Result<(), DataError> {
        if valid {
            self.push_valid(&doc.text, ids)
        } else {
            self.push_train(&doc.text, ids)
        }
    }

    /// Writes the held (last) document, now that the source is complete, where [`place_last`]
    /// says.
    fn place_held(&mut self, tok: &TextTokenizer, permille: u64) -> Result<(), DataError> {
        let Some((doc, ids, valid)) = self.held.take() else {
            return Ok(());
        };
        let s = &self.summary;
        match place_last(&doc.text, valid, s.documents, s.valid_documents, permille) {
            LastPlace::Train => self.push_train(&doc.text, &ids),
            LastPlace::Valid => self.push_valid(&doc.text, &ids),
            LastPlace::Split(cut) => {
                let (head, tail) = doc.text.split_at(cut);
                let head_ids = tok.encode(head)?;
                let tail_ids = tok.encode(tail)?;
                self.push_train(head, &head_ids)?;
                self.push_valid(tail, &tail_ids)
            }
        }
    }
}

/// Where a source's last document goes once the source is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LastPlace {
    Train,
    Valid,
    /// Its head trains and its tail, from this byte, is held out.
    Split(usize),
}

/// The place of the last of a source's `documents`, which the hash sends to validation or not
/// (`hashed_valid`), after `valid_before` of the others went there: where the hash says, unless
/// nothing else was held out; then the whole document, or, when it is the source's only one,
/// its tail (too short to split: where the hash says, leaving one split empty).
pub(crate) fn place_last(
    text: &str,
    hashed_valid: bool,
    documents: u64,
    valid_before: u64,
    permille: u64,
) -> LastPlace {
    let as_hashed = match hashed_valid {
        true => LastPlace::Valid,
        false => LastPlace::Train,
    };
    if permille == 0 || valid_before > 0 {
        return as_hashed;
    }
    if documents > 1 {
        return LastPlace::Valid;
    }
    held_out_tail(text, permille).map_or(as_hashed, LastPlace::Split)
}

/// Where a single document is cut so that at least `permille` of its bytes (and at least one
/// character) are held out: the start of the line holding that share's first byte, or that
/// byte itself when it is on the first line. `None` when one side would hold no text.
fn held_out_tail(text: &str, permille: u64) -> Option<usize> {
    let share = (text.len() as u64 * permille.min(1000))
        .div_ceil(1000)
        .max(1) as usize;
    let mut target = text.len().saturating_sub(share);
    while !text.is_char_boundary(target) {
        target -= 1;
    }
    let cut = text[..target].rfind('\n').map_or(target, |k| k + 1);
    let (head, tail) = text.split_at(cut);
    (!head.trim().is_empty() && !tail.trim().is_empty()).then_some(cut)
}

/// The sources met so far: being written, or complete from an earlier run.
struct Sources<'a> {
    out: &'a Path,
    vocab: usize,
    eos: u32,
    opts: &'a PrepareOptions,
    writers: BTreeMap<String, SourceWriter>,
    done: BTreeMap<String, SourceSummary>,
    skipped: BTreeMap<String, Skipped>,
}

impl Sources<'_> {
    /// Whether documents of `source` are to be written: not when an earlier run completed it.
    /// Makes its writers when it is new.
    fn wants(&mut self, source: &str) -> Result<bool, DataError> {
        if self.writers.contains_key(source) {
            return Ok(true);
        }
        if self.done.contains_key(source) {
            return Ok(false);
        }
        let dir = self.out.join(source);
        // A source prepared before every source was given held-out text is prepared again.
        let has_valid = || {
            self.opts.valid_permille == 0
                || DatasetIndex::read(&dir.join("valid")).is_ok_and(|i| i.tokens() > 0)
        };
        if dir.join("train").join(INDEX_FILE).exists()
            && dir.join("valid").join(INDEX_FILE).exists()
            && has_valid()
        {
            let resumed = SourceSummary {
                resumed: true,
                ..Default::default()
            };
            self.done.insert(source.to_string(), resumed);
            return Ok(false);
        }
        let shard = |split: &str| {
            ShardWriter::create(
                &dir.join(split),
                self.vocab,
                self.eos,
                self.opts.shard_tokens,
            )
        };
        let w = SourceWriter {
            train: shard("train")?,
            valid: shard("valid")?,
            held: None,
            summary: SourceSummary::default(),
        };
        self.writers.insert(source.to_string(), w);
        Ok(true)
    }

    /// Writes one document of a source `wants` accepted, to its train or valid split; each
    /// waits in `held` until the next one comes.
    fn write(&mut self, doc: Doc, ids: Vec<u32>) -> Result<(), DataError> {
        let w = self
            .writers
            .get_mut(&doc.source)
            .expect("writers are made when a source is first wanted");
        let n = w.summary.documents;
        w.summary.documents += 1;
        w.summary.bytes += doc.text.len() as u64;
        let valid = is_valid_doc(&doc.source, n, self.opts.valid_permille);
        match w.held.replace((doc, ids, valid)) {
            Some((previous, ids, valid)) => w.push(&previous, &ids, valid),
            None => Ok(()),
        }
    }

    /// Places each source's held document, then writes the indexes, last: a source counts as
    /// prepared only once both exist.
    fn finish(self, tok: &TextTokenizer) -> Result<BTreeMap<String, SourceSummary>, DataError> {
        let mut done = self.done;
        for (name, mut w) in self.writers {
            if w.summary.documents == 0 {
                return Err(DataError::Invalid(format!(
                    "source `{name}` has no documents"
                )));
            }
            w.place_held(tok, self.opts.valid_permille)?;
            let mut summary = w.summary;
            w.valid.finish()?;
            w.train.finish()?;
            let skipped = self.skipped.get(&name).copied().unwrap_or_default();
            summary.skipped_invalid_utf8 = skipped.invalid_utf8;
            summary.skipped_null_text = skipped.null_text;
            done.insert(name, summary);
        }
        if done.is_empty() {
            return Err(DataError::Invalid(
                "the corpus is empty: no documents with text".into(),
            ));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::TokenDataset;

    #[test]
    fn shards_count_tokens_and_bytes_and_the_split_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("corpus.jsonl");
        let docs: Vec<String> = (0..300)
            .map(|i| format!("document {i}: the cat sat on the mat, then 汉字 {i}"))
            .collect();
        let mut text = String::new();
        for (i, d) in docs.iter().enumerate() {
            let source = if i % 3 == 0 { "code" } else { "prose" };
            text += &serde_json::json!({"text": d, "source": source}).to_string();
            text += "\n";
        }
        std::fs::write(&input, text).unwrap();
        let tok = TextTokenizer::train_bpe(docs.iter(), 400).unwrap();
        let opts = PrepareOptions {
            valid_permille: 100,
            batch_docs: 7,
            ..Default::default()
        };
        let out = dir.path().join("out");
        let summary = prepare(&[input.clone()], &tok, &out, &opts, |_| {}).unwrap();
        assert_eq!(summary.len(), 2);
        let mut total_bytes = 0;
        for (source, s) in &summary {
            let train = TokenDataset::open(&out.join(source).join("train")).unwrap();
            let valid = TokenDataset::open(&out.join(source).join("valid")).unwrap();
            assert_eq!(train.tokens.len() as u64, s.train_tokens);
            assert_eq!(valid.tokens.len() as u64, s.valid_tokens);
            assert_eq!(train.index.bytes() + valid.index.bytes(), s.bytes);
            total_bytes += s.bytes;
            // Token counts are the tokenizer's, document by document, plus one EOS each.
            let mine: Vec<&String> = docs
                .iter()
                .enumerate()
                .filter(|(i, _)| (i % 3 == 0) == (source == "code"))
                .map(|(_, d)| d)
                .collect();
            let want: u64 = mine
                .iter()
                .map(|d| tok.encode(d).unwrap().len() as u64 + 1)
                .sum();
            assert_eq!(s.train_tokens + s.valid_tokens, want, "{source}");
            assert!(s.valid_tokens > 0 && s.train_tokens > 0);
        }
        assert_eq!(
            total_bytes,
            docs.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        // Same split on a second run into another directory.
        let out2 = dir.path().join("out2");
        prepare(&[input], &tok, &out2, &opts, |_| {}).unwrap();
        for source in ["code", "prose"] {
            let a = std::fs::read(out.join(source).join("valid/shard-00000.bin")).unwrap();
            let b = std::fs::read(out2.join(source).join("valid/shard-00000.bin")).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_single_document_holds_out_its_tail_from_a_line_start() {
        // The last byte is on the last line: that whole line is held out.
        assert_eq!(held_out_tail("a\nb\nc\n", 10), Some(4));
        // Half of it: from the line holding byte 3 (of 0..6), that is from "b".
        assert_eq!(held_out_tail("a\nb\nc\n", 500), Some(2));
        // One line: cut at the share, on a character boundary.
        assert_eq!(held_out_tail("汉字汉字", 10), Some(9));
        // Nothing to split, or only blank text on one side.
        assert_eq!(held_out_tail("x", 10), None);
        assert_eq!(held_out_tail("   \nword", 10), None);
    }

    #[test]
    fn a_failed_write_stops_the_reader_and_is_the_error_reported() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("many.jsonl");
        let line = serde_json::json!({"text": "a short document"}).to_string() + "\n";
        std::fs::write(&input, line.repeat(1000)).unwrap();
        let tok = TextTokenizer::train_bpe(["a short document"; 20].iter(), 400).unwrap();
        // The output directory cannot be made: a file is in the way.
        let out = dir.path().join("taken");
        std::fs::write(&out, "not a directory").unwrap();
        let opts = PrepareOptions {
            batch_docs: 1,
            ..Default::default()
        };
        let e = prepare(&[input], &tok, &out, &opts, |_| {})
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("taken"), "{e}");
        assert!(!e.contains("consumer"), "{e}");
    }

    #[test]
    fn bad_inputs_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let tok = TextTokenizer::train_bpe(["some text to train on"; 20].iter(), 400).unwrap();
        let opts = PrepareOptions::default();
        let out = dir.path().join("out");
        let e = prepare(
            &[dir.path().join("missing.jsonl")],
            &tok,
            &out,
            &opts,
            |_| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("missing.jsonl"), "{e}");
        let f = dir.path().join("bad.jsonl");
        std::fs::write(&f, "{\"text\": \"fine\"}\n{\"body\": \"no text field\"}\n").unwrap();
        let e = prepare(&[f], &tok, &out, &opts, |_| {})
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bad.jsonl:2") && e.contains("`text`"), "{e}");
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "   \n").unwrap();
        let e = prepare(&[empty], &tok, &out, &opts, |_| {})
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        // Invalid UTF-8 is skipped and counted.
        let mixed = dir.path().join("mixed.jsonl");
        let mut bytes = b"{\"text\": \"good\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"text\": \"\xff\xfe\"}\n");
        std::fs::write(&mixed, bytes).unwrap();
        let s = prepare(&[mixed], &tok, &out, &opts, |_| {}).unwrap();
        assert_eq!(s["mixed"].skipped_invalid_utf8, 1);
        assert_eq!(s["mixed"].documents, 1);
    }
}
