//! Shards are a function of the corpus and the tokenizer alone: the same bytes whatever the
//! number of threads, and whether the fast or the generic encoder ran.

use minicpm_data::prepare::{prepare, PrepareOptions};
use minicpm_data::test_support::files_under as files;
use minicpm_data::TextTokenizer;
use std::path::{Path, PathBuf};

fn corpus(dir: &Path) -> Vec<PathBuf> {
    let mut jsonl = String::new();
    for i in 0..400 {
        let text = match i % 4 {
            0 => format!("Document {i}: the cat sat on the mat {i} times."),
            1 => format!("第{i}篇：床前明月光，疑是地上霜。"),
            2 => format!("def f{i}(x):\n\treturn x * {i}  # </s> inside\n"),
            _ => "word ".repeat(i),
        };
        let source = ["prose", "poems", "code", "words"][i % 4];
        jsonl += &serde_json::json!({"text": text, "source": source}).to_string();
        jsonl += "\n";
    }
    let a = dir.join("mixed.jsonl");
    std::fs::write(&a, jsonl).unwrap();
    let b = dir.join("notes.txt");
    std::fs::write(&b, "A plain text file, one document.\n".repeat(50)).unwrap();
    vec![a, b]
}

#[test]
fn shards_do_not_depend_on_threads_or_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = corpus(dir.path());
    let tok_path = dir.path().join("tokenizer.json");
    let training = ["the cat sat on the mat 床前明月光 def return word"; 30];
    TextTokenizer::train_bpe(training.iter(), 500)
        .unwrap()
        .save(&tok_path)
        .unwrap();
    let opts = PrepareOptions {
        valid_permille: 100,
        // Small batches and shards, so batches straddle sources and shards roll over.
        batch_docs: 13,
        batch_bytes: 700,
        shard_tokens: 2_000,
        ..Default::default()
    };
    let run = |name: &str, threads: usize, generic: bool| {
        let mut tok = TextTokenizer::load(&tok_path).unwrap();
        if generic {
            tok = tok.with_generic_encoder();
        }
        let out = dir.path().join(name);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| prepare(&inputs, &tok, &out, &opts, |_| {}))
            .unwrap();
        files(&out)
    };
    let reference = run("fast1", 1, false);
    assert!(reference.len() > 10, "{:?}", reference.keys());
    assert_eq!(run("fast3", 3, false), reference);
    assert_eq!(run("generic2", 2, true), reference);
}
