//! `minicpm demo`: the whole pipeline on built-in defaults, from local text to samples.

use crate::util;
use clap::Args;
use minicpm_data::{local_corpus, TextTokenizer};
use minicpm_train::RunConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The demo's run config, built into the binary so the demo needs no files.
pub const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");

#[derive(Args)]
pub struct DemoArgs {
    /// Where the corpus, tokenizer and token shards go.
    #[arg(long, default_value = "data/local")]
    data: PathBuf,
    /// The run directory (resumed if it exists).
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Override a demo config value, e.g. --set train.steps=200 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Bytes of local text to use.
    #[arg(long, default_value_t = 6_000_000)]
    corpus_bytes: usize,
}

fn prepare_data(dir: &Path, vocab_size: usize, corpus_bytes: usize) -> anyhow::Result<()> {
    let tok_path = dir.join("tokenizer.json");
    if tok_path.exists()
        && dir.join("train/index.json").exists()
        && dir.join("valid/index.json").exists()
    {
        eprintln!("data: using {}", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let docs = local_corpus::collect(corpus_bytes)?;
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    eprintln!(
        "data: {} documents, {:.1} MB of local text",
        docs.len(),
        bytes as f64 / 1e6
    );
    let tok = TextTokenizer::train_bpe(docs.iter().map(|d| d.text.as_str()), vocab_size)?;
    // The shards are written first and the tokenizer last: its presence marks the data complete.
    let (train, valid) = local_corpus::prepare(&docs, &tok, dir, 50)?;
    tok.save(&tok_path)?;
    eprintln!(
        "data: tokenizer of {} tokens; train {} tokens ({:.2} bytes/token), valid {} tokens",
        tok.vocab_size(),
        train.tokens(),
        train.bytes() as f64 / train.tokens() as f64,
        valid.tokens()
    );
    Ok(())
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let data = a.data.display().to_string();
    let mut set = vec![
        format!("data.train=\"{data}/train\""),
        format!("data.valid=\"{data}/valid\""),
        format!("data.tokenizer=\"{data}/tokenizer.json\""),
    ];
    set.extend(a.set.iter().cloned());
    let cfg = RunConfig::parse(DEMO_CONFIG, "configs/demo.toml", &set)?;
    prepare_data(&a.data, cfg.model.vocab_size, a.corpus_bytes)?;

    let resume = a.out.join(minicpm_train::trainer::RUN_CONFIG_FILE).exists();
    eprintln!(
        "train: {} non-embedding parameters, {} updates of {} tokens -> {}",
        cfg.model.non_embedding_params(),
        cfg.train.steps,
        cfg.train.batch_tokens,
        a.out.display()
    );
    let outcome = util::run_training(a.out.clone(), cfg.clone(), resume, true)?;
    util::report(&outcome);
    if outcome.interrupted {
        return Ok(ExitCode::from(130));
    }
    eprintln!(
        "(a random model scores ln(vocab) = {:.3})",
        (cfg.model.vocab_size as f64).ln()
    );

    let dir = util::resolve_model_dir(&a.out)?;
    let (model, tok) = util::load_for_inference(&dir)?;
    for (i, prompt) in ["The ", "def ", "This License "].iter().enumerate() {
        eprintln!("--- sample {} ---", i + 1);
        let params = minicpm_serve::SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            seed: i as u64,
        };
        util::stream_generation(&model, &tok, prompt, 80, params)?;
    }
    Ok(ExitCode::SUCCESS)
}
