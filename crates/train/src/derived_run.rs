//! A new run directory made from another run's checkpoint (an upcycled mixture of experts, a
//! context extension): where the parent is, and writing the new directory so that it is complete
//! or absent.

use crate::branch::run_of_checkpoint;
use crate::checkpoint::{self, STATE_FILE};
use crate::config::RunConfig;
use crate::error::{InvalidSetting, TrainError};
use crate::open_run::RUN_CONFIG_FILE;
use minicpm_model::safetensors_io::write_atomic;
use minicpm_model::ModelError;
use std::path::{Path, PathBuf};

/// The checkpoint a new run starts from.
pub struct Parent {
    /// The checkpoint directory, absolute.
    pub checkpoint: PathBuf,
    /// The run it belongs to, and that run's config.
    pub run: PathBuf,
    pub config: RunConfig,
}

/// Opens the parent `checkpoint` (`<run>/checkpoints/step-N`) of a new run `out`, which must not
/// exist; `command` names the command in errors.
pub fn open_parent(checkpoint: &Path, out: &Path, command: &str) -> Result<Parent, TrainError> {
    let usage = |m: String| TrainError::from(InvalidSetting::new(command, m));
    let abs = checkpoint
        .canonicalize()
        .map_err(|e| ModelError::io(checkpoint, e))?;
    if !abs.join(STATE_FILE).is_file() {
        return Err(usage(format!(
            "{}: not a checkpoint (no {STATE_FILE})",
            checkpoint.display()
        )));
    }
    let run = run_of_checkpoint(&abs).ok_or_else(|| {
        usage(format!(
            "{}: a checkpoint lives in <run>/checkpoints/step-N",
            checkpoint.display()
        ))
    })?;
    if out.exists() {
        return Err(usage(format!(
            "{}: exists; {command} writes a new run directory",
            out.display()
        )));
    }
    let config = RunConfig::load(&run.join(RUN_CONFIG_FILE), &[])?;
    Ok(Parent {
        checkpoint: abs,
        run,
        config,
    })
}

/// Writes the run `out` with `config` and one checkpoint at update `step`, whose files
/// `fill(checkpoint_dir)` writes; the parent's tokenizer files are copied into it. The run is
/// assembled under a hidden name beside `out` and renamed into place.
pub fn write_run(
    out: &Path,
    parent: &Parent,
    config: &RunConfig,
    step: u64,
    fill: impl FnOnce(&Path) -> Result<(), ModelError>,
) -> Result<PathBuf, TrainError> {
    let name = out.file_name().ok_or_else(|| {
        InvalidSetting::new("out", format!("{}: not a directory name", out.display()))
    })?;
    let tmp = out.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    let ckpt = checkpoint::checkpoints_dir(&tmp).join(checkpoint::step_dir_name(step));
    fill(&ckpt)?;
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let src = parent.checkpoint.join(file);
        if src.is_file() {
            let bytes = std::fs::read(&src).map_err(|e| ModelError::io(&src, e))?;
            write_atomic(&ckpt.join(file), &bytes)?;
        }
    }
    write_atomic(&tmp.join(RUN_CONFIG_FILE), config.to_toml().as_bytes())?;
    std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))?;
    Ok(out.to_path_buf())
}
