//! Parquet input for `prepare`: files written here with the parquet crate's own writer, read back
//! through `prepare` and compared with tokenising the same texts directly.

use minicpm_data::inputs::read_file;
use minicpm_data::prepare::{prepare, PrepareOptions};
use minicpm_data::shards::INDEX_FILE;
use minicpm_data::TextTokenizer;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes `groups` as row groups of an optional string column `column` (None is a null row).
fn write_texts(path: &Path, column: &str, compression: Compression, groups: &[Vec<Option<&str>>]) {
    let schema = format!("message corpus {{ optional binary {column} (STRING); }}");
    write_groups(
        path,
        &schema,
        compression,
        |writer, group| {
            let rows = &groups[group];
            let values: Vec<ByteArray> =
                rows.iter().flatten().map(|t| ByteArray::from(*t)).collect();
            let levels: Vec<i16> = rows.iter().map(|t| t.is_some() as i16).collect();
            writer
                .typed::<ByteArrayType>()
                .write_batch(&values, Some(&levels), None)
                .unwrap();
        },
        groups.len(),
    );
}

fn write_groups(
    path: &Path,
    schema: &str,
    compression: Compression,
    mut fill_column: impl FnMut(&mut parquet::file::writer::SerializedColumnWriter<'_>, usize),
    groups: usize,
) {
    let schema = Arc::new(parse_message_type(schema).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .build(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    for group in 0..groups {
        let mut row_group = writer.next_row_group().unwrap();
        while let Some(mut column) = row_group.next_column().unwrap() {
            fill_column(&mut column, group);
            column.close().unwrap();
        }
        row_group.close().unwrap();
    }
    writer.close().unwrap();
}

fn sample_groups() -> Vec<Vec<Option<&'static str>>> {
    vec![
        vec![
            Some("The first document, in plain English."),
            Some("汉字和标点，没有空格。"),
        ],
        vec![
            None,
            Some("  code:\n\tdef f(x):\n\t\treturn x ** 2  # 🦀 ✓"),
            Some("   "), // whitespace only: not a document, as in JSONL
        ],
        vec![Some("ümlauts, Ω≈ç and digits 20240531")],
    ]
}

fn tokenizer() -> TextTokenizer {
    let corpus: Vec<String> = sample_groups()
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| t.repeat(5))
        .collect();
    TextTokenizer::train_bpe(corpus.iter(), 400).unwrap()
}

fn documents(path: &Path, column: &str) -> Vec<String> {
    let mut docs = Vec::new();
    read_file(path, column, &mut |d| {
        docs.push(d.text);
        Ok(())
    })
    .unwrap();
    docs
}

#[test]
fn row_groups_stream_into_shards_with_the_tokenizers_counts() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let expected: Vec<&str> = sample_groups()
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| !t.trim().is_empty())
        .collect();
    for (name, compression) in [
        ("snappy", Compression::SNAPPY),
        ("zstd", Compression::ZSTD(Default::default())),
        ("gzip", Compression::GZIP(Default::default())),
        ("plain", Compression::UNCOMPRESSED),
    ] {
        let input = dir.path().join(format!("{name}.parquet"));
        write_texts(&input, "body", compression, &sample_groups());
        assert_eq!(
            SerializedFileReader::new(std::fs::File::open(&input).unwrap())
                .unwrap()
                .num_row_groups(),
            3
        );
        assert_eq!(documents(&input, "body"), expected, "{name}");

        let opts = PrepareOptions {
            text_field: "body".into(),
            valid_permille: 0,
            ..Default::default()
        };
        let out = dir.path().join("out");
        let summary = prepare(&[input], &tok, &out, &opts, |_| {}).unwrap();
        let s = &summary[name];
        assert_eq!(s.documents, expected.len() as u64, "{name}");
        assert_eq!(s.skipped_null_text, 1, "{name}");
        assert_eq!(
            s.bytes,
            expected.iter().map(|t| t.len() as u64).sum::<u64>()
        );
        let want: u64 = expected
            .iter()
            .map(|t| tok.encode(t).unwrap().len() as u64 + 1)
            .sum();
        assert_eq!(s.train_tokens, want, "{name}");
        assert!(out.join(name).join("train").join(INDEX_FILE).exists());
    }
}

#[test]
fn a_required_text_column_has_no_nulls_to_skip() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("required.parquet");
    let groups = [vec!["first", "second"], vec!["third"]];
    write_groups(
        &f,
        "message corpus { required binary text (STRING); }",
        Compression::SNAPPY,
        |w, group| {
            let values: Vec<ByteArray> =
                groups[group].iter().map(|t| ByteArray::from(*t)).collect();
            w.typed::<ByteArrayType>()
                .write_batch(&values, None, None)
                .unwrap();
        },
        groups.len(),
    );
    assert_eq!(documents(&f, "text"), ["first", "second", "third"]);
}

