//! Opening a run directory to train: a new run from its config, or an existing one resumed from
//! its latest checkpoint with the weights, the optimizer state and the data cursor exactly as
//! they were saved, its data opened and checked. The run is locked while it trains.
//!
//! Several ranks training one run ([`open_on`]) open it one after another: rank 0 as one process
//! would, writing what a new run writes; then the others read what it opened, and every rank
//! checks that all run the same program, config and weights.

use crate::checkpoint::{self, TrainerState};
use crate::collective::{agree, can_share, fingerprint, same_everywhere, Collective};
use crate::config::RunConfig;
use crate::error::TrainError;
use crate::finetune::{FinetuneConfig, FinetuneKind, PairData, SftData};
use crate::optimizer::AdamW;
use crate::run_data::RunData;
use burn::tensor::Device;
use minicpm_data::mixture::MixtureCursor;
use minicpm_model::safetensors_io::write_atomic;
use minicpm_model::{hf, init, mup, MiniCpm, ModelConfig, ModelError};
use std::path::{Path, PathBuf};

pub const RUN_CONFIG_FILE: &str = "run.toml";

/// A run ready to train.
pub struct OpenRun {
    pub cfg: RunConfig,
    /// The model config with the parametrisation's multipliers (see [`mup::resolve`]).
    pub model_cfg: ModelConfig,
    pub model: MiniCpm,
    pub opt: AdamW,
    pub state: TrainerState,
    /// The checkpoint it resumed from; `None` for a new run.
    pub resumed_from: Option<PathBuf>,
    /// Held while the run trains: a second process on the same run (a sweep started twice, a
    /// resume while the run still trains) stops with an error instead of interleaving writes.
    /// Only the process that writes the run holds it.
    _lock: Option<std::fs::File>,
}

/// Opens `run`: a new run of `config`, or with `resume` the run's latest checkpoint (its own
/// `run.toml` when `config` is `None`), and what it trains on. Writes the run's config.
pub fn open(
    run: &Path,
    config: Option<&RunConfig>,
    resume: bool,
    device: &Device,
) -> Result<(OpenRun, RunInputs), TrainError> {
    open_as(run, config, resume, device, true)
}

/// [`open`] by every rank of `world` (one process when `None`). Every rank returns the same
/// outcome: a failure on any rank is an error on all of them, and the ranks check that they
/// can train together before anything is written.
pub fn open_on(
    run: &Path,
    config: Option<&RunConfig>,
    resume: bool,
    device: &Device,
    world: Option<&dyn Collective>,
) -> Result<(OpenRun, RunInputs), TrainError> {
    let Some(w) = world else {
        return open(run, config, resume, device);
    };
    let cfg = agree(w, run_config(run, config, resume))?;
    can_train_together(w, &cfg)?;
    let first = match w.rank() {
        0 => open(run, Some(&cfg), resume, device).map(Some),
        _ => Ok(None),
    };
    let opened = match agree(w, first)? {
        Some(opened) => Ok(opened),
        None => open_as(run, Some(&cfg), resume, device, false),
    };
    let opened = agree(w, opened)?;
    let weights: Vec<u8> = crate::diagnostics::flat_weights(&opened.0.model)
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let state = serde_json::to_vec(&opened.0.state).expect("the trainer state serialises");
    let what = "checkpoint (weights or trainer state)";
    same_everywhere(w, what, fingerprint(&[&weights, &state]))?;
    Ok(opened)
}

/// Checks that every rank runs the same program and config, and that the config can be shared
/// by this many ranks: the same error on every rank when not.
fn can_train_together(w: &dyn Collective, cfg: &RunConfig) -> Result<(), TrainError> {
    let program = std::env::current_exe()
        .and_then(std::fs::read)
        .map_err(|e| TrainError::Distribution(format!("cannot read this program: {e}")));
    let program = agree(w, program)?;
    same_everywhere(w, "build of minicpm", fingerprint(&[&program]))?;
    same_everywhere(w, "config", fingerprint(&[cfg.to_toml().as_bytes()]))?;
    can_share(w, cfg.accumulation())?;
    if cfg.finetune.is_some() {
        return Err(TrainError::Distribution(
            "fine-tuning runs train as one process; data parallelism covers pre-training".into(),
        ));
    }
    Ok(())
}

/// The config a run trains with: `config`, or with `resume` and no `config` the run's own.
fn run_config(
    run: &Path,
    config: Option<&RunConfig>,
    resume: bool,
) -> Result<RunConfig, TrainError> {
    match (config, resume) {
        (Some(c), _) => Ok(c.clone()),
        (None, true) => Ok(RunConfig::load(&run.join(RUN_CONFIG_FILE), &[])?),
        (None, false) => Err(TrainError::NoConfig),
    }
}

