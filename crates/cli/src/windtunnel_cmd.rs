//! `minicpm windtunnel lr | coord-check`: the paper's model wind tunnel on small proxies.

use crate::sweep_runner::{self, Job, JobState};
use clap::{Args, Subcommand, ValueEnum};
use minicpm_lab::plot::{self, Chart, Series};
use minicpm_lab::windtunnel::{
    job_list, parse_grid_values, slurm_array_script, LrTable, ProxyShape, SweepGrid,
};
use minicpm_train::{runs, RunConfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WindtunnelCommand {
    /// Train every (width, learning rate) proxy and print the loss table, best LR per width.
    Lr(LrArgs),
    /// Mean |activation| per layer type and width over the first updates, with a plot.
    CoordCheck(CoordArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Param {
    Mup,
    Sp,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Mup => "mup",
            Param::Sp => "sp",
        }
    }
}

/// What every wind-tunnel command shares: the base config and how proxies are shaped from it.
#[derive(Args)]
pub struct ProxyArgs {
    /// Base run config: data, vocabulary, optimizer, schedule, batch; the shape comes from the
    /// width.
    #[arg(long, default_value = "configs/windtunnel.toml")]
    config: PathBuf,
    /// Hidden sizes of the proxies, e.g. 128,256,512.
    #[arg(long, value_delimiter = ',', required = true)]
    widths: Vec<usize>,
    #[arg(long, value_enum, default_value = "mup")]
    param: Param,
    /// Head size; heads = width / head size.
    #[arg(long, default_value_t = 64)]
    head_dim: usize,
    /// A fixed depth for every width (default: the paper's, growing with width).
    #[arg(long)]
    layers: Option<usize>,
    /// Override a base-config value for every proxy (repeatable), e.g. --set train.seq_len=64.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
pub struct LrArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Learning rates: a list (0.005,0.01), powers of two (2^-8,2^-7) or a range (2^-10..2^-4).
    #[arg(long, required = true)]
    lrs: String,
    /// Training tokens per point: a count (2000000, 2M) or a multiple of the proxy's
    /// non-embedding parameters (20N).
    #[arg(long, default_value = "20N")]
    tokens: String,
    /// Points trained at once.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Threads per point (default: the cores divided among the workers).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the points' runs go.
    #[arg(long, default_value = "runs/windtunnel/lr")]
    out: PathBuf,
    /// Write <out>/jobs.txt (one shell line per point) and <out>/slurm.sh instead of training.
    #[arg(long)]
    job_list: bool,
}

#[derive(Args)]
pub struct CoordArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Updates after initialisation.
    #[arg(long, default_value_t = 5)]
    steps: u64,
    /// Where coord-check.json and the plots go.
    #[arg(long, default_value = "runs/windtunnel/coord-check")]
    out: PathBuf,
}

pub fn run(cmd: WindtunnelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WindtunnelCommand::Lr(a) => lr_sweep(a),
        WindtunnelCommand::CoordCheck(a) => coord_check(a),
    }
}

/// The run config of one proxy: the base config, the shape and parametrisation, then the
/// user's overrides, then `extra` (the point's own settings).
fn proxy_config(p: &ProxyArgs, shape: &ProxyShape, extra: &[String]) -> anyhow::Result<RunConfig> {
    let mut sets = vec![format!("parametrization=\"{}\"", p.param.name())];
    sets.extend(shape.overrides());
    sets.extend(p.set.iter().cloned());
    sets.extend(extra.iter().cloned());
    Ok(RunConfig::load(&p.config, &sets)?)
}

