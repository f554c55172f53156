//! Decay branches (docs/MODEL.md section 6): a WSD run's stable checkpoints are the trunk, and any
//! of them can be decayed on its own into `runs/<run>/branches/<name>/`.
//!
//! A branch is an ordinary run directory whose first checkpoint is the parent's (weights,
//! optimizer state, data cursor), whose schedule is WSD with its decay starting at that update,
//! and whose `run.toml` records where it came from. Checkpoint files are never modified in place
//! (they are written to a temp directory and renamed), so the branch shares them with the parent
//! by hard link: creating a branch costs no copy, and the parent can never be changed by it.

use crate::checkpoint::{self, TrainerState};
use crate::config::RunConfig;
use crate::error::{InvalidSetting, TrainError};
use crate::open_run::RUN_CONFIG_FILE;
use crate::schedule::{DecayFn, ScheduleConfig};
use minicpm_model::safetensors_io::write_atomic;
use minicpm_model::ModelError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const BRANCHES_DIR: &str = "branches";

/// Where a branch came from, recorded in its `run.toml` as `[branch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchOrigin {
    /// The parent run's directory name (the branch lives in `<parent>/branches/`).
    pub parent: String,
    /// The parent checkpoint's update count and tokens.
    pub step: u64,
    pub tokens: u64,
}

/// How long a decay lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DecayLength {
    /// Training tokens spent decaying (rounded to whole updates).
    Tokens(u64),
    /// The decay's share of the branch's whole length: `D / (N + D) = f`, as WSD's
    /// `decay_fraction` counts it.
    Fraction(f64),
}

/// The decay a branch runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DecaySpec {
    pub length: DecayLength,
    pub decay: DecayFn,
    /// Exponential half-life in updates (default: reach 0.1 of the start at the end).
    pub half_life: Option<f64>,
    pub floor: f64,
    /// The mixture phase to draw from while decaying (default `decay`, else `stable`).
    pub phase: Option<String>,
}

/// `[branches]` of a run config: decay branches made automatically as the run passes the given
/// token counts, each from a checkpoint kept for the purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoBranches {
    pub at_tokens: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_tokens: Option<u64>,
    #[serde(default = "default_decay")]
    pub decay: DecayFn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life: Option<f64>,
    #[serde(default)]
    pub floor: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixture: Option<String>,
}

fn default_decay() -> DecayFn {
    DecayFn::Exp
}

impl AutoBranches {
    pub fn spec(&self) -> Result<DecaySpec, InvalidSetting> {
        self.checked_spec()
            .map_err(|msg| InvalidSetting::new("branches", msg))
    }

    fn checked_spec(&self) -> Result<DecaySpec, String> {
        let length = match (self.decay_fraction, self.decay_tokens) {
            (Some(_), Some(_)) => {
                return Err("branches: give decay_fraction or decay_tokens, not both".into())
            }
            (None, Some(t)) => DecayLength::Tokens(t),
            (f, None) => DecayLength::Fraction(f.unwrap_or(0.1)),
        };
        let spec = DecaySpec {
            length,
            decay: self.decay,
            half_life: self.half_life,
            floor: self.floor,
            phase: self.mixture.clone(),
        };
        spec.check().map_err(|e| format!("branches: {e}"))?;
        Ok(spec)
    }

    /// The updates at which branches start; every count must fall on an update boundary inside
    /// the run and before its own decay.
    pub fn steps(&self, cfg: &RunConfig) -> Result<Vec<u64>, InvalidSetting> {
        self.checked_steps(cfg)
            .map_err(|msg| InvalidSetting::new("branches.at_tokens", msg))
    }

