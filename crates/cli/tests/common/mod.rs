//! Helpers shared by the end-to-end tests: a tiny corpus and config, running the binary.
#![allow(dead_code)]

use minicpm_data::shards::ShardWriter;
use minicpm_data::TextTokenizer;
pub use minicpm_train::metrics::{read, Record};
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_minicpm"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail with exit code 2 and a one-line error; returns that line.
pub fn run_bad(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(2), "expected exit 2, stderr: {err}");
    let line = err.lines().last().unwrap_or_default().to_string();
    assert!(line.starts_with("error: "), "{err}");
    line
}

pub const TEXT: &str = "The quick brown fox jumps over the lazy dog. A stitch in time saves nine. \
To be or not to be, that is the question. All that glitters is not gold. ";

/// A tokenizer and train/valid shards of a small repetitive corpus.
pub fn make_data(dir: &Path) {
    let docs: Vec<String> = (0..120)
        .map(|i| format!("{i} {TEXT}{}", TEXT.repeat(1 + i % 3)))
        .collect();
    let tok = TextTokenizer::train_bpe(docs.iter(), 400).unwrap();
    tok.save(&dir.join("tokenizer.json")).unwrap();
    for (split, range) in [("train", 0..110), ("valid", 110..120)] {
        let mut w = ShardWriter::create(&dir.join(split), tok.vocab_size(), 2, 1 << 20).unwrap();
        for d in &docs[range] {
            w.push_document(&tok.encode(d).unwrap(), d.len() as u64)
                .unwrap();
        }
        w.finish().unwrap();
    }
}

pub fn write_config(dir: &Path, steps: u64) -> PathBuf {
    let d = dir.display();
    let text = format!(
        r#"
seed = 7
[model]
vocab_size = 400
hidden_size = 32
intermediate_size = 80
num_hidden_layers = 2
num_attention_heads = 2
num_key_value_heads = 1
dim_model_base = 16.0
scale_emb = 12.0
scale_depth = 1.4
[optim]
lr = 0.01
[schedule]
kind = "wsd"
warmup_steps = 5
decay_fraction = 0.25
decay = "exp"
[train]
steps = {steps}
batch_tokens = 128
micro_batch = 4
seq_len = 16
log_every = 1
eval_every = 10
eval_batches = 2
checkpoint_every = 5
keep_checkpoints = 2
[data]
train = "{d}/train"
valid = "{d}/valid"
tokenizer = "{d}/tokenizer.json"
"#
    );
    let p = dir.join("tiny.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn setup(steps: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let cfg = write_config(dir.path(), steps);
    (dir, cfg)
}

pub fn train_new(cfg: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--quiet", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out);
    c
}

pub fn losses(records: &[Record]) -> Vec<(u64, u64, u64, u64, Option<u64>)> {
    records
        .iter()
        .map(|r| {
            (
                r.step,
                r.loss.to_bits(),
                r.grad_norm.to_bits(),
                r.lr.to_bits(),
                r.eval_loss.map(f64::to_bits),
            )
        })
        .collect()
}

/// Waits (polling closely, so the run is still going) until `path` exists.
pub fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Records of a run without the timing fields, which differ between any two runs, one JSON line
/// each: serde_json writes every float in its shortest round-trip form, so equal lines mean
/// bit-identical numbers.
pub fn trace(run: &Path) -> Vec<String> {
    read(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .map(|mut r| {
            r.tok_s = 0.0;
            r.reduce_s = None;
            serde_json::to_string(&r).unwrap()
        })
        .collect()
}