/// [`open`], writing the run (its directory, lock and config) only when `writes`; a reader opens
/// what the writer opened a moment before.
fn open_as(
    run: &Path,
    config: Option<&RunConfig>,
    resume: bool,
    device: &Device,
    writes: bool,
) -> Result<(OpenRun, RunInputs), TrainError> {
    let run_toml = run.join(RUN_CONFIG_FILE);
    let cfg = run_config(run, config, resume)?;
    let model_cfg = mup::resolve(&cfg.model, cfg.parametrization);
    let latest = if resume {
        checkpoint::latest(run)
    } else {
        None
    };
    if writes && !resume && (run_toml.exists() || !checkpoint::list(run).is_empty()) {
        return Err(TrainError::RunExists(run.to_path_buf()));
    }
    let data = RunInputs::open(&cfg, model_cfg.vocab_size)?;
    let (model, opt, state, resumed_from) = match latest {
        Some((_, dir)) => {
            let (model, opt, state) = load_checkpoint(&dir, &cfg, &model_cfg, device)?;
            if writes {
                tracing::info!("resuming {} at update {}", run.display(), state.step);
            }
            (model, opt, state, Some(dir))
        }
        None => {
            let (model, opt) = match &cfg.finetune {
                None => fresh(&cfg, device),
                Some(f) => load_model(&f.base, &cfg, &model_cfg, device)?,
            };
            if writes {
                std::fs::create_dir_all(run).map_err(|e| ModelError::io(run, e))?;
            }
            let state = TrainerState {
                step: 0,
                tokens: 0,
                data_cursor: MixtureCursor::default(),
                seed: cfg.seed,
                wall_time_s: 0.0,
            };
            (model, opt, state, None)
        }
    };
    let lock = match writes {
        true => {
            let lock = lock_run(run)?;
            write_atomic(&run_toml, cfg.to_toml().as_bytes())?;
            Some(lock)
        }
        false => None,
    };
    let open = OpenRun {
        cfg,
        model_cfg,
        model,
        opt,
        state,
        resumed_from,
        _lock: lock,
    };
    Ok((open, data))
}

/// What a run trains on, opened and checked before anything is written.
pub enum RunInputs {
    Pretraining(RunData),
    Sft(SftData, FinetuneConfig),
    Pairs(PairData, FinetuneConfig),
}

impl RunInputs {
    fn open(cfg: &RunConfig, vocab_size: usize) -> Result<Self, TrainError> {
        let seq_len = cfg.train.seq_len;
        Ok(match &cfg.finetune {
            None => RunInputs::Pretraining(RunData::open(cfg, vocab_size)?),
            Some(f) if f.kind == FinetuneKind::Sft => {
                RunInputs::Sft(SftData::open(f, seq_len, vocab_size)?, f.clone())
            }
            Some(f) => RunInputs::Pairs(PairData::read(f, seq_len, vocab_size)?, f.clone()),
        })
    }
}

/// The model in HF directory `dir` (a fine-tuning run's base, or a checkpoint), which must be
/// of `model_cfg`, and a fresh optimizer for it.
fn load_model(
    dir: &Path,
    cfg: &RunConfig,
    model_cfg: &ModelConfig,
    device: &Device,
) -> Result<(MiniCpm, AdamW), TrainError> {
    let config_json = dir.join(hf::CONFIG_FILE);
    let saved = ModelConfig::from_hf_json(&config_json)?;
    if let Some(diff) = first_difference(model_cfg, &saved) {
        return Err(TrainError::ConfigChanged {
            path: config_json,
            diff,
        });
    }
    let model = hf::load_weights(dir, model_cfg, device)?;
    let opt = AdamW::new(cfg.optim.clone(), model_cfg, cfg.lr_rules());
    Ok((model, opt))
}

/// A new model of `cfg`, initialised by its parametrisation from its seed, and its optimizer.
pub fn fresh(cfg: &RunConfig, device: &Device) -> (MiniCpm, AdamW) {
    let model_cfg = mup::resolve(&cfg.model, cfg.parametrization);
    let model = init::init_model(&model_cfg, cfg.parametrization, cfg.seed, device);
    let opt = AdamW::new(cfg.optim.clone(), &model_cfg, cfg.lr_rules());
    (model, opt)
}

/// The model, optimizer and trainer state of checkpoint `dir`, which must be of `model_cfg`.
fn load_checkpoint(
    dir: &Path,
    cfg: &RunConfig,
    model_cfg: &ModelConfig,
    device: &Device,
) -> Result<(MiniCpm, AdamW, TrainerState), TrainError> {
    let (model, mut opt) = load_model(dir, cfg, model_cfg, device)?;
    opt.load(&dir.join(checkpoint::OPTIMIZER_FILE), &model)?;
    let state = checkpoint::read_state(dir)?;
    Ok((model, opt, state))
}

/// The first field where two model configs differ, for a one-line error.
fn first_difference(now: &ModelConfig, saved: &ModelConfig) -> Option<String> {
    let (va, vb) = (
        serde_json::to_value(now).ok()?,
        serde_json::to_value(saved).ok()?,
    );
    let (ma, mb) = (va.as_object()?, vb.as_object()?);
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| v.map_or("absent".into(), |v| v.to_string());
    keys.into_iter()
        .find(|k| ma.get(*k) != mb.get(*k))
        .map(|k| {
            format!(
                "{k} ({} in the checkpoint, {} now)",
                show(mb.get(k)),
                show(ma.get(k))
            )
        })
}

/// An exclusive lock on `<run>/.lock`, released when the file is dropped (or the process dies).
fn lock_run(run: &Path) -> Result<std::fs::File, TrainError> {
    let path = run.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ModelError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::Locked(run.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(ModelError::io(&path, e).into()),
    }
}