    fn checked_steps(&self, cfg: &RunConfig) -> Result<Vec<u64>, String> {
        let per_step = cfg.train.batch_tokens;
        let schedule = cfg.schedule.resolve(cfg.train.steps).map_err(|e| e.msg)?;
        let mut steps = Vec::with_capacity(self.at_tokens.len());
        for &t in &self.at_tokens {
            if t == 0 || t % per_step != 0 {
                return Err(format!(
                    "branches.at_tokens: {t} is not a positive multiple of train.batch_tokens ({per_step})"
                ));
            }
            let step = t / per_step;
            if step > cfg.train.steps {
                return Err(format!(
                    "branches.at_tokens: {t} is past the end of the run ({} tokens)",
                    cfg.train.steps * per_step
                ));
            }
            if schedule.factor(step - 1) < 1.0 {
                return Err(format!(
                    "branches.at_tokens: {t} lies where the run's learning rate is below its peak (warmup or decay)"
                ));
            }
            steps.push(step);
        }
        steps.sort_unstable();
        steps.dedup();
        Ok(steps)
    }
}

impl DecaySpec {
    fn check(&self) -> Result<(), String> {
        match self.length {
            DecayLength::Fraction(f) if !(f > 0.0 && f < 1.0) => {
                return Err(format!("the decay fraction must lie in (0, 1), got {f}"))
            }
            DecayLength::Tokens(0) => return Err("the decay needs a positive token count".into()),
            _ => {}
        }
        if !(0.0..1.0).contains(&self.floor) {
            return Err(format!("the floor must lie in [0, 1), got {}", self.floor));
        }
        if let Some(h) = self.half_life {
            if !(h > 0.0) {
                return Err(format!("the half-life must be positive, got {h}"));
            }
        }
        Ok(())
    }

    /// Decay updates after a trunk of `from_step` updates of `batch_tokens` each.
    fn decay_steps(&self, from_step: u64, batch_tokens: u64) -> u64 {
        let d = match self.length {
            DecayLength::Tokens(t) => (t as f64 / batch_tokens as f64).round() as u64,
            DecayLength::Fraction(f) => (from_step as f64 * f / (1.0 - f)).round() as u64,
        };
        d.max(1)
    }

    /// The default directory name: `<start step>-<fn>-<decay updates>`.
    pub fn default_name(&self, from_step: u64, batch_tokens: u64) -> String {
        let f = serde_json::to_value(self.decay).expect("decay fn serialises");
        format!(
            "step-{from_step:07}-{}-{}",
            f.as_str().unwrap_or("decay"),
            self.decay_steps(from_step, batch_tokens)
        )
    }
}

/// A branch made and ready to train (`train --resume` on `dir`).
#[derive(Debug)]
pub struct Branch {
    pub dir: PathBuf,
    pub decay_steps: u64,
    /// Set when the branch was forced from a checkpoint below the peak learning rate.
    pub warning: Option<String>,
}

/// The run directory a checkpoint belongs to: `<run>/checkpoints/step-N`.
pub fn run_of_checkpoint(checkpoint: &Path) -> Option<PathBuf> {
    let parent = checkpoint.parent()?;
    (parent.file_name()? == "checkpoints").then(|| parent.parent().map(Path::to_path_buf))?
}

