//! `minicpm data passkey`: passkey documents for training (docs/EVAL.md, "Passkey
//! retrieval"): each the test's prompt followed by its answer, at a random length and depth, as
//! JSONL `{"text": ...}` lines that `data prepare` turns into shards. A small model learns the
//! format from them and can then be tested on its retrieval at longer lengths.

use anyhow::Context;
use clap::Args;
use minicpm_data::atomic_file::write_atomic;
use minicpm_data::passkey;
use minicpm_data::TextTokenizer;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PasskeyDocsArgs {
    /// The tokenizer that measures the documents' lengths.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Documents to write.
    #[arg(long, default_value_t = 1000)]
    docs: usize,
    /// Shortest and longest document in tokens (each drawn uniformly between them).
    #[arg(long, default_value_t = 128)]
    min_length: usize,
    #[arg(long, default_value_t = 256)]
    max_length: usize,
    /// Digits of each key.
    #[arg(long, default_value_t = 5)]
    digits: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The JSONL file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: PasskeyDocsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        0 < a.min_length && a.min_length <= a.max_length,
        "--min-length must be positive and at most --max-length"
    );
    anyhow::ensure!((1..=18).contains(&a.digits), "--digits must be 1..18");
    let tok = TextTokenizer::load(&a.tokenizer)?;
    // The answer (a space, the digits, a full stop) takes up to this many tokens.
    let answer = a.digits + 2;
    let count = |text: &str| Ok(tok.encode(text)?.len() + 1 + answer);
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let mut out = String::new();
    for _ in 0..a.docs {
        let length = rng.random_range(a.min_length..=a.max_length);
        let depth = rng.random_range(0.0..=1.0);
        let key = passkey::random_key(&mut rng, a.digits);
        let doc = passkey::prompt(&key, depth, length, count)?.document();
        out.push_str(&serde_json::json!({ "text": doc }).to_string());
        out.push('\n');
    }
    write_atomic(&a.out, out.as_bytes()).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {} passkey documents to {}", a.docs, a.out.display());
    Ok(ExitCode::SUCCESS)
}
