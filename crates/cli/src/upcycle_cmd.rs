//! `minicpm upcycle`: a dense checkpoint made into a mixture-of-experts run (docs/MODEL.md
//! section 12), then trained to the parent run's end.

use crate::util;
use anyhow::Context;
use clap::Args;
use minicpm_train::upcycle::{self, ExpertMoments, UpcycleSpec};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct UpcycleArgs {
    /// The dense checkpoint: runs/<run>/checkpoints/step-N.
    #[arg(long)]
    from: PathBuf,
    /// Experts per layer, each a copy of the layer's MLP.
    #[arg(long, default_value_t = 8)]
    experts: usize,
    /// Experts each token is routed to.
    #[arg(long, default_value_t = 2)]
    top_k: usize,
    /// The new run directory.
    #[arg(long)]
    out: PathBuf,
    /// Start the experts' AdamW moments at zero instead of copying their MLP's.
    #[arg(long)]
    fresh_moments: bool,
    /// Seed of the routers' initialisation (default: the run's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Make the run without training it (`minicpm train --resume <out>` trains it).
    #[arg(long)]
    no_train: bool,
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: UpcycleArgs) -> anyhow::Result<ExitCode> {
    if !a.from.exists() {
        anyhow::bail!("{}: no such checkpoint", a.from.display());
    }
    let spec = UpcycleSpec {
        experts: a.experts,
        top_k: a.top_k,
        expert_moments: match a.fresh_moments {
            true => ExpertMoments::Fresh,
            false => ExpertMoments::Copied,
        },
        seed: a.seed,
    };
    let dir = upcycle::create(&a.from, &spec, &a.out)?;
    eprintln!(
        "upcycled {} into {}: {} experts, top-{}",
        a.from.display(),
        dir.display(),
        a.experts,
        a.top_k
    );
    if a.no_train {
        return Ok(ExitCode::SUCCESS);
    }
    let config_path = dir.join(minicpm_train::trainer::RUN_CONFIG_FILE);
    let config = minicpm_train::RunConfig::load(&config_path, &[])
        .with_context(|| format!("reading {}", config_path.display()))?;
    util::train_and_report(dir, config, true, !a.quiet, None)
}
