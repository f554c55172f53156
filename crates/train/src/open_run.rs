//! Opening a run directory to train: a new run from its config, or an existing one resumed from
//! its latest checkpoint with the weights, the optimizer state and the data cursor exactly as
//! they were saved, its data opened and checked. The run is locked while it trains.

use crate::checkpoint::{self, TrainerState};
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
    _lock: std::fs::File,
}

/// Opens `run`: a new run of `config`, or with `resume` the run's latest checkpoint (its own
/// `run.toml` when `config` is `None`), and what it trains on. Writes the run's config.
pub fn open(
    run: &Path,
    config: Option<&RunConfig>,
    resume: bool,
    device: &Device,
) -> Result<(OpenRun, RunInputs), TrainError> {
    let run_toml = run.join(RUN_CONFIG_FILE);
    let cfg = match (config, resume) {
        (Some(c), _) => c.clone(),
        (None, true) => RunConfig::load(&run_toml, &[])?,
        (None, false) => return Err(TrainError::NoConfig),
    };
    let model_cfg = mup::resolve(&cfg.model, cfg.parametrization);
    let latest = if resume {
        checkpoint::latest(run)
    } else {
        None
    };
    if !resume && (run_toml.exists() || !checkpoint::list(run).is_empty()) {
        return Err(TrainError::RunExists(run.to_path_buf()));
    }
    let data = RunInputs::open(&cfg, model_cfg.vocab_size)?;
    let (model, opt, state, resumed_from) = match latest {
        Some((_, dir)) => {
            let (model, opt, state) = load_checkpoint(&dir, &cfg, &model_cfg, device)?;
            tracing::info!("resuming {} at update {}", run.display(), state.step);
            (model, opt, state, Some(dir))
        }
        None => {
            let (model, opt) = match &cfg.finetune {
                None => fresh(&cfg, device),
                Some(f) => load_model(&f.base, &cfg, &model_cfg, device)?,
            };
            std::fs::create_dir_all(run).map_err(|e| ModelError::io(run, e))?;
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
    let lock = lock_run(run)?;
    write_atomic(&run_toml, cfg.to_toml().as_bytes())?;
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
