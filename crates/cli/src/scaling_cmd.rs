//! `minicpm scaling-law plan | run | fit`: a WSD scaling-law study (docs/MODEL.md section 9) from
//! planning its runs to fitting L(N, D) = E + A / N^alpha + B / D^beta.

use crate::windtunnel::{run_points, write_index, PlannedPoint, ProxyArgs, SweepArgs};
use clap::{Args, Subcommand, ValueEnum};
use minicpm_lab::plot;
use minicpm_lab::scaling::{
    exclude_highest_loss, fit_envelope, iso_flop_chart, plan_study, read_points, render_contours,
    study, BootstrapConfig, CurvePoint, FitConfig, Point, ScalingReport, SizeSpec, StudyPlan,
};
use minicpm_train::branch::AutoBranches;
use minicpm_train::runs::{self, RunSummary};
use minicpm_train::schedule::{DecayFn, ScheduleConfig};
use minicpm_train::RunConfig;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ScalingCommand {
    /// Plan a study: one stable run per size with a decay branch ending at each data size.
    Plan(PlanArgs),
    /// Train a planned study (resumable; several sizes at once, or a job list).
    Run(RunArgs),
    /// Fit the Chinchilla-form law with a Huber loss, L-BFGS from a grid, bootstrap intervals,
    /// to a study's decay branches or to a CSV.
    Fit(FitArgs),
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Tokens per non-embedding parameter at the end of each decay branch.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40,60")]
    data_multiples: Vec<f64>,
    /// Each branch's decay as a share of its length.
    #[arg(long, default_value_t = 0.1)]
    decay_fraction: f64,
    /// The study's directory: plan.json, the stable runs' configs, later the runs.
    #[arg(long, default_value = "runs/scaling")]
    out: PathBuf,
}