/// Runs `prepare` on `input`, expecting an error; checks that it is one line naming the file and
/// that nothing under `out` looks complete.
fn prepare_error(input: &Path, column: &str) -> String {
    let tok = tokenizer();
    let out = input.with_extension("out");
    let opts = PrepareOptions {
        text_field: column.into(),
        ..Default::default()
    };
    let e = prepare(&[input.to_path_buf()], &tok, &out, &opts, |_| {})
        .expect_err("prepare should fail")
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    let name = input.file_name().unwrap().to_string_lossy();
    assert!(e.contains(&*name), "{e}");
    assert!(!any_index_under(&out), "{e}");
    e
}

fn any_index_under(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p: PathBuf = e.path();
        p.file_name().is_some_and(|n| n == INDEX_FILE) || (p.is_dir() && any_index_under(&p))
    })
}

#[test]
fn a_missing_or_non_string_column_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("other.parquet");
    write_texts(&f, "content", Compression::SNAPPY, &sample_groups());
    let e = prepare_error(&f, "text");
    assert!(e.contains("no column `text`"), "{e}");

    let f = dir.path().join("numbers.parquet");
    write_groups(
        &f,
        "message corpus { required int64 text; }",
        Compression::SNAPPY,
        |w, _| {
            w.typed::<Int64Type>()
                .write_batch(&[1, 2, 3], None, None)
                .unwrap();
        },
        1,
    );
    let e = prepare_error(&f, "text");
    assert!(
        e.contains("column `text` is not a string column") && e.contains("INT64"),
        "{e}"
    );

    let f = dir.path().join("bytes.parquet");
    write_groups(
        &f,
        "message corpus { required binary text; }",
        Compression::SNAPPY,
        |w, _| {
            let values = [ByteArray::from("not annotated as text")];
            w.typed::<ByteArrayType>()
                .write_batch(&values, None, None)
                .unwrap();
        },
        1,
    );
    let e = prepare_error(&f, "text");
    assert!(
        e.contains("column `text` is not a string column (it is binary)"),
        "{e}"
    );
}

#[test]
fn a_damaged_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.parquet");
    let many: Vec<Vec<Option<String>>> = (0..4)
        .map(|g| {
            (0..200)
                .map(|i| {
                    Some(format!(
                        "row group {g}, document {i}: some words to compress"
                    ))
                })
                .collect()
        })
        .collect();
    let groups: Vec<Vec<Option<&str>>> = many
        .iter()
        .map(|g| g.iter().map(|t| t.as_deref()).collect())
        .collect();
    write_texts(&good, "text", Compression::SNAPPY, &groups);
    let bytes = std::fs::read(&good).unwrap();

    // Cut short: the footer is gone.
    for keep in [0, 3, bytes.len() / 2, bytes.len() - 1] {
        let f = dir.path().join(format!("cut{keep}.parquet"));
        std::fs::write(&f, &bytes[..keep]).unwrap();
        prepare_error(&f, "text");
    }

    // Garbage in the last row group's page header, footer intact: the first row groups are read
    // (and may reach shard files) before the damage is found, yet no index is written.
    let reader = SerializedFileReader::new(std::fs::File::open(&good).unwrap()).unwrap();
    let (last_group, _) = reader.metadata().row_group(3).column(0).byte_range();
    let f = dir.path().join("damaged.parquet");
    std::fs::write(&f, xor_window(&bytes, last_group as usize)).unwrap();
    prepare_error(&f, "text");

    // Damage anywhere else never panics. Not all of it is detectable (Parquet has no checksum
    // unless the writer adds one: garbled text can read as other text), but whatever is
    // detected is a clean error.
    let tok = tokenizer();
    for (n, at) in (0..bytes.len() - 16).step_by(bytes.len() / 64).enumerate() {
        let f = dir.path().join(format!("garbled{n}.parquet"));
        std::fs::write(&f, xor_window(&bytes, at)).unwrap();
        let out = dir.path().join(format!("garbled{n}.out"));
        let opts = PrepareOptions::default();
        if let Err(e) = prepare(&[f], &tok, &out, &opts, |_| {}) {
            let e = e.to_string();
            assert!(
                e.contains(&format!("garbled{n}.parquet")) && !e.contains('\n'),
                "{e}"
            );
            assert!(!any_index_under(&out), "{e}");
        }
    }
}

fn xor_window(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut damaged = bytes.to_vec();
    for b in &mut damaged[at..at + 16] {
        *b ^= 0x5A;
    }
    damaged
}
