//! Finding runs and branches on disk and summarising each: what `minicpm runs` lists and what
//! `minicpm plot` draws.

use crate::branch;
use crate::checkpoint;
use crate::config::RunConfig;
use crate::metrics::{self, Record, METRICS_FILE};
use crate::open_run::RUN_CONFIG_FILE;
use crate::schedule::ScheduleConfig;
use minicpm_model::mup;
use minicpm_model::{ModelConfig, ModelError, ParamCounts};
use std::path::{Path, PathBuf};

/// One run or branch as found on disk.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub dir: PathBuf,
    /// `parent@step` for a decay branch.
    pub parent: Option<String>,
    pub params: u64,
    pub non_embedding_params: u64,
    /// Non-embedding parameters a token runs through (fewer than all in a mixture of experts).
    pub active_non_embedding_params: u64,
    pub steps_done: u64,
    pub steps_total: u64,
    pub tokens: u64,
    /// The last logged training loss.
    pub train_loss: Option<f64>,
    /// The last held-out evaluation.
    pub eval_loss: Option<f64>,
    pub eval_bpb: Option<f64>,
    /// Wall-clock training time at the latest checkpoint (a branch includes its trunk's).
    pub wall_time_s: Option<f64>,
    /// The schedule in a few words, e.g. `wsd exp 10%`.
    pub schedule: String,
    pub config: RunConfig,
    pub records: Vec<Record>,
}

impl RunSummary {
    pub fn finished(&self) -> bool {
        self.steps_done >= self.steps_total
    }

    /// Training FLOPs after `tokens`, as 6 N D with N the active non-embedding parameters; an
    /// upcycled run's tokens before the upcycling count at its dense parent's N.
    pub fn training_flops(&self, tokens: u64) -> f64 {
        let active = self.active_non_embedding_params as f64;
        match &self.config.upcycled {
            Some(origin) if tokens >= origin.tokens => {
                let dense = ModelConfig {
                    num_experts: None,
                    num_experts_per_tok: None,
                    router_aux_loss_coef: None,
                    router_z_loss_coef: None,
                    ..self.config.model.clone()
                };
                6.0 * dense.non_embedding_params() as f64 * origin.tokens as f64
                    + 6.0 * active * (tokens - origin.tokens) as f64
            }
            _ => 6.0 * active * tokens as f64,
        }
    }
}

/// Run directories under `root` (itself, if it is one), each followed by its branches, in name
/// order; directories up to three levels deep are searched.
pub fn discover(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if dir.join(RUN_CONFIG_FILE).is_file() {
            out.push(dir.to_path_buf());
            for b in branch::list(dir) {
                walk(&b, 0, out);
            }
            return;
        }
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            walk(&d, depth - 1, out);
        }
    }
    let mut out = Vec::new();
    walk(root, 3, &mut out);
    out
}

/// Reads a run directory's config, metrics and latest checkpoint.
pub fn summarize(dir: &Path) -> Result<RunSummary, ModelError> {
    let config = RunConfig::load(&dir.join(RUN_CONFIG_FILE), &[])?;
    let metrics_path = dir.join(METRICS_FILE);
    let records = if metrics_path.is_file() {
        metrics::read(&metrics_path)?
    } else {
        vec![]
    };
    let latest = checkpoint::latest(dir);
    let state = match &latest {
        Some((_, ckpt)) => Some(checkpoint::read_state(ckpt)?),
        None => None,
    };
    let model = mup::resolve(&config.model, config.parametrization);
    let last = records.last();
    let last_eval = records.iter().rev().find(|r| r.eval_loss.is_some());
    let steps_done = state
        .as_ref()
        .map(|s| s.step)
        .max(last.map(|r| r.step + 1))
        .unwrap_or(0);
    Ok(RunSummary {
        dir: dir.to_path_buf(),
        parent: config
            .branch
            .as_ref()
            .map(|b| format!("{}@{}", b.parent, b.step)),
        params: model.non_embedding_params() + model.embedding_params(),
        non_embedding_params: model.non_embedding_params(),
        active_non_embedding_params: ParamCounts::of(&model).active_non_embedding(),
        steps_done,
        steps_total: config.train.steps,
        tokens: last
            .map(|r| r.tokens)
            .or(state.as_ref().map(|s| s.tokens))
            .unwrap_or(0),
        train_loss: last.map(|r| r.loss),
        eval_loss: last_eval.and_then(|r| r.eval_loss),
        eval_bpb: last_eval.and_then(|r| r.eval_bpb),
        wall_time_s: state.map(|s| s.wall_time_s),
        schedule: describe(&config),
        config,
        records,
    })
}

fn describe(cfg: &RunConfig) -> String {
    let steps = cfg.train.steps;
    match &cfg.schedule {
        ScheduleConfig::Wsd {
            decay,
            decay_fraction,
            decay_steps,
            ..
        } => {
            let d = decay_steps
                .unwrap_or_else(|| (steps as f64 * decay_fraction.unwrap_or(0.1)).round() as u64);
            let f = serde_json::to_value(decay).expect("serialises");
            let pct = format!("{:.2}", 100.0 * d as f64 / steps as f64);
            let pct = pct.trim_end_matches('0').trim_end_matches('.');
            format!("wsd {} {pct}%", f.as_str().unwrap_or("?"))
        }
        ScheduleConfig::Cosine { period, .. } => {
            format!("cosine T={}", period.unwrap_or(steps))
        }
        ScheduleConfig::Constant { .. } => "constant".into(),
    }
}
