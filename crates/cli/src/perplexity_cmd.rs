//! `minicpm perplexity`: held-out loss, perplexity and bits per byte of a model file on token
//! shards, on the inference runtime (so every stored type, quantised ones included, is measured
//! the same way).

use crate::inference;
use clap::Args;
use minicpm_data::shards::TokenDataset;
use minicpm_serve::runtime::score::Nll;
use minicpm_serve::runtime::InferenceModel;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PerplexityArgs {
    /// An HF model directory, a checkpoint, a run or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Token-shard directories (e.g. the `valid` splits `minicpm data prepare` writes).
    #[arg(long, required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Tokens predicted per window (each window is scored on its own).
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Score at most this many tokens (0: all).
    #[arg(long, default_value_t = 0)]
    max_tokens: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    model: String,
    tokens: usize,
    loss: f64,
    perplexity: f64,
    bits_per_byte: Option<f64>,
}

/// The NLL of token shards in windows of `seq_len` predicted tokens, `batch` windows per pass,
/// at most about `max_tokens` (0: all): what `perplexity` reports, and `eval` for a shard
/// directory.
pub struct ShardScore {
    pub nll: Nll,
    /// From the shard index's byte counts, when it has them.
    pub bytes_per_token: Option<f64>,
}

pub fn score_shards(
    model: &InferenceModel,
    dirs: &[PathBuf],
    seq_len: usize,
    max_tokens: usize,
    batch: usize,
) -> anyhow::Result<ShardScore> {
    anyhow::ensure!(seq_len > 0, "--seq-len must be positive");
    let data = TokenDataset::open_many(dirs)?;
    anyhow::ensure!(
        data.index.vocab_size <= model.config.vocab_size,
        "{}: token ids up to {} do not fit the model's vocabulary of {}",
        data.dir.display(),
        data.index.vocab_size,
        model.config.vocab_size
    );
    let mut tokens: &[u32] = &data.tokens;
    if max_tokens > 0 {
        let windows = max_tokens.div_ceil(seq_len);
        tokens = &tokens[..tokens.len().min(windows * (seq_len + 1))];
    }
    let nll = model.score(tokens, seq_len, batch)?;
    anyhow::ensure!(
        nll.tokens > 0,
        "{}: fewer than {} tokens of data: nothing to score",
        data.dir.display(),
        seq_len + 1
    );
    Ok(ShardScore {
        nll,
        bytes_per_token: data.bytes_per_token(),
    })
}

pub fn run(a: PerplexityArgs) -> anyhow::Result<ExitCode> {
    let loaded = inference::load(&a.model, a.threads)?;
    let m = &loaded.files.model;
    let score = score_shards(m, &a.data, a.seq_len, a.max_tokens, a.batch)?;
    let loss = score.nll.mean();
    let report = Report {
        model: a.model.display().to_string(),
        tokens: score.nll.tokens,
        loss,
        perplexity: loss.exp(),
        bits_per_byte: score
            .bytes_per_token
            .map(|bpt| loss / std::f64::consts::LN_2 / bpt),
    };
    let bpb = report
        .bits_per_byte
        .map_or(String::new(), |b| format!(", {b:.4} bits/byte"));
    eprintln!(
        "{}: {} tokens, loss {:.4} nats, perplexity {:.3}{bpb}",
        report.model, report.tokens, report.loss, report.perplexity
    );
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}
