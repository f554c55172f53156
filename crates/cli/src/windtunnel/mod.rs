//! `minicpm windtunnel lr | coord-check | batch | search`: the paper's model wind tunnel on
//! small proxies (MINICPM.md section 3).

mod batch;
mod coord;
mod lr;
mod search;

use crate::sweep_runner::{self, Job, JobState};
use clap::{Args, Subcommand, ValueEnum};
use minicpm_lab::windtunnel::{job_list, slurm_array_script, ProxyShape};
use minicpm_train::runs::{self, RunSummary};
use minicpm_train::RunConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WindtunnelCommand {
    /// Train every (width, learning rate) proxy and print the loss table, best LR per width.
    Lr(lr::LrArgs),
    /// Mean |activation| per layer type and width over the first updates, with a plot.
    CoordCheck(coord::CoordArgs),
    /// Tokens to reach target losses per (model size, batch size), and the law bs_opt = a / L^b.
    Batch(batch::BatchArgs),
    /// A random search over scale_emb, scale_depth, init_std and the LR on one small proxy.
    Search(search::SearchArgs),
}

pub fn run(cmd: WindtunnelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WindtunnelCommand::Lr(a) => lr::run(a),
        WindtunnelCommand::CoordCheck(a) => coord::run(a),
        WindtunnelCommand::Batch(a) => batch::run(a),
        WindtunnelCommand::Search(a) => search::run(a),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Param {
    Mup,
    Sp,
}

impl Param {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Param::Mup => "mup",
            Param::Sp => "sp",
        }
    }
}

/// What every wind-tunnel command shares: the base config and how proxies are shaped from it.
#[derive(Args)]
pub(crate) struct ProxyArgs {
    /// Base run config: data, vocabulary, optimizer, schedule, batch; the shape comes from the
    /// width.
    #[arg(long, default_value = "configs/windtunnel.toml")]
    config: PathBuf,
    /// Hidden sizes of the proxies, e.g. 128,256,512.
    #[arg(long, value_delimiter = ',', required = true)]
    widths: Vec<usize>,
    #[arg(long, value_enum, default_value = "mup")]
    pub(crate) param: Param,
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

impl ProxyArgs {
    pub(crate) fn shape(&self, width: usize) -> anyhow::Result<ProxyShape> {
        ProxyShape::of_width(width, self.head_dim, self.layers)
            .map_err(|e| anyhow::anyhow!("--widths: {e}"))
    }

    /// The widths, sorted and without repeats.
    pub(crate) fn widths(&self) -> Vec<usize> {
        let mut w = self.widths.clone();
        w.sort_unstable();
        w.dedup();
        w
    }

    /// The run config of one proxy: the base config, the shape and parametrisation, then the
    /// user's overrides, then `extra` (the point's own settings).
    pub(crate) fn config(&self, shape: &ProxyShape, extra: &[String]) -> anyhow::Result<RunConfig> {
        let mut sets = vec![format!("parametrization=\"{}\"", self.param.name())];
        sets.extend(shape.overrides());
        sets.extend(self.set.iter().cloned());
        sets.extend(extra.iter().cloned());
        Ok(RunConfig::load(&self.config, &sets)?)
    }

    /// [`ProxyArgs::config`] trained for `tokens` (a count, or a multiple of the proxy's
    /// non-embedding parameters such as `20N`): `extra` plus the updates that budget takes at
    /// the config's batch.
    pub(crate) fn config_for_tokens(
        &self,
        shape: &ProxyShape,
        extra: &[String],
        tokens: &str,
    ) -> anyhow::Result<RunConfig> {
        let base = self.config(shape, extra)?;
        let tokens = parse_tokens(tokens, base.model.non_embedding_params())?;
        let steps = tokens.div_ceil(base.train.batch_tokens).max(1);
        let mut all = extra.to_vec();
        all.push(format!("train.steps={steps}"));
        self.config(shape, &all)
    }
}

/// How a sweep's points are trained: here, K at a time, or handed to a scheduler.
#[derive(Args)]
pub(crate) struct SweepArgs {
    /// Points trained at once.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Threads per point (default: the cores divided among the workers).
    #[arg(long)]
    threads: Option<usize>,
    /// Write <out>/jobs.txt (one shell line per point) and <out>/slurm.sh instead of training.
    #[arg(long)]
    job_list: bool,
}

impl SweepArgs {
    /// Threads per worker; checked before anything else so a bad split fails at once.
    pub(crate) fn threads(&self) -> anyhow::Result<usize> {
        sweep_runner::threads_per_worker(self.workers, self.threads)
    }
}

/// One run of a sweep, before it is written down.
pub(crate) struct PlannedPoint {
    pub(crate) name: String,
    pub(crate) config: RunConfig,
}

/// A point's run after the sweep: its summary when it finished.
pub(crate) struct PointResult {
    pub(crate) name: String,
    pub(crate) summary: Option<RunSummary>,
}

/// Writes each point's resolved config under `<out>/points/` (refusing changed settings), then
/// either writes the job list (returns None) or trains what is not finished and returns every
/// point's result, failing if any point failed.
pub(crate) fn run_points(
    points: Vec<PlannedPoint>,
    sweep: &SweepArgs,
    out: &Path,
) -> anyhow::Result<Option<Vec<PointResult>>> {
    let threads = sweep.threads()?;
    let mut jobs = Vec::new();
    for p in &points {
        let config = out.join("points").join(format!("{}.toml", p.name));
        sweep_runner::write_once(&config, &p.config.to_toml())?;
        jobs.push(Job {
            name: p.name.clone(),
            config,
            dir: out.join(&p.name),
        });
    }
    if sweep.job_list {
        let binary = std::env::current_exe()?;
        let pairs: Vec<(&Path, &Path)> = jobs
            .iter()
            .map(|j| (j.config.as_path(), j.dir.as_path()))
            .collect();
        let jobs_path = out.join("jobs.txt");
        std::fs::write(&jobs_path, job_list(&binary, &pairs))?;
        let slurm = out.join("slurm.sh");
        std::fs::write(&slurm, slurm_array_script(&jobs_path, jobs.len(), threads))?;
        println!("{}\n{}", jobs_path.display(), slurm.display());
        return Ok(None);
    }
    let failed = sweep_runner::run_all(&jobs, sweep.workers, threads, &out.join("logs"))?;
    if !failed.is_empty() {
        anyhow::bail!("{} points failed: {}", failed.len(), failed.join(", "));
    }
    Ok(Some(
        jobs.iter()
            .map(|j| PointResult {
                name: j.name.clone(),
                summary: (sweep_runner::state(&j.dir) == JobState::Finished)
                    .then(|| runs::summarize(&j.dir).ok())
                    .flatten(),
            })
            .collect(),
    ))
}

/// Writes a sweep's JSON index next to its points.
pub(crate) fn write_index(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    minicpm_model::safetensors_io::write_atomic(
        path,
        serde_json::to_string_pretty(value)?.as_bytes(),
    )?;
    eprintln!("index: {}", path.display());
    Ok(())
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
