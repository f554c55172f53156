//! `minicpm windtunnel lr | coord-check | batch | search`: the paper's model wind tunnel on
//! small proxies (docs/MODEL.md section 8).

mod batch;
mod coord;
mod lr;
mod search;

use crate::sweep_runner::{self, Job, JobState};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use minicpm_lab::windtunnel::{job_list, slurm_array_script, ProxyShape};
use minicpm_model::Parametrization;
use minicpm_train::runs::{self, RunSummary};
use minicpm_train::RunConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
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

/// `--param mup|sp`: the model's own enum, offered with its names as the possible values.
fn parametrization_parser() -> impl TypedValueParser<Value = Parametrization> {
    PossibleValuesParser::new(Parametrization::ALL.map(Parametrization::name))
        .try_map(|name| name.parse::<Parametrization>())
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
    #[arg(long, default_value = "mup", value_parser = parametrization_parser())]
    pub(crate) param: Parametrization,
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

    /// The run config of one proxy, checked: the base config with the user's overrides, then the
    /// shape and parametrisation. The overrides are read against the file as written, and
    /// applied once more over the proxy's settings so that, as they always have, they win over
    /// those (but not over a point's own settings, which the caller makes afterwards and checks
    /// with [`ProxyArgs::check`]).
    pub(crate) fn config(&self, shape: &ProxyShape) -> anyhow::Result<RunConfig> {
        // Unchecked until it has the proxy's shape: a setting may only fit that shape.
        let mut cfg = RunConfig::load_unchecked(&self.config, &self.set)?;
        cfg.parametrization = self.param;
        shape.apply(&mut cfg.model);
        Ok(cfg.with_overrides(&self.origin(), &self.set)?)
    }

    /// A point's config after its own settings, checked; errors name the base config.
    pub(crate) fn check(&self, cfg: RunConfig) -> anyhow::Result<RunConfig> {
        cfg.validate(&self.origin())?;
        Ok(cfg)
    }

    fn origin(&self) -> String {
        self.config.display().to_string()
    }
}

/// Sets `cfg`'s length to the updates that `tokens` (a count, or a multiple of the proxy's
/// non-embedding parameters such as `20N`) take at its batch.
pub(crate) fn train_for_tokens(cfg: &mut RunConfig, tokens: &str) -> anyhow::Result<()> {
    let tokens = parse_tokens(tokens, cfg.model.non_embedding_params())?;
    cfg.train.steps = tokens.div_ceil(cfg.train.batch_tokens).max(1);
    Ok(())
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
    /// With --job-list: train each point across this many ranks (`srun -n RANKS`; needs minicpm
    /// built with `--features mpi`), each with --threads threads.
    #[arg(long, default_value_t = 1)]
    ranks: usize,
}

impl SweepArgs {
    /// Threads per worker; checked before anything else so a bad split fails at once.
    pub(crate) fn threads(&self) -> anyhow::Result<usize> {
        if self.ranks == 0 {
            anyhow::bail!("--ranks must be at least 1");
        }
        if self.ranks > 1 && !self.job_list {
            anyhow::bail!(
                "--ranks {} sets the ranks of each point's Slurm step: it needs --job-list",
                self.ranks
            );
        }
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
        std::fs::write(&jobs_path, job_list(&binary, &pairs, sweep.ranks))?;
        let slurm = out.join("slurm.sh");
        let script = slurm_array_script(&jobs_path, jobs.len(), threads, sweep.ranks);
        std::fs::write(&slurm, script)?;
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

/// Writes a sweep's JSON index next to its points. It goes through a JSON value, whose maps
/// sort their keys: every index keeps the key order its files have always had.
pub(crate) fn write_index<T: Serialize>(path: &Path, index: &T) -> anyhow::Result<()> {
    let value = serde_json::to_value(index)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the index: {e}", path.display()))?;
    minicpm_model::safetensors_io::write_atomic(
        path,
        serde_json::to_string_pretty(&value)?.as_bytes(),
    )?;
    eprintln!("index: {}", path.display());
    Ok(())
}

/// Reads an index written by [`write_index`]; None when there is no such file (that sweep has
/// not run). Anything else that is wrong with it is a one-line error naming the file.
pub(crate) fn read_index<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: not a valid index: {e}", path.display()))
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
