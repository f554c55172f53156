//! Checkpoints: `runs/<name>/checkpoints/step-NNNNNNN/` holds an HF model directory plus
//! `optimizer.safetensors` and `trainer_state.json`. A checkpoint is written into a hidden temp
//! directory and renamed into place, so a crash mid-write leaves the previous ones intact and a
//! directory named `step-*` is always complete.

use crate::optimizer::AdamW;
use burn::module::Module;
use minicpm_data::chat_template::ChatTemplate;
use minicpm_data::mixture::MixtureCursor;
use minicpm_model::hf;
use minicpm_model::safetensors_io::write_atomic;
use minicpm_model::{MiniCpm, ModelError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";

/// Where the run stands: enough, with the weights and optimizer state, to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// Optimizer updates completed.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Position in the data mixture (rows drawn, windows consumed per source); the order itself
    /// is a function of the seed.
    pub data_cursor: MixtureCursor,
    /// The seed of the data order and of the initialisation.
    pub seed: u64,
    /// Wall-clock seconds of training so far, summed over resumptions.
    pub wall_time_s: f64,
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:07}")
}

/// Complete checkpoints of a run, oldest first.
pub fn list(run: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(checkpoints_dir(run)) else {
        return vec![];
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join(STATE_FILE).exists().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

pub fn latest(run: &Path) -> Option<(u64, PathBuf)> {
    list(run).pop()
}

/// How many checkpoints to keep: the newest `keep` (0 keeps all), plus the `pinned` steps
/// whatever their age (the starting points of decay branches).
#[derive(Debug, Clone, Copy)]
pub struct Retention<'a> {
    pub keep: usize,
    pub pinned: &'a [u64],
}

/// When a run saves checkpoints and which it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPolicy {
    /// Save every this many updates (0: only at the end, when stopped, and at pinned steps).
    pub every: u64,
    /// Keep the newest this many (0 keeps all).
    pub keep: usize,
    /// Steps saved and kept whatever their age: where decay branches start.
    pub pinned: Vec<u64>,
}

impl CheckpointPolicy {
    /// Whether to save once `done` updates are made; `last` when the run is complete,
    /// `stopping` when it was asked to stop.
    pub fn due(&self, done: u64, last: bool, stopping: bool) -> bool {
        last || stopping
            || self.pinned.contains(&done)
            || (self.every > 0 && done.is_multiple_of(self.every))
    }

    pub fn retention(&self) -> Retention<'_> {
        Retention {
            keep: self.keep,
            pinned: &self.pinned,
        }
    }
}

/// What a checkpoint carries besides the weights and the trainer's state, so that it is a
/// complete HF model directory.
#[derive(Debug, Clone, Default)]
pub struct CheckpointFiles {
    /// tokenizer.json, copied.
    pub tokenizer: Option<PathBuf>,
    /// The chat template a fine-tuned model was tuned on, for tokenizer_config.json.
    pub chat_template: Option<ChatTemplate>,
}

/// Writes a checkpoint for `state.step`, then retires those that `retention` does not keep.
pub fn save(
    run: &Path,
    model: &MiniCpm,
    opt: &AdamW,
    state: &TrainerState,
    files: &CheckpointFiles,
    retention: Retention,
) -> Result<PathBuf, ModelError> {
    let root = checkpoints_dir(run);
    std::fs::create_dir_all(&root).map_err(|e| ModelError::io(&root, e))?;
    let name = step_dir_name(state.step);
    let final_dir = root.join(&name);
    // Hidden temp directories are never complete checkpoints: leftovers of a crash mid-write.
    for e in std::fs::read_dir(&root)
        .map_err(|e| ModelError::io(&root, e))?
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(".step-") && n.ends_with(".tmp") {
            std::fs::remove_dir_all(e.path()).map_err(|err| ModelError::io(&e.path(), err))?;
        }
    }
    let tmp = root.join(format!(".{name}.tmp"));
    hf::save(&model.valid(), &tmp)?;
    opt.save(&tmp.join(OPTIMIZER_FILE))?;
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    write_atomic(&tmp.join(STATE_FILE), &json)?;
    if let Some(t) = &files.tokenizer {
        let bytes = std::fs::read(t).map_err(|e| ModelError::io(t, e))?;
        write_atomic(&tmp.join("tokenizer.json"), &bytes)?;
    }
    if let Some(template) = files.chat_template {
        write_atomic(
            &tmp.join("tokenizer_config.json"),
            template.tokenizer_config().as_bytes(),
        )?;
    }
    if final_dir.exists() {
        // The same step saved again (a resumed, already finished run): move the old one aside
        // first, so that a complete checkpoint of this step exists at every moment but one rename.
        let aside = root.join(format!(".{name}.old.tmp"));
        std::fs::rename(&final_dir, &aside).map_err(|e| ModelError::io(&final_dir, e))?;
        std::fs::rename(&tmp, &final_dir).map_err(|e| ModelError::io(&final_dir, e))?;
        std::fs::remove_dir_all(&aside).map_err(|e| ModelError::io(&aside, e))?;
    } else {
        std::fs::rename(&tmp, &final_dir).map_err(|e| ModelError::io(&final_dir, e))?;
    }
    retire_unkept(run, retention)?;
    Ok(final_dir)
}

