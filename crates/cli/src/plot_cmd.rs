//! `minicpm plot loss|lr|accuracy <runs...>`: curves of runs (a stable run with its decay branches, or
//! several runs) as PNG and SVG.

use clap::{Args, Subcommand, ValueEnum};
use minicpm_lab::plot::{self, Chart, Series};
use minicpm_train::metrics::Record;
use minicpm_train::runs::{self, RunSummary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PlotCommand {
    /// Training (or, with --eval, held-out) loss against tokens or FLOPs.
    Loss(PlotArgs),
    /// The learning rate of every logged update.
    Lr(PlotArgs),
    /// DPO's pair accuracy: the share of pairs whose chosen answer has the higher reward (with
    /// --eval, of the held-out pairs).
    Accuracy(PlotArgs),
    /// A mixture-of-experts run's routing of held-out tokens over training: each layer's
    /// per-expert share of the tokens, and the router's entropy.
    Experts(ExpertsArgs),
}

#[derive(Args)]
pub struct ExpertsArgs {
    /// The run directory.
    run: PathBuf,
    /// Output path without extension: <out>.png and <out>.svg are written.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XAxis {
    Tokens,
    /// 6 N D with N the non-embedding parameters a token runs through (a mixture of experts
    /// counts its active experts).
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
        PlotCommand::Accuracy(a) => ("accuracy", a),
        PlotCommand::Experts(a) => return experts(a),
    };
    let found = collect(&a.runs)?;
    let x_label = match a.x {
        XAxis::Tokens => "training tokens",
        XAxis::Flops => "training FLOPs (6ND, N active non-embedding)",
    };
    let y_label = match (what, a.eval) {
        ("lr", _) => "learning rate (peak group)",
        ("accuracy", true) => "held-out pair accuracy",
        ("accuracy", false) => "training pair accuracy",
        (_, true) => "held-out loss (nats/token)",
        _ if a.smooth > 1 => "training loss (moving average, nats/token)",
        _ => "training loss (nats/token)",
    };
    let mut chart = Chart {
        title: format!(
            "{} of {}",
            match what {
                "lr" => "learning rate",
                "accuracy" => "pair accuracy",
                _ => "loss",
            },
            title_of(&a.runs)
        ),
        x_label: x_label.into(),
        y_label: y_label.into(),
        log_x: a.log,
        log_y: a.log && what == "loss",
        series: vec![],
    };
    // Every curve gets its own colour; branches are dashed. A branch's curve starts at the
    // trunk's last point before the branch, so each decay visibly leaves its stable run.
    for (color, (label, s)) in found.iter().enumerate() {
        let (records, own) = lineage(s, &found);
        let x_of = |tokens: u64| match a.x {
            XAxis::Tokens => tokens as f64,
            XAxis::Flops => s.training_flops(tokens),
        };
        let value = |r: &Record| match (what, a.eval) {
            ("lr", _) => Some(r.lr),
            ("accuracy", true) => r.eval_rewards.map(|p| p.accuracy),
            ("accuracy", false) => r.rewards.map(|p| p.accuracy),
            (_, true) => r.eval_loss,
            _ => Some(r.loss),
        };
        let window = if what == "loss" && !a.eval {
            a.smooth
        } else {
            1
        };
        let points = curve(&records, own, value, |r| x_of(r.tokens), window);
        if points.is_empty() {
            eprintln!("warning: {}: nothing logged yet", s.dir.display());
            continue;
        }
        chart.series.push(Series {
            dashed: s.config.branch.is_some(),
            markers: a.eval,
            ..Series::line(label.clone(), points, color)
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

/// One panel per layer with each expert's share of the held-out token-slots against training
/// tokens (a balanced router keeps every line at 1 / E), and one with each layer's router entropy.
fn experts(a: ExpertsArgs) -> anyhow::Result<ExitCode> {
    let s = runs::summarize(&a.run)?;
    let Some((num_experts, top_k)) = s.config.model.moe() else {
        anyhow::bail!("{}: not a mixture-of-experts run", a.run.display());
    };
    let logged: Vec<(f64, &Vec<Vec<f32>>, &Vec<f32>)> = s
        .records
        .iter()
        .filter_map(|r| {
            Some((
                r.tokens as f64,
                r.expert_load.as_ref()?,
                r.router_entropy.as_ref()?,
            ))
        })
        .collect();
    if logged.is_empty() {
        anyhow::bail!(
            "{}: no routing logged yet (it is logged at each evaluation)",
            a.run.display()
        );
    }
    let layers = logged[0].1.len();
    let panel = |title: String, y_label: &str, series: Vec<Series>| Chart {
        title,
        x_label: "training tokens".into(),
        y_label: y_label.into(),
        log_x: false,
        log_y: false,
        series,
    };
    let mut charts: Vec<Chart> = (0..layers)
        .map(|l| {
            let series = (0..num_experts)
                .map(|e| {
                    let points = logged
                        .iter()
                        .map(|(x, load, _)| (*x, load[l][e] as f64))
                        .collect();
                    Series {
                        markers: true,
                        ..Series::line(format!("expert {e}"), points, e)
                    }
                })
                .collect();
            panel(
                format!("layer {l}: expert load (top-{top_k} of {num_experts})"),
                "share of token-slots",
                series,
            )
        })
        .collect();
    let entropy = (0..layers)
        .map(|l| {
            let points = logged.iter().map(|(x, _, h)| (*x, h[l] as f64)).collect();
            Series {
                markers: true,
                ..Series::line(format!("layer {l}"), points, l)
            }
        })
        .collect();
    charts.push(panel(
        format!(
            "router entropy (uniform: ln {num_experts} = {:.2})",
            (num_experts as f64).ln()
        ),
        "nats",
        entropy,
    ));
    let out = a.out.unwrap_or_else(|| PathBuf::from("plots/experts"));
    for f in plot::render_panels(&charts, 2, &out)? {
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

/// A run's records, preceded for a branch by its ancestors' records before the branch point;
/// also the index where the run's own records begin.
fn lineage(s: &RunSummary, found: &[(String, RunSummary)]) -> (Vec<Record>, usize) {
    let Some(origin) = &s.config.branch else {
        return (s.records.clone(), 0);
    };
    // A branch lives in <parent>/branches/<name>.
    let Some(parent_dir) = s.dir.parent().and_then(Path::parent) else {
        return (s.records.clone(), 0);
    };
    let loaded;
    let parent = match found.iter().find(|(_, f)| f.dir == parent_dir) {
        Some((_, f)) => f,
        None => match runs::summarize(parent_dir) {
            Ok(f) => {
                loaded = f;
                &loaded
            }
            Err(_) => return (s.records.clone(), 0),
        },
    };
    let (mut records, _) = lineage(parent, found);
    records.retain(|r| r.step < origin.step);
    let own = records.len();
    records.extend(s.records.iter().cloned());
    (records, own)
}

/// The points of one curve: `value` of the records from index `own` on (a branch's own), joined
/// to the last valued record before it (where the branch left its trunk), after a moving average
/// over the whole history so that a branch's average does not restart. Empty when the run has
/// logged no value of its own yet.
fn curve(
    records: &[Record],
    own: usize,
    value: impl Fn(&Record) -> Option<f64>,
    x: impl Fn(&Record) -> f64,
    window: usize,
) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    let mut first_own = None;
    for (i, r) in records.iter().enumerate() {
        if let Some(v) = value(r) {
            if i >= own && first_own.is_none() {
                first_own = Some(points.len());
            }
            points.push((x(r), v));
        }
    }
    let Some(first_own) = first_own else {
        return Vec::new();
    };
    let mut points = smooth(&points, window);
    points.split_off(first_own.saturating_sub(usize::from(own > 0)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, loss: f64, eval_loss: Option<f64>) -> Record {
        Record {
            step,
            tokens: (step + 1) * 100,
            lr: 0.01,
            loss,
            grad_norm: 1.0,
            tok_s: 1.0,
            eval_loss,
            eval_bpb: None,
            grad_cos: None,
            max_update: None,
            rewards: None,
            eval_rewards: None,
            expert_load: None,
            router_entropy: None,
            reduce_s: None,
            seq_len: None,
        }
    }

    /// Trunk updates 0..10 (evaluated after 5 and 10 updates), then a branch from update 10 with
    /// updates 10..14 (evaluated after 14).
    fn branch_history() -> Vec<Record> {
        (0..14)
            .map(|s| {
                let eval = [4, 9, 13].contains(&s).then_some(30.0 - s as f64);
                record(s, 20.0 - s as f64, eval)
            })
            .collect()
    }

    #[test]
    fn a_branch_curve_starts_where_it_left_the_trunk() {
        let h = branch_history();
        let x = |r: &Record| r.tokens as f64;
        let train = curve(&h, 10, |r| Some(r.loss), x, 1);
        assert_eq!(train.first(), Some(&(1000.0, 11.0)), "joined at update 9");
        assert_eq!(train.len(), 5);
        // A branch evaluated once still draws a segment from the trunk's last evaluation.
        let eval = curve(&h, 10, |r| r.eval_loss, x, 1);
        assert_eq!(eval, vec![(1000.0, 21.0), (1400.0, 17.0)]);
        // The moving average runs over the trunk's records too: at update 10 it is the mean of
        // updates 8..=10 (12, 11, 10), not the branch's first loss alone.
        let smoothed = curve(&h, 10, |r| Some(r.loss), x, 3);
        assert_eq!(smoothed[1], (1100.0, 11.0));
        // A trunk keeps all its points; a run with nothing of its own has no curve.
        assert_eq!(curve(&h, 0, |r| r.eval_loss, x, 1).len(), 3);
        assert!(curve(&h[..10], 10, |r| Some(r.loss), x, 1).is_empty());
    }
}
