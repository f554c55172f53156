//! `minicpm extend`: a checkpoint made into a run on longer rows, with RoPE changed for the new
//! length (docs/MODEL.md section 13), then trained.

use crate::util;
use anyhow::Context;
use clap::Args;
use minicpm_train::extend::{self, Curriculum, ExtendSpec, RopeChange};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ExtendArgs {
    /// The checkpoint to extend: runs/<run>/checkpoints/step-N.
    #[arg(long)]
    from: PathBuf,
    /// Tokens per training row of the new run.
    #[arg(long)]
    length: usize,
    /// How RoPE changes: none, abf:theta=X (a larger base), ntk:factor=F (dynamic NTK past the
    /// parent's context), abf:theta=X,ntk:factor=F (both; NTK past --length / F), linear:factor=F
    /// or yarn:factor=F.
    #[arg(long)]
    rope: RopeChange,
    /// Shorter rows first: LENGTH:SHARE,... trains rows of LENGTH until that share of the
    /// updates is done, e.g. 1024:0.5 for the first half (train.length_schedule).
    #[arg(long, value_name = "LENGTH:SHARE,...")]
    curriculum: Option<Curriculum>,
    /// Training tokens of the new run (rounded up to whole updates).
    #[arg(long)]
    tokens: u64,
    /// Give the LM head its own weights, starting as a copy of the embedding.
    #[arg(long)]
    untie: bool,
    /// A token-shard directory of long documents (whole books, passkey documents), mixed into
    /// every phase of the data; repeat for several, each its own source.
    #[arg(long, value_name = "DIR")]
    long_data: Vec<PathBuf>,
    /// The long documents' share of the mixture, split evenly between the --long-data sources;
    /// the parent's sources share the rest.
    #[arg(long, default_value_t = 0.5, requires = "long_data")]
    long_share: f64,
    /// The new run directory.
    #[arg(long)]
    out: PathBuf,
    /// Override a value of the new run's config, e.g. --set optim.lr=0.005 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Make the run without training it (`minicpm train --resume <out>` trains it).
    #[arg(long)]
    no_train: bool,
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: ExtendArgs) -> anyhow::Result<ExitCode> {
    if !a.from.exists() {
        anyhow::bail!("{}: no such checkpoint", a.from.display());
    }
    let spec = ExtendSpec {
        length: a.length,
        rope: a.rope.clone(),
        curriculum: a.curriculum.clone().unwrap_or_default(),
        untie: a.untie,
        tokens: a.tokens,
        long_data: a.long_data.clone(),
        long_share: a.long_share,
        overrides: a.set.clone(),
    };
    let dir = extend::create(&a.from, &spec, &a.out)?;
    let config_path = dir.join(minicpm_train::trainer::RUN_CONFIG_FILE);
    let config = minicpm_train::RunConfig::load(&config_path, &[])
        .with_context(|| format!("reading {}", config_path.display()))?;
    let shorter: String = config
        .train
        .length_schedule
        .iter()
        .map(|s| format!("{} tokens until update {}, then ", s.seq_len, s.until))
        .collect();
    eprintln!(
        "extended {} into {}: rows of {shorter}{} tokens, rope {}, {} updates of {} tokens",
        a.from.display(),
        dir.display(),
        config.train.seq_len,
        a.rope,
        config.train.steps,
        config.train.batch_tokens
    );
    if a.no_train {
        return Ok(ExitCode::SUCCESS);
    }
    util::train_and_report(dir, config, true, !a.quiet, None)
}