/// Retires every checkpoint of `run` that `retention` does not keep.
fn retire_unkept(run: &Path, retention: Retention) -> Result<(), ModelError> {
    if retention.keep == 0 {
        return Ok(());
    }
    let unpinned: Vec<_> = list(run)
        .into_iter()
        .filter(|(step, _)| !retention.pinned.contains(step))
        .collect();
    for (_, old) in unpinned
        .iter()
        .take(unpinned.len().saturating_sub(retention.keep))
    {
        retire(old)?;
    }
    Ok(())
}

/// Removes a checkpoint without ever leaving a half-deleted `step-*` directory behind: it is
/// renamed to a hidden temp name first (one atomic step), then deleted. A crash during the
/// deletion leaves only a hidden leftover, which the next save clears.
fn retire(dir: &Path) -> Result<(), ModelError> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let aside = dir.with_file_name(format!(".{name}.retired.tmp"));
    std::fs::rename(dir, &aside).map_err(|e| ModelError::io(dir, e))?;
    std::fs::remove_dir_all(&aside).map_err(|e| ModelError::io(&aside, e))
}

pub fn read_state(dir: &Path) -> Result<TrainerState, ModelError> {
    let p = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| ModelError::io(&p, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Parse {
        origin: p.display().to_string(),
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_checkpoint(run: &Path, step: u64) -> PathBuf {
        let dir = checkpoints_dir(run).join(step_dir_name(step));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), b"weights").unwrap();
        std::fs::write(dir.join(STATE_FILE), b"{}").unwrap();
        dir
    }

    #[test]
    fn saves_at_the_interval_the_pinned_steps_the_end_and_a_stop() {
        let p = CheckpointPolicy {
            every: 40,
            keep: 2,
            pinned: vec![30, 80],
        };
        let due: Vec<u64> = (1..=100).filter(|&n| p.due(n, n == 100, false)).collect();
        assert_eq!(due, [30, 40, 80, 100]);
        assert!(p.due(57, false, true), "a stop saves where the run stands");
        let never = CheckpointPolicy {
            every: 0,
            keep: 0,
            pinned: vec![],
        };
        assert!((1..100).all(|n| !never.due(n, false, false)));
        assert!(never.due(100, true, false));
    }

    #[test]
    fn retention_keeps_the_newest_and_every_pinned_step() {
        let run = tempfile::tempdir().unwrap();
        let p = CheckpointPolicy {
            every: 10,
            keep: 2,
            pinned: vec![10],
        };
        for step in [10, 20, 30, 40] {
            fake_checkpoint(run.path(), step);
        }
        retire_unkept(run.path(), p.retention()).unwrap();
        let steps: Vec<u64> = list(run.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, [10, 30, 40]);
    }

    #[test]
    fn retiring_leaves_neither_the_checkpoint_nor_a_leftover() {
        let run = tempfile::tempdir().unwrap();
        let old = fake_checkpoint(run.path(), 10);
        fake_checkpoint(run.path(), 20);
        retire(&old).unwrap();
        let names: Vec<String> = std::fs::read_dir(checkpoints_dir(run.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["step-0000020".to_string()]);
    }

    #[test]
    fn directories_without_a_trainer_state_are_not_checkpoints() {
        let run = tempfile::tempdir().unwrap();
        fake_checkpoint(run.path(), 10);
        let partial = fake_checkpoint(run.path(), 20);
        std::fs::remove_file(partial.join(STATE_FILE)).unwrap();
        let steps: Vec<u64> = list(run.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![10]);
    }
}