/// Makes a branch that decays `checkpoint` as `spec` says, in `<run>/branches/<name>`.
pub fn create(
    checkpoint: &Path,
    spec: &DecaySpec,
    name: Option<&str>,
    force: bool,
) -> Result<Branch, TrainError> {
    let usage = |m: String| TrainError::from(InvalidSetting::new("decay", m));
    spec.check().map_err(usage)?;
    // Absolute, so that the parent's name is known even for `--from checkpoints/step-N`.
    let checkpoint = &checkpoint
        .canonicalize()
        .map_err(|e| ModelError::io(checkpoint, e))?;
    let state_file = checkpoint.join(checkpoint::STATE_FILE);
    if !state_file.is_file() {
        return Err(usage(format!(
            "{}: not a checkpoint (no {})",
            checkpoint.display(),
            checkpoint::STATE_FILE
        )));
    }
    let run = run_of_checkpoint(checkpoint).ok_or_else(|| {
        usage(format!(
            "{}: a checkpoint lives in <run>/checkpoints/step-N",
            checkpoint.display()
        ))
    })?;
    let parent_cfg = RunConfig::load(&run.join(RUN_CONFIG_FILE), &[])?;
    let state: TrainerState = checkpoint::read_state(checkpoint)?;
    if state.step == 0 {
        return Err(usage(format!(
            "{}: update 0 has no training to decay",
            checkpoint.display()
        )));
    }

    // The rate the trunk trained at when this checkpoint was taken: a branch decays from the
    // peak, so a checkpoint below it (in warmup, or itself decaying) needs --force and then
    // decays on from where it was, never jumping back up to the peak.
    let schedule = parent_cfg.schedule.resolve(parent_cfg.train.steps)?;
    let factor = schedule.factor(state.step - 1);
    let below_peak = factor < 1.0 || parent_cfg.branch.is_some();
    let warning = if below_peak {
        let what = format!(
            "{}: the learning rate there is {factor:.3} of the peak ({})",
            checkpoint.display(),
            if parent_cfg.branch.is_some() {
                "the run is itself a decay branch"
            } else if state.step <= schedule_warmup(&parent_cfg) {
                "still warming up"
            } else {
                "already decaying"
            }
        );
        if !force {
            return Err(usage(format!(
                "{what}; decaying it again is allowed only with --force"
            )));
        }
        Some(format!("{what}; the decay continues from that rate"))
    } else {
        None
    };

    let batch_tokens = parent_cfg.train.batch_tokens;
    let decay_steps = spec.decay_steps(state.step, batch_tokens);
    let name = match name {
        Some(n) => n.to_string(),
        None => spec.default_name(state.step, batch_tokens),
    };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(usage(format!(
            "branch name {name:?}: use a plain directory name"
        )));
    }

    let mut cfg = parent_cfg.clone();
    cfg.schedule = ScheduleConfig::Wsd {
        warmup_steps: schedule_warmup(&parent_cfg).min(state.step),
        decay_fraction: None,
        decay_steps: Some(decay_steps),
        decay: spec.decay,
        half_life: spec.half_life,
        floor: spec.floor,
        decay_from: below_peak.then_some(factor.max(spec.floor)),
    };
    cfg.train.steps = state.step + decay_steps;
    if let Some(phase) = &spec.phase {
        cfg.data.decay_phase = Some(phase.clone());
    }
    // A branch does not branch again on its own.
    cfg.branches = None;
    cfg.branch = Some(BranchOrigin {
        parent: run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        step: state.step,
        tokens: state.tokens,
    });
    cfg.validate(&format!("branch {name}"))?;

    let root = run.join(BRANCHES_DIR);
    let dir = root.join(&name);
    if dir.exists() {
        return Err(usage(format!(
            "{}: a branch of that name exists; continue it with `minicpm train --resume {}` or pass --name",
            dir.display(),
            dir.display()
        )));
    }
    // Assembled under a hidden name and renamed into place, so a branch directory is either
    // complete or absent.
    let tmp = root.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    let ckpt_name = checkpoint
        .file_name()
        .expect("a checkpoint directory has a name");
    let linked = tmp.join("checkpoints").join(ckpt_name);
    link_tree(checkpoint, &linked)?;
    write_atomic(&tmp.join(RUN_CONFIG_FILE), cfg.to_toml().as_bytes())?;
    std::fs::rename(&tmp, &dir).map_err(|e| ModelError::io(&dir, e))?;
    Ok(Branch {
        dir,
        decay_steps,
        warning,
    })
}

fn schedule_warmup(cfg: &RunConfig) -> u64 {
    cfg.schedule.warmup_steps()
}

/// Mirrors a directory of files by hard links (a copy where links are impossible, e.g. across
/// file systems).
fn link_tree(from: &Path, to: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(to).map_err(|e| ModelError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| ModelError::io(from, e))? {
        let entry = entry.map_err(|e| ModelError::io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            link_tree(&src, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| ModelError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Branches of a run, by name.
pub fn list(run: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run.join(BRANCHES_DIR)) else {
        return vec![];
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.join(RUN_CONFIG_FILE).is_file())
        .collect();
    out.sort();
    out
}
