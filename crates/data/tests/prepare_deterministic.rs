//! Shards are a function of the corpus and the tokenizer alone: the same bytes whatever the
//! number of threads, and whether the fast or the generic encoder ran; and the ids written are
//! the ids read back, in 32-bit shards above 65,536 tokens.

use minicpm_data::prepare::{prepare, PrepareOptions};
use minicpm_data::TextTokenizer;
use std::collections::BTreeMap;
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

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
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

/// MiniCPM's 122,753-token vocabulary needs 32-bit shards: ids above 65,535 must come back
/// unchanged, and at exactly 65,536 tokens 16 bits still suffice.
#[test]
fn ids_above_65535_survive_32_bit_shards() {
    use minicpm_data::shards::{ShardWriter, TokenWidth};
    use minicpm_data::TokenDataset;

    let dir = tempfile::tempdir().unwrap();
    let (vocab, eos) = (122_753, 2);
    let docs: Vec<Vec<u32>> = vec![
        vec![0, 65_535, 65_536, 65_537],
        vec![73_440, 100_000, 122_752],
        (0..40).map(|i| i * 3_001 % vocab as u32).collect(),
    ];
    // Four tokens per shard at most: several shard files.
    let mut w = ShardWriter::create(dir.path(), vocab, eos, 4).unwrap();
    for d in &docs {
        w.push_document(d, 10).unwrap();
    }
    let index = w.finish().unwrap();
    assert_eq!(index.width, TokenWidth::U32);
    assert!(index.shards.len() >= 3, "{:?}", index.shards);
    let expected: Vec<u32> = docs
        .iter()
        .flat_map(|d| d.iter().copied().chain([eos]))
        .collect();

    // The files themselves: little-endian 32-bit words, read here without the crate's reader.
    let mut raw = Vec::new();
    for s in &index.shards {
        let bytes = std::fs::read(dir.path().join(&s.file)).unwrap();
        assert_eq!(bytes.len() as u64, 4 * s.tokens, "{}", s.file);
        raw.extend(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap())),
        );
    }
    assert_eq!(raw, expected);
    let ds = TokenDataset::open(dir.path()).unwrap();
    assert_eq!(ds.tokens, expected);
    assert_eq!(ds.index.vocab_size, vocab);

    // The boundary: 65,536 ids fit 16 bits, the largest id comes back, and the file is half the size.
    let small = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::create(small.path(), 65_536, eos, 1 << 20).unwrap();
    w.push_document(&[65_535, 0, 40_000], 3).unwrap();
    let index = w.finish().unwrap();
    assert_eq!(index.width, TokenWidth::U16);
    let bytes = std::fs::read(small.path().join(&index.shards[0].file)).unwrap();
    assert_eq!(bytes.len(), 2 * 4);
    assert_eq!(
        TokenDataset::open(small.path()).unwrap().tokens,
        vec![65_535, 0, 40_000, eos]
    );
    assert_eq!(
        ShardWriter::create(small.path(), 65_537, eos, 8)
            .unwrap()
            .finish()
            .unwrap()
            .width,
        TokenWidth::U32
    );

    // An id the vocabulary does not have is refused when written, not wrapped into 16 bits
    // (70,000 would come back as 4,464 and pass every later check).
    let bad = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::create(bad.path(), 65_536, eos, 1 << 20).unwrap();
    let e = w.push_document(&[5, 70_000], 2).unwrap_err().to_string();
    assert!(e.contains("70000") && e.contains("65536"), "{e}");
}