/// `20N` (a multiple of the non-embedding parameters) or a count with an optional k/M/G suffix.
fn parse_tokens(text: &str, non_embedding: u64) -> anyhow::Result<u64> {
    let t = text.trim();
    let bad = || anyhow::anyhow!("--tokens {text}: expected a count (2M) or a multiple of N (20N)");
    let (num, scale) = match t.chars().last().ok_or_else(bad)? {
        'N' => (&t[..t.len() - 1], non_embedding as f64),
        'k' | 'K' => (&t[..t.len() - 1], 1e3),
        'M' => (&t[..t.len() - 1], 1e6),
        'G' => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !(v.is_finite() && v > 0.0) {
        return Err(bad());
    }
    Ok((v * scale).round() as u64)
}

fn lr_sweep(a: LrArgs) -> anyhow::Result<ExitCode> {
    let lrs = parse_grid_values(&a.lrs).map_err(|e| anyhow::anyhow!("--lrs: {e}"))?;
    let grid = SweepGrid {
        widths: a.proxy.widths.clone(),
        lrs,
        param: a.proxy.param.name().into(),
        head_dim: a.proxy.head_dim,
        layers: a.proxy.layers,
    };
    let points = grid
        .points()
        .map_err(|e| anyhow::anyhow!("--widths: {e}"))?;
    let threads = sweep_runner::threads_per_worker(a.workers, a.threads)?;

    // Resolve every point's config before training any, so a bad setting fails at once.
    let mut jobs = Vec::new();
    let mut meta = Vec::new();
    for p in &points {
        let shaped = proxy_config(&a.proxy, &p.shape, &[format!("optim.lr={}", p.lr)])?;
        let n = shaped.model.non_embedding_params();
        let tokens = parse_tokens(&a.tokens, n)?;
        let steps = tokens.div_ceil(shaped.train.batch_tokens).max(1);
        let cfg = proxy_config(
            &a.proxy,
            &p.shape,
            &[format!("optim.lr={}", p.lr), format!("train.steps={steps}")],
        )?;
        let config = a.out.join("points").join(format!("{}.toml", p.name));
        sweep_runner::write_once(&config, &cfg.to_toml())?;
        jobs.push(Job {
            name: p.name.clone(),
            config,
            dir: a.out.join(&p.name),
        });
        meta.push((p, n, steps));
    }

    if a.job_list {
        let binary = std::env::current_exe()?;
        let pairs: Vec<(&Path, &Path)> = jobs
            .iter()
            .map(|j| (j.config.as_path(), j.dir.as_path()))
            .collect();
        let jobs_path = a.out.join("jobs.txt");
        std::fs::write(&jobs_path, job_list(&binary, &pairs))?;
        let slurm = a.out.join("slurm.sh");
        std::fs::write(&slurm, slurm_array_script(&jobs_path, jobs.len(), threads))?;
        println!("{}\n{}", jobs_path.display(), slurm.display());
        return Ok(ExitCode::SUCCESS);
    }

    let failed = sweep_runner::run_all(&jobs, a.workers, threads, &a.out.join("logs"))?;

    // The table and the index, from what is on disk.
    let mut results = Vec::new();
    let mut index = Vec::new();
    for ((p, n, steps), job) in meta.iter().zip(&jobs) {
        let state = sweep_runner::state(&job.dir);
        let summary = runs::summarize(&job.dir).ok();
        let loss = summary
            .as_ref()
            .filter(|_| state == JobState::Finished)
            .and_then(|s| s.eval_loss);
        results.push((p.shape.hidden, p.lr, loss));
        index.push(json!({
            "name": p.name,
            "dir": job.dir,
            "param": grid.param,
            "width": p.shape.hidden,
            "layers": p.shape.layers,
            "heads": p.shape.heads,
            "intermediate": p.shape.intermediate,
            "lr": p.lr,
            "non_embedding_params": n,
            "steps": steps,
            "finished": state == JobState::Finished,
            "eval_loss": loss,
            "eval_bpb": summary.as_ref().and_then(|s| s.eval_bpb),
        }));
    }
    let table = LrTable::new(&results);
    let summary = json!({
        "kind": "windtunnel-lr",
        "tokens": a.tokens,
        "table": table,
        "best": table.best(),
        "points": index,
    });
    let index_path = a.out.join("sweep.json");
    minicpm_model::safetensors_io::write_atomic(
        &index_path,
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    println!(
        "held-out loss after {} tokens ({}):",
        a.tokens,
        a.proxy.param.name()
    );
    print!("{}", table.render());
    if let Some(spread) = table.best_lr_spread() {
        println!("best LR spread across widths: {spread}x");
    }
    eprintln!("index: {}", index_path.display());
    if !failed.is_empty() {
        anyhow::bail!("{} points failed: {}", failed.len(), failed.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn coord_check(a: CoordArgs) -> anyhow::Result<ExitCode> {
    if a.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    let device = crate::util::training_device();
    let mut widths = a.proxy.widths.clone();
    widths.sort_unstable();
    widths.dedup();
    let mut all = Vec::new();
    for &w in &widths {
        let shape = ProxyShape::of_width(w, a.proxy.head_dim, a.proxy.layers)
            .map_err(|e| anyhow::anyhow!("--widths: {e}"))?;
        let cfg = proxy_config(&a.proxy, &shape, &[])?;
        eprintln!("width {w}: {} layers, {} heads", shape.layers, shape.heads);
        for r in minicpm_train::coord_check::run(&cfg, a.steps, &device)? {
            all.push((w, r));
        }
    }
    std::fs::create_dir_all(&a.out)?;
    let param = a.proxy.param.name();
    let records: Vec<_> = all
        .iter()
        .map(|(w, r)| json!({"width": w, "step": r.step, "site": r.site, "mean_abs": r.mean_abs}))
        .collect();
    let json_path = a.out.join(format!("coord-check-{param}.json"));
    minicpm_model::safetensors_io::write_atomic(
        &json_path,
        serde_json::to_string_pretty(&json!({"param": param, "records": records}))?.as_bytes(),
    )?;

    // One chart per activation kind: mean |x| against width, a curve per step.
    let mut sites: Vec<&str> = all.iter().map(|(_, r)| r.site.as_str()).collect();
    sites.dedup();
    sites.sort_unstable();
    sites.dedup();
    let mut charts = Vec::new();
    println!("mean |activation| ({param}), by width; growth = widest / narrowest at the last step");
    for site in &sites {
        let mut chart = Chart {
            title: format!("{site} ({param})"),
            x_label: "width".into(),
            y_label: "mean |activation|".into(),
            log_x: true,
            log_y: true,
            series: vec![],
        };
        for step in 0..=a.steps {
            let points: Vec<(f64, f64)> = all
                .iter()
                .filter(|(_, r)| r.site == *site && r.step == step)
                .map(|(w, r)| (*w as f64, r.mean_abs))
                .collect();
            chart.series.push(Series {
                markers: true,
                ..Series::line(format!("step {step}"), points, step as usize)
            });
        }
        let last = &chart.series[a.steps as usize].points;
        let growth = match (last.first(), last.last()) {
            (Some(f), Some(l)) if f.1 > 0.0 => l.1 / f.1,
            _ => f64::NAN,
        };
        let cells: Vec<String> = last.iter().map(|p| format!("{:.4}", p.1)).collect();
        println!("  {site:<14} {}   growth {growth:.2}x", cells.join("  "));
        charts.push(chart);
    }
    for f in plot::render_panels(&charts, 3, &a.out.join(format!("coord-check-{param}")))? {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_budgets_parse() {
        assert_eq!(super::parse_tokens("20N", 1000).unwrap(), 20_000);
        assert_eq!(super::parse_tokens("2M", 1).unwrap(), 2_000_000);
        assert_eq!(super::parse_tokens("1.5k", 1).unwrap(), 1_500);
        assert_eq!(super::parse_tokens("4096", 1).unwrap(), 4_096);
        for bad in ["", "N", "-3N", "abc", "0"] {
            assert!(super::parse_tokens(bad, 10).is_err(), "{bad}");
        }
    }
}
