//! The fast encoder must give exactly the HF tokenizer's ids: compared here on awkward text,
//! curated and random, with a tokenizer loaded once with and once without it.

use minicpm_data::TextTokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

const TRAINING_TEXT: &[&str] = &[
    "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst.",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。春眠不觉晓，处处闻啼鸟。",
    "def main(argv):\n    for i in range(10):\n\t\tprint(i, argv[i])  # tabs\n    return 0\n",
    "Prices rose 12.5% in 2023 to $1,234,567; see table 3 on page 42.",
];

/// Saves a tokenizer trained on `TRAINING_TEXT`; returns (fast, generic) loads of it.
fn trained_pair(dir: &Path) -> (TextTokenizer, TextTokenizer) {
    let corpus: Vec<String> = TRAINING_TEXT.iter().map(|t| t.repeat(20)).collect();
    let path = dir.join("tokenizer.json");
    TextTokenizer::train_bpe(corpus.iter(), 700)
        .unwrap()
        .save(&path)
        .unwrap();
    let fast = TextTokenizer::load(&path).unwrap();
    let generic = TextTokenizer::load(&path).unwrap().with_generic_encoder();
    assert!(fast.uses_fast_encoder());
    assert!(!generic.uses_fast_encoder());
    (fast, generic)
}

fn assert_same_ids(fast: &TextTokenizer, generic: &TextTokenizer, texts: &[String]) {
    for text in texts {
        assert_eq!(
            fast.encode(text).unwrap(),
            generic.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(
        fast.encode_batch(&refs).unwrap(),
        generic.encode_batch(&refs).unwrap()
    );
}

#[test]
fn curated_awkward_text_encodes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (fast, generic) = trained_pair(dir.path());
    let mut texts: Vec<String> = TRAINING_TEXT.iter().map(|t| t.to_string()).collect();
    texts.extend(
        [
            "",
            " ",
            "   ",
            "\n",
            "\t",
            "  leading and trailing  ",
            "multiple   spaces    between",
            "line one\nline two\r\nline three\n\n",
            "    indented = 4\n\tindented_by_tab()\n\t  mixed\t \t",
            "中文没有空格也能分词吗",
            "中文 with English 和 digits 123",
            "2024-05-31 12:34:56.789 +0800",
            "0123456789",
            "½ ² ٣ 〇 Ⅻ ①②",
            "emoji 🦀🦀 👩‍👩‍👧 ✓",
            "control \u{0}\u{1}\u{7f}\u{1b}[0m bell\u{7}",
            "zero\u{200b}width \u{feff}bom",
            "combining e\u{301} and precomposed é",
            "▁literal▁markers▁ ▁",
            "▁",
            "<s>",
            "</s>",
            "<unk>",
            "text</s>more text<s>",
            "<</s>> </ s> <s </s",
            " </s> ",
            "<0x41> is not a byte token here",
            "unseen: ᚠᛇᚻ ꦲꦏ 𝕳𝖊𝖑𝖑𝖔",
        ]
        .map(String::from),
    );
    texts.push("word ".repeat(2000));
    texts.push("长".repeat(3000));
    assert_same_ids(&fast, &generic, &texts);
}

#[test]
fn random_text_encodes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (fast, generic) = trained_pair(dir.path());
    // Fragments that exercise every rule: word starts, digits, specials, byte fallback.
    let fragments = [
        "the", "fox", "a", "s", " ", "  ", "▁", "\t", "\n", "\r", "1", "9", "½", "٣", "明月", "光",
        "，", "🦀", "é", "e\u{301}", "<s>", "</s>", "<unk>", "<", "/", ">", "\u{0}", "\u{7f}",
        "\u{200b}", "def", "(", ")", ".",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let texts: Vec<String> = (0..3000)
        .map(|_| {
            let n = rng.random_range(0..40);
            (0..n)
                .map(|_| fragments[rng.random_range(0..fragments.len())])
                .collect()
        })
        .collect();
    assert_same_ids(&fast, &generic, &texts);
}

#[test]
fn other_tokenizer_shapes_keep_the_generic_path() {
    let dir = tempfile::tempdir().unwrap();
    let (fast, _) = trained_pair(dir.path());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("tokenizer.json")).unwrap())
            .unwrap();
    type Change = fn(&mut serde_json::Value);
    let variants: [(&str, Change); 4] = [
        ("digits kept together", |j| {
            j["pre_tokenizer"]["pretokenizers"][1]["individual_digits"] = false.into()
        }),
        ("no normaliser", |j| {
            j["normalizer"] = serde_json::Value::Null
        }),
        ("BPE dropout", |j| j["model"]["dropout"] = 0.5.into()),
        ("a normalised added token", |j| {
            j["added_tokens"][2]["normalized"] = true.into()
        }),
    ];
    let text = "Prices rose 12.5% in 2023</s> 床前明月光";
    for (what, change) in variants {
        let mut changed = json.clone();
        change(&mut changed);
        let path = dir.path().join("variant.json");
        std::fs::write(&path, changed.to_string()).unwrap();
        let tok = TextTokenizer::load(&path).unwrap();
        assert!(!tok.uses_fast_encoder(), "{what}");
        // Still encodes, through the HF pipeline.
        assert!(!tok.encode(text).unwrap().is_empty(), "{what}");
    }
    assert!(!fast.encode(text).unwrap().is_empty());
}