#[derive(Args)]
pub struct RunArgs {
    /// A directory made by `scaling-law plan`.
    study: PathBuf,
    #[command(flatten)]
    sweep: SweepArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossUnit {
    /// Held-out bits per byte: independent of the tokenizer.
    BitsPerByte,
    /// Held-out nats per token.
    NatsPerToken,
}

#[derive(Args)]
pub struct FitArgs {
    /// Study directories (their decay branches are the points; several studies fit as one, e.g.
    /// a study and its extension to more sizes or data) or one CSV with columns
    /// params,tokens,loss (or Epoch AI's Chinchilla columns).
    #[arg(required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// The loss fitted when reading runs.
    #[arg(long, value_enum, default_value = "bits-per-byte")]
    loss: LossUnit,
    /// Huber delta on log loss.
    #[arg(long, default_value_t = 1e-3)]
    delta: f64,
    /// Leave out the k highest-loss points (Besiroglu et al. drop 5).
    #[arg(long, default_value_t = 0)]
    exclude_highest: usize,
    /// Bootstrap resamples for the intervals (0: none).
    #[arg(long, default_value_t = 100)]
    bootstrap: usize,
    /// Compute budgets (FLOPs) at which to report N_opt, D_opt and D/N.
    #[arg(long, value_delimiter = ',', default_value = "1e18,1e20,1e22,1e24")]
    budgets: Vec<f64>,
    /// Write the full report (JSON) here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Iso-loss contours with the efficient frontier: <plot>.png and .svg (default for a study:
    /// <study>/scaling-law).
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn run(cmd: ScalingCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ScalingCommand::Plan(a) => plan(a),
        ScalingCommand::Run(a) => run_study(a),
        ScalingCommand::Fit(a) => fit(a),
    }
}

const PLAN_FILE: &str = "plan.json";

/// Each size's stable run: constant LR after the base config's warmup, to its last branch
/// point, with automatic decay branches where the plan puts them.
fn stable_config(
    proxy: &ProxyArgs,
    width: usize,
    size: &minicpm_lab::scaling::PlannedSize,
    decay_fraction: f64,
) -> anyhow::Result<RunConfig> {
    let shape = proxy.shape(width)?;
    let mut cfg = proxy.config(&shape)?;
    cfg.schedule = ScheduleConfig::Constant {
        warmup_steps: cfg.schedule.warmup_steps(),
    };
    cfg.train.steps = size.stable_steps;
    cfg.branches = Some(decay_branches(
        size.branches.iter().map(|b| b.branch_at_tokens).collect(),
        decay_fraction,
    ));
    proxy.check(cfg)
}

/// Branches at `at_tokens`, each decaying over `decay_fraction` of its length with the
/// defaults of a `[branches]` table: exponential, no floor, the `decay` mixture phase.
fn decay_branches(at_tokens: Vec<u64>, decay_fraction: f64) -> AutoBranches {
    AutoBranches {
        at_tokens,
        decay_fraction: Some(decay_fraction),
        decay_tokens: None,
        decay: DecayFn::Exp,
        half_life: None,
        floor: 0.0,
        mixture: None,
    }
}

fn plan(a: PlanArgs) -> anyhow::Result<ExitCode> {
    let mut specs = Vec::new();
    let mut batch = None;
    for w in a.proxy.widths() {
        let cfg = a.proxy.config(&a.proxy.shape(w)?)?;
        batch = Some(cfg.train.batch_tokens);
        specs.push(SizeSpec {
            name: format!("{}-d{w}", a.proxy.param),
            non_embedding_params: cfg.model.non_embedding_params(),
        });
    }
    let batch = batch.ok_or_else(|| anyhow::anyhow!("--widths: give at least one width"))?;
    let study = plan_study(&specs, &a.data_multiples, batch, a.decay_fraction)?;
    let mut points = Vec::new();
    for (size, w) in study.sizes.iter().zip(a.proxy.widths()) {
        let config = stable_config(&a.proxy, w, size, a.decay_fraction)?;
        points.push((size.name.clone(), config));
    }
    let dir = &a.out;
    crate::sweep_runner::write_once(&dir.join(PLAN_FILE), &study.to_json()?)?;
    for (name, config) in &points {
        crate::sweep_runner::write_once(
            &dir.join("points").join(format!("{name}.toml")),
            &config.to_toml(),
        )?;
    }
    let mut total = 0u64;
    for s in &study.sizes {
        let ends: Vec<String> = s
            .branches
            .iter()
            .map(|b| format!("{}x: {:.2}M", b.data_multiple, b.end_tokens as f64 / 1e6))
            .collect();
        println!(
            "{}: N = {:.3}M, stable {} updates, branches ending at {}",
            s.name,
            s.non_embedding_params as f64 / 1e6,
            s.stable_steps,
            ends.join(", ")
        );
        total += s.stable_steps + s.branches.iter().map(|b| b.decay_steps).sum::<u64>();
    }
    println!(
        "{total} updates of {batch} tokens in all; train with: minicpm scaling-law run {}",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_study(a: RunArgs) -> anyhow::Result<ExitCode> {
    a.sweep.threads()?;
    let path = a.study.join(PLAN_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (make it with scaling-law plan)", path.display()))?;
    let plan =
        StudyPlan::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut points = Vec::new();
    for s in &plan.sizes {
        let config_path = a.study.join("points").join(format!("{}.toml", s.name));
        points.push(PlannedPoint {
            name: s.name.clone(),
            config: RunConfig::load(&config_path, &[])?,
        });
    }
    let started = std::time::Instant::now();
    if run_points(points, &a.sweep, &a.study)?.is_none() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "study trained ({:.0} s this time)",
        started.elapsed().as_secs_f64()
    );
    eprintln!("fit with: minicpm scaling-law fit {}", a.study.display());
    Ok(ExitCode::SUCCESS)
}

/// The study's points: every finished decay branch's (N non-embedding, D tokens, final loss).
fn branch_points(dir: &Path, unit: LossUnit) -> anyhow::Result<(Vec<Point>, Vec<RunSummary>)> {
    let mut points = Vec::new();
    let mut trunks = Vec::new();
    for run in runs::discover(dir) {
        let s = runs::summarize(&run)?;
        if s.config.branch.is_none() {
            trunks.push(s);
            continue;
        }
        if !s.finished() {
            eprintln!("warning: {}: not finished, left out", run.display());
            continue;
        }
        let loss = match unit {
            LossUnit::BitsPerByte => s.eval_bpb.ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no bits per byte (the held-out shards carry no byte counts); use --loss nats-per-token",
                    run.display()
                )
            })?,
            LossUnit::NatsPerToken => s
                .eval_loss
                .ok_or_else(|| anyhow::anyhow!("{}: no held-out loss", run.display()))?,
        };
        points.push(Point::new(
            s.non_embedding_params as f64,
            s.tokens as f64,
            loss,
        ));
    }
    Ok((points, trunks))
}

