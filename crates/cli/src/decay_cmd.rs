//! `minicpm decay`: a decay branch from a stable checkpoint, then trained to its end.

use crate::util;
use anyhow::Context;
use clap::Args;
use minicpm_train::branch::{self, DecayLength, DecaySpec};
use minicpm_train::schedule::DecayFn;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DecayArgs {
    /// The stable checkpoint to decay: runs/<run>/checkpoints/step-N.
    #[arg(long)]
    from: PathBuf,
    /// Tokens to spend decaying (rounded to whole updates).
    #[arg(
        long,
        conflicts_with = "fraction",
        required_unless_present = "fraction"
    )]
    tokens: Option<u64>,
    /// The decay's share of the branch's whole length, in (0, 1): 0.1 decays for N/9 updates
    /// after N stable ones.
    #[arg(long)]
    fraction: Option<f64>,
    /// Shape of the decay: exp (MiniCPM's), linear, cosine or 1-sqrt.
    #[arg(long = "fn", default_value = "exp", value_parser = parse_decay_fn)]
    decay_fn: DecayFn,
    /// Exponential half-life in updates (default: reach 0.1 of the start at the end).
    #[arg(long)]
    half_life: Option<f64>,
    /// Fraction of the peak learning rate the decay ends at.
    #[arg(long, default_value_t = 0.0)]
    floor: f64,
    /// Mixture phase to draw from while decaying (default `decay`, else `stable`).
    #[arg(long)]
    mixture: Option<String>,
    /// Branch directory name under runs/<run>/branches/ (default: step-N-<fn>-<updates>).
    #[arg(long)]
    name: Option<String>,
    /// Decay a checkpoint whose learning rate is already below the peak (warmup, a decay,
    /// or a branch); the decay then continues from that rate.
    #[arg(long)]
    force: bool,
    /// Make the branch without training it (`minicpm train --resume <branch>` trains it).
    #[arg(long)]
    no_train: bool,
    #[arg(long)]
    quiet: bool,
}

fn parse_decay_fn(s: &str) -> Result<DecayFn, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown decay function {s:?}: use exp, linear, cosine or 1-sqrt"))
}

pub fn run(a: DecayArgs) -> anyhow::Result<ExitCode> {
    let length = match (a.tokens, a.fraction) {
        (Some(t), None) => DecayLength::Tokens(t),
        (None, Some(f)) => DecayLength::Fraction(f),
        _ => anyhow::bail!("give exactly one of --tokens and --fraction"),
    };
    let spec = DecaySpec {
        length,
        decay: a.decay_fn,
        half_life: a.half_life,
        floor: a.floor,
        phase: a.mixture.clone(),
    };
    if !a.from.exists() {
        anyhow::bail!("{}: no such checkpoint", a.from.display());
    }
    let made = branch::create(&a.from, &spec, a.name.as_deref(), a.force)?;
    if let Some(w) = &made.warning {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "branch {}: {} decay updates",
        made.dir.display(),
        made.decay_steps
    );
    if a.no_train {
        return Ok(ExitCode::SUCCESS);
    }
    let config_path = made.dir.join(minicpm_train::trainer::RUN_CONFIG_FILE);
    let config = minicpm_train::RunConfig::load(&config_path, &[])
        .with_context(|| format!("reading {}", config_path.display()))?;
    util::train_and_report(made.dir, config, true, !a.quiet, None)
}
