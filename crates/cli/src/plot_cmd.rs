//! `minicpm plot loss|lr <runs...>`: curves of runs (a stable run with its decay branches, or
//! several runs) as PNG and SVG.

use clap::{Args, Subcommand, ValueEnum};
use minicpm_lab::plot::{self, Chart, Series};
use minicpm_train::runs::{self, RunSummary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PlotCommand {
    /// Training (or, with --eval, held-out) loss against tokens or FLOPs.
    Loss(PlotArgs),
    /// The learning rate of every logged update.
    Lr(PlotArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XAxis {
    Tokens,
    /// 6 N D with N the non-embedding parameters.
    Flops,
}

#[derive(Args)]
pub struct PlotArgs {
    /// Run directories (each with its branches), or directories holding runs.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "tokens")]
    x: XAxis,
    /// Logarithmic axes.
    #[arg(long)]
    log: bool,
    /// Plot the held-out loss of each evaluation instead of the training loss.
    #[arg(long)]
    eval: bool,
    /// Average the training loss over this many logged updates.
    #[arg(long, default_value_t = 1)]
    smooth: usize,
    /// Output path without extension: <out>.png and <out>.svg are written.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(cmd: PlotCommand) -> anyhow::Result<ExitCode> {
    let (what, a) = match cmd {
        PlotCommand::Loss(a) => ("loss", a),
        PlotCommand::Lr(a) => ("lr", a),
    };
    let found = collect(&a.runs)?;
    let x_label = match a.x {
        XAxis::Tokens => "training tokens",
        XAxis::Flops => "training FLOPs (6ND, N non-embedding)",
    };
    let y_label = match (what, a.eval) {
        ("lr", _) => "learning rate (peak group)",
        (_, true) => "held-out loss (nats/token)",
        _ if a.smooth > 1 => "training loss (moving average, nats/token)",
        _ => "training loss (nats/token)",
    };
    let mut chart = Chart {
        title: format!(
            "{} of {}",
            if what == "lr" {
                "learning rate"
            } else {
                "loss"
            },
            title_of(&a.runs)
        ),
        x_label: x_label.into(),
        y_label: y_label.into(),
        log_x: a.log,
        log_y: a.log && what == "loss",
        series: vec![],
    };
    // Top-level runs get a colour each; a branch shares its trunk's colour, dashed.
    let mut color = 0;
    let mut trunk_color = std::collections::HashMap::new();
    for (label, s) in &found {
        let c = match &s.config.branch {
            Some(b) => *trunk_color.get(&b.parent).unwrap_or(&color),
            None => {
                color += 1;
                let name = s.dir.file_name().map(|n| n.to_string_lossy().into_owned());
                trunk_color.insert(name.unwrap_or_default(), color - 1);
                color - 1
            }
        };
        let x_of = |tokens: u64| match a.x {
            XAxis::Tokens => tokens as f64,
            XAxis::Flops => 6.0 * s.non_embedding_params as f64 * tokens as f64,
        };
        let points: Vec<(f64, f64)> = match (what, a.eval) {
            ("lr", _) => s.records.iter().map(|r| (x_of(r.tokens), r.lr)).collect(),
            (_, true) => s
                .records
                .iter()
                .filter_map(|r| r.eval_loss.map(|l| (x_of(r.tokens), l)))
                .collect(),
            _ => smooth(
                &s.records
                    .iter()
                    .map(|r| (x_of(r.tokens), r.loss))
                    .collect::<Vec<_>>(),
                a.smooth,
            ),
        };
        if points.is_empty() {
            eprintln!("warning: {}: nothing logged yet", s.dir.display());
            continue;
        }
        chart.series.push(Series {
            dashed: s.config.branch.is_some(),
            ..Series::line(label.clone(), points, c)
        });
    }
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from(format!("plots/{what}")));
    for f in plot::render(&chart, &out)? {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every run under the arguments, labelled by its path below the argument it came from.
fn collect(args: &[PathBuf]) -> anyhow::Result<Vec<(String, RunSummary)>> {
    let mut out = Vec::new();
    for root in args {
        let dirs = runs::discover(root);
        if dirs.is_empty() {
            anyhow::bail!("{}: no runs here (no run.toml found)", root.display());
        }
        for dir in dirs {
            let summary = runs::summarize(&dir)?;
            out.push((label(&dir, root), summary));
        }
    }
    Ok(out)
}

fn label(dir: &Path, root: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let text = if rel.as_os_str().is_empty() {
        root.file_name()
            .map_or(root.display().to_string(), |n| n.to_string_lossy().into())
    } else {
        rel.display().to_string()
    };
    text.replace("/branches/", " > ").replace("branches/", "> ")
}

fn title_of(args: &[PathBuf]) -> String {
    if args.len() > 2 {
        return format!("{} runs", args.len());
    }
    let names: Vec<String> = args
        .iter()
        .map(|p| {
            p.file_name()
                .map_or(p.display().to_string(), |n| n.to_string_lossy().into())
        })
        .collect();
    names.join(", ")
}

/// Trailing moving average over `window` points.
fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    if window <= 1 {
        return points.to_vec();
    }
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}
