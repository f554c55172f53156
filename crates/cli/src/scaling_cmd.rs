//! `minicpm scaling-law fit`: fit L(N, D) = E + A / N^alpha + B / D^beta to measured points.

use clap::{Args, Subcommand};
use minicpm_lab::scaling::{exclude_highest_loss, read_points, study, BootstrapConfig, FitConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ScalingCommand {
    /// Fit the Chinchilla-form law with a Huber loss, L-BFGS from a grid, bootstrap intervals.
    Fit(FitArgs),
}

#[derive(Args)]
pub struct FitArgs {
    /// CSV with columns params,tokens,loss (or Epoch AI's Chinchilla columns).
    pub csv: PathBuf,
    /// Huber delta on log loss.
    #[arg(long, default_value_t = 1e-3)]
    pub delta: f64,
    /// Leave out the k highest-loss points (Besiroglu et al. drop 5).
    #[arg(long, default_value_t = 0)]
    pub exclude_highest: usize,
    /// Bootstrap resamples for the intervals (0: none).
    #[arg(long, default_value_t = 100)]
    pub bootstrap: usize,
    /// Compute budgets (FLOPs) at which to report N_opt, D_opt and D/N.
    #[arg(long, value_delimiter = ',', default_value = "1e18,1e20,1e22,1e24")]
    pub budgets: Vec<f64>,
    /// Write the full report (JSON) here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(cmd: ScalingCommand) -> anyhow::Result<ExitCode> {
    let ScalingCommand::Fit(a) = cmd;
    let points = exclude_highest_loss(&read_points(&a.csv)?, a.exclude_highest);
    let config = FitConfig {
        huber_delta: a.delta,
        ..FitConfig::default()
    };
    let boot = (a.bootstrap > 0).then(|| BootstrapConfig {
        resamples: a.bootstrap,
        ..BootstrapConfig::default()
    });
    let report = study(&points, &config, boot.as_ref(), &a.budgets)?;
    let p = &report.fit.params;
    eprintln!("{} points; {}", points.len(), report.units);
    let ci = |name: &str, v: f64, i: Option<(f64, f64)>| match i {
        Some((lo, hi)) => eprintln!("  {name:<6} {v:>12.4}   95% [{lo:.4}, {hi:.4}]"),
        None => eprintln!("  {name:<6} {v:>12.4}"),
    };
    let iv = report.intervals.as_ref().map(|b| &b.intervals);
    ci("E", p.e, iv.map(|i| (i.e.low, i.e.high)));
    ci("A", p.a, iv.map(|i| (i.a.low, i.a.high)));
    ci("B", p.b, iv.map(|i| (i.b.low, i.b.high)));
    ci("alpha", p.alpha, iv.map(|i| (i.alpha.low, i.alpha.high)));
    ci("beta", p.beta, iv.map(|i| (i.beta.low, i.beta.high)));
    let al = &report.allocation;
    eprintln!(
        "  K {:.4}  K^2 {:.4}  eta {:.4}  (N, D in billions: K^2 {:.4})",
        al.k, al.k_squared, al.eta, al.billions.k_squared
    );
    for b in &al.budgets {
        eprintln!(
            "  C = {:.1e} FLOPs: N_opt {:.3e} params, D_opt {:.3e} tokens, D/N {:.1}",
            b.flops, b.n_opt, b.d_opt, b.tokens_per_param
        );
    }
    let json = report.to_json()?;
    match &a.out {
        Some(path) => std::fs::write(path, json)?,
        None => println!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}
