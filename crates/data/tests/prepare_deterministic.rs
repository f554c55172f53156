//! Shards are a function of the corpus and the tokenizer alone: the same bytes whatever the
//! number of threads, and whether the fast or the generic encoder ran; every source, however
//! few its documents, gets held-out text; and the ids written are the ids read back, in 32-bit
//! shards above 65,536 tokens.

use minicpm_data::prepare::{is_valid_doc, prepare, PrepareOptions};
use minicpm_data::shards::{ShardWriter, TokenDataset};
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

/// Tokens of each document of a split, cut at the end-of-text tokens.
fn documents(dir: &Path, eos: u32) -> Vec<Vec<u32>> {
    let data = TokenDataset::open(dir).unwrap();
    let mut docs: Vec<Vec<u32>> = data
        .tokens
        .split(|&t| t == eos)
        .map(<[u32]>::to_vec)
        .collect();
    assert_eq!(docs.pop(), Some(vec![]), "every document ends in EOS");
    docs
}

#[test]
fn every_source_gets_held_out_text_however_few_its_documents() {
    let dir = tempfile::tempdir().unwrap();
    // 38 plays, as the demo's Shakespeare has: at the default 10 per thousand the hash sends
    // none of them to validation.
    let plays: Vec<String> = (0..38)
        .map(|i| format!("Play {i}. Enter a king; exit, pursued by bear number {i}."))
        .collect();
    assert!((0..38).all(|n| !is_valid_doc("shakespeare", n, 10)));
    // 300 notes, of which the hash sends a few to validation on its own.
    let notes: Vec<String> = (0..300).map(|i| format!("note {i}: buy milk")).collect();
    let hashed: Vec<usize> = (0..300)
        .filter(|&n| is_valid_doc("notes", n as u64, 10))
        .collect();
    assert!(!hashed.is_empty());
    let mut jsonl = String::new();
    for (source, docs) in [("shakespeare", &plays), ("notes", &notes)] {
        for text in docs {
            jsonl += &serde_json::json!({"text": text, "source": source}).to_string();
            jsonl += "\n";
        }
    }
    let corpus = dir.path().join("corpus.jsonl");
    std::fs::write(&corpus, jsonl).unwrap();
    // And a book that is one document: a plain text file.
    let book: String = (0..400)
        .map(|i| format!("Line {i} of the only chapter.\n"))
        .collect();
    let book_file = dir.path().join("book.txt");
    std::fs::write(&book_file, &book).unwrap();

    let training =
        ["Play Enter a king exit pursued by bear note buy milk Line of the only chapter"; 20];
    let tok = TextTokenizer::train_bpe(training.iter(), 400).unwrap();
    let eos = tok.token_id("</s>").unwrap();
    let enc = |text: &str| tok.encode(text).unwrap();
    let opts = PrepareOptions {
        batch_docs: 16,
        ..Default::default()
    };
    let inputs = [corpus.clone(), book_file.clone()];
    let out = dir.path().join("out");
    let summary = prepare(&inputs, &tok, &out, &opts, |_| {}).unwrap();
    for (source, s) in &summary {
        assert!(s.valid_tokens > 0 && s.train_tokens > 0, "{source}: {s:?}");
    }

    // Few documents: the last one is held out, the others train, in order.
    let split = |source: &str, name: &str| documents(&out.join(source).join(name), eos);
    assert_eq!(summary["shakespeare"].valid_documents, 1);
    assert_eq!(split("shakespeare", "valid"), [enc(&plays[37])]);
    let want: Vec<Vec<u32>> = plays[..37].iter().map(|p| enc(p)).collect();
    assert_eq!(split("shakespeare", "train"), want);

    // Enough documents: exactly the hash's choice, nothing added.
    let want: Vec<Vec<u32>> = hashed.iter().map(|&n| enc(&notes[n])).collect();
    assert_eq!(split("notes", "valid"), want);
    assert_eq!(summary["notes"].valid_documents, hashed.len() as u64);

    // One document: its last lines, from the line holding the first of its last 1% of bytes.
    let s = &summary["book"];
    assert_eq!((s.documents, s.valid_documents), (1, 1));
    let valid = TokenDataset::open(&out.join("book/valid")).unwrap();
    let tail_bytes = valid.index.bytes() as usize;
    let cut = book.len() - tail_bytes;
    assert!(book[..cut].ends_with('\n'), "cut inside a line at {cut}");
    let (share, line) = (
        book.len().div_ceil(100),
        "Line 399 of the only chapter.\n".len(),
    );
    assert!(
        (share..share + line).contains(&tail_bytes),
        "{tail_bytes} of {} bytes held out",
        book.len()
    );
    assert_eq!(split("book", "valid"), [enc(&book[cut..])]);
    assert_eq!(split("book", "train"), [enc(&book[..cut])]);
    let train = TokenDataset::open(&out.join("book/train")).unwrap();
    assert_eq!(train.index.bytes() as usize + tail_bytes, book.len());

    // The same split on another run.
    let again = dir.path().join("again");
    prepare(&inputs, &tok, &again, &opts, |_| {}).unwrap();
    assert_eq!(files(&again), files(&out));

    // Shards prepared before this guarantee, with an empty valid split, are prepared again;
    // complete ones are kept.
    let stale = out.join("shakespeare/valid");
    ShardWriter::create(&stale, tok.vocab_size(), eos, 1 << 20)
        .unwrap()
        .finish()
        .unwrap();
    let resumed = prepare(&inputs, &tok, &out, &opts, |_| {}).unwrap();
    assert!(!resumed["shakespeare"].resumed);
    assert_eq!(resumed["shakespeare"].valid_documents, 1);
    assert!(resumed["notes"].resumed && resumed["book"].resumed);
    assert_eq!(files(&out), files(&again));
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