fn fit(a: FitArgs) -> anyhow::Result<ExitCode> {
    let first = &a.input[0];
    let from_runs = first.is_dir();
    let (points, trunks) = if from_runs {
        let (mut points, mut trunks) = (Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::new();
        for dir in &a.input {
            if !dir.is_dir() {
                anyhow::bail!(
                    "{}: not a study directory (a CSV is fitted on its own)",
                    dir.display()
                );
            }
            if !seen.insert(dir.canonicalize()?) {
                anyhow::bail!("{}: listed twice", dir.display());
            }
            let (p, t) = branch_points(dir, a.loss)?;
            points.extend(p);
            trunks.extend(t);
        }
        (points, trunks)
    } else if a.input.len() > 1 {
        anyhow::bail!(
            "{}: a CSV is fitted on its own; give either one CSV or study directories",
            first.display()
        );
    } else {
        (read_points(first)?, Vec::new())
    };
    let points = exclude_highest_loss(&points, a.exclude_highest);
    let config = FitConfig {
        huber_delta: a.delta,
        ..FitConfig::default()
    };
    let boot = (a.bootstrap > 0).then(|| BootstrapConfig {
        resamples: a.bootstrap,
        ..BootstrapConfig::default()
    });
    let report = study(&points, &config, boot.as_ref(), &a.budgets)?;
    print_report(&report, points.len());

    // One envelope per model size (a size may have stable runs in several studies): its
    // branches' final losses against compute, fitted as a power law and as an exponential.
    let mut envelopes = Vec::new();
    let mut sizes_done = std::collections::HashSet::new();
    for t in trunks
        .iter()
        .filter(|t| sizes_done.insert(t.non_embedding_params))
    {
        let name = t
            .dir
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into());
        let curve: Vec<CurvePoint> = points
            .iter()
            .filter(|p| p.n == t.non_embedding_params as f64)
            .map(|p| CurvePoint {
                compute: 6.0 * p.n * p.d,
                loss: p.loss,
            })
            .collect();
        match fit_envelope(&curve) {
            Ok(e) => {
                eprintln!(
                    "  envelope {name}: power law rss {:.3e}, exponential rss {:.3e}: {:?} fits better",
                    e.power_law.rss, e.exponential.rss, e.better
                );
                envelopes.push(json!({"run": name, "envelope": e}));
            }
            Err(e) => eprintln!("  envelope {name}: {e}"),
        }
    }
    let plot_stem = a
        .plot
        .clone()
        .or_else(|| from_runs.then(|| first.join("scaling-law")));
    if let Some(stem) = plot_stem {
        let c: Vec<f64> = points.iter().map(|p| 6.0 * p.n * p.d).collect();
        let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = c.iter().copied().fold(0.0, f64::max);
        match render_contours(&report.fit.params, &points, (lo / 3.0, hi * 3.0), &stem) {
            Ok(files) => files.iter().for_each(|f| eprintln!("{}", f.display())),
            Err(e) => eprintln!("warning: no contour plot: {e}"),
        }
        if !report.iso_flop.is_empty() {
            let unit = match (from_runs, a.loss) {
                (false, _) => "loss",
                (true, LossUnit::BitsPerByte) => "held-out bits per byte",
                (true, LossUnit::NatsPerToken) => "held-out nats per token",
            };
            let chart = iso_flop_chart(&report.iso_flop, unit);
            let mut iso_stem = stem.clone().into_os_string();
            iso_stem.push("-iso-flop");
            match plot::render(&chart, Path::new(&iso_stem)) {
                Ok(files) => files.iter().for_each(|f| eprintln!("{}", f.display())),
                Err(e) => eprintln!("warning: no iso-FLOP plot: {e}"),
            }
        }
    }
    let mut value = serde_json::to_value(&report)?;
    value["envelopes"] = json!(envelopes);
    match &a.out {
        Some(path) => write_index(path, &value)?,
        None => println!("{}", serde_json::to_string_pretty(&value)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &ScalingReport, n_points: usize) {
    let p = &report.fit.params;
    eprintln!("{n_points} points; {}", report.units);
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
    match &report.allocation {
        None => {
            let why = report.no_allocation.as_deref().unwrap_or("unknown");
            eprintln!("  no compute-optimal allocation: {why}");
        }
        Some(al) => {
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
        }
    }
    if !report.iso_flop.is_empty() {
        eprintln!(
            "  iso-FLOP profiles (no law assumed; sizes interpolated between their branches):"
        );
    }
    for p in &report.iso_flop {
        let best = &p.best_measured;
        let read = match &p.optimum {
            Some(o) => format!(
                "minimum at N {:.3e} params, D {:.3e} tokens, D/N {:.1}",
                o.n, o.d, o.tokens_per_param
            ),
            None => format!("not bracketed ({})", p.shape.describe()),
        };
        eprintln!(
            "  C = {:.1e} FLOPs: {} sizes, best measured N {:.3e} (D/N {:.1}, loss {:.4}); {read}",
            p.flops,
            p.sizes.len(),
            best.n,
            best.d / best.n,
            best.loss
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decay_branches_take_the_defaults_of_a_branches_table() {
        // What a `[branches]` table giving only the counts and the fraction means.
        let written: minicpm_train::branch::AutoBranches = serde_json::from_value(
            serde_json::json!({"at_tokens": [4096, 8192], "decay_fraction": 0.125}),
        )
        .unwrap();
        assert_eq!(super::decay_branches(vec![4096, 8192], 0.125), written);
    }
}
