//! The step loop: micro-batches accumulated into one AdamW update at the scheduled learning
//! rate, periodic logging, evaluation and checkpoints, Ctrl-C saving, and exact resume.

use crate::branch::{self, DecaySpec};
use crate::checkpoint::{self, Retention, TrainerState};
use crate::config::RunConfig;
use crate::diagnostics::{cosine, flat_gradients, flat_weights, max_abs_change};
use crate::loss::{evaluate, lm_loss, EvalResult};
use crate::metrics::{MetricsLog, Record};
use crate::optimizer::AdamW;
use crate::run_data::RunData;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use minicpm_data::batches::eval_batches;
use minicpm_data::mixture::MixtureCursor;
use minicpm_data::DataError;
use minicpm_model::{hf, init, mup, MiniCpm, ModelConfig, ModelError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub const RUN_CONFIG_FILE: &str = "run.toml";

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Usage(String),
}

pub struct TrainOptions {
    pub run_dir: PathBuf,
    /// A new run's config; `None` with `resume` reads the run's own `run.toml`.
    pub config: Option<RunConfig>,
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to save a checkpoint and stop after the current update.
    pub stop: Arc<AtomicBool>,
    pub progress: bool,
    pub device: Device,
}

#[derive(Debug)]
pub struct TrainOutcome {
    pub steps_done: u64,
    pub interrupted: bool,
    /// Held-out loss of the freshly initialised model (new runs only).
    pub initial_eval: Option<EvalResult>,
    pub final_eval: Option<EvalResult>,
    pub last_checkpoint: Option<PathBuf>,
}

/// The first field where two model configs differ, for a one-line error.
fn first_difference(a: &ModelConfig, b: &ModelConfig) -> Option<String> {
    let (va, vb) = (serde_json::to_value(a).ok()?, serde_json::to_value(b).ok()?);
    let (ma, mb) = (va.as_object()?, vb.as_object()?);
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
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

fn show(v: Option<&serde_json::Value>) -> String {
    v.map_or("absent".into(), |v| v.to_string())
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
        Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::Usage(format!(
            "{}: another process is training this run",
            run.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(ModelError::io(&path, e).into()),
    }
}

pub fn train(opts: TrainOptions) -> Result<TrainOutcome, TrainError> {
    let run = &opts.run_dir;
    let run_toml = run.join(RUN_CONFIG_FILE);
    let cfg = match (&opts.config, opts.resume) {
        (Some(c), _) => c.clone(),
        (None, true) => RunConfig::load(&run_toml, &[])?,
        (None, false) => return Err(TrainError::Usage("a new run needs --config".into())),
    };
    let model_cfg = mup::resolve(&cfg.model, cfg.parametrization);
    let device = &opts.device;

    let resume_from = if opts.resume {
        checkpoint::latest(run)
    } else {
        None
    };
    if !opts.resume && (run_toml.exists() || !checkpoint::list(run).is_empty()) {
        return Err(TrainError::Usage(format!(
            "{}: a run already exists here; continue it with --resume or choose another --out",
            run.display()
        )));
    }

    let data = RunData::open(&cfg, model_cfg.vocab_size)?;

    let (mut model, mut opt, mut state) = match &resume_from {
        Some((_, dir)) => {
            let saved = ModelConfig::from_hf_json(&dir.join(hf::CONFIG_FILE))?;
            if let Some(diff) = first_difference(&model_cfg, &saved) {
                return Err(TrainError::Usage(format!(
                    "{}: cannot resume: the model config changed: {diff}",
                    dir.join(hf::CONFIG_FILE).display()
                )));
            }
            let model = hf::load_weights(dir, &model_cfg, device)?;
            let mut opt = AdamW::new(cfg.optim.clone(), &model_cfg, cfg.parametrization);
            opt.load(&dir.join(checkpoint::OPTIMIZER_FILE), &model)?;
            let state = checkpoint::read_state(dir)?;
            tracing::info!("resuming {} at update {}", run.display(), state.step);
            (model, opt, state)
        }
        None => {
            std::fs::create_dir_all(run).map_err(|e| ModelError::io(run, e))?;
            let model = init::init_model(&model_cfg, cfg.parametrization, cfg.seed, device);
            let opt = AdamW::new(cfg.optim.clone(), &model_cfg, cfg.parametrization);
            let state = TrainerState {
                step: 0,
                tokens: 0,
                data_cursor: MixtureCursor::default(),
                seed: cfg.seed,
                wall_time_s: 0.0,
            };
            (model, opt, state)
        }
    };
    // Held until this function returns: a second process on the same run (a sweep started
    // twice, a resume while the run still trains) stops here instead of interleaving writes.
    let _lock = lock_run(run)?;
    minicpm_model::safetensors_io::write_atomic(&run_toml, cfg.to_toml().as_bytes())?;

    let schedule = cfg
        .schedule
        .resolve(cfg.train.steps)
        .map_err(TrainError::Usage)?;
    let mut log = MetricsLog::open(run, state.step)?;
    let mut mixture = data.mixture(cfg.train.seq_len, state.seed, &state.data_cursor)?;
    let evals = eval_batches(
        &data.valid,
        cfg.train.seq_len,
        cfg.train.micro_batch,
        cfg.train.eval_batches,
    );
    let bpt = data.valid.bytes_per_token();
    let accum = cfg.accumulation();
    let t = &cfg.train;
    let tokenizer = cfg.data.tokenizer.as_deref().filter(|p| p.exists());

    // Decay branches made on the way: a checkpoint is kept at each start, and a resumed run
    // first finishes any branch that an interruption left undone.
    let (branch_steps, branch_spec) = match &cfg.branches {
        Some(b) => (
            b.steps(&cfg).map_err(TrainError::Usage)?,
            Some(b.spec().map_err(TrainError::Usage)?),
        ),
        None => (vec![], None),
    };
    let retention = Retention {
        keep: t.keep_checkpoints,
        pinned: &branch_steps,
    };

    let bar = if opts.progress {
        ProgressBar::new(t.steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar.set_position(state.step);

    let initial_eval = resume_from
        .is_none()
        .then(|| evaluate(&model, &evals, bpt, device));
    let mut outcome = TrainOutcome {
        steps_done: state.step,
        interrupted: false,
        initial_eval,
        final_eval: None,
        last_checkpoint: None,
    };
    if let Some(spec) = &branch_spec {
        for &at in branch_steps.iter().filter(|&&at| at <= state.step) {
            if decay_branch(run, at, spec, t.batch_tokens, &opts, &bar)? {
                outcome.interrupted = true;
                return Ok(outcome);
            }
        }
    }
    // Updates that log a record: every `log_every`-th, and each one followed by an evaluation.
    let evaluates_after = |n: u64| n == t.steps || (t.eval_every > 0 && n % t.eval_every == 0);
    let logged = |s: u64| evaluates_after(s + 1) || s % t.log_every.max(1) == 0;
    let mut prev_grads: Option<(u64, Vec<f32>)> = None;
    let session_start = Instant::now();
    let wall_before = state.wall_time_s;
    let mut window_start = Instant::now();
    let mut window_tokens = 0u64;
    while state.step < t.steps {
        let s = state.step;
        let lr = cfg.optim.lr * schedule.factor(s);
        // MiniCPM's two-stage pre-training: the decay phase draws from the `decay` mixture.
        let phase = if schedule.in_decay(s) {
            cfg.data.decay_phase()
        } else {
            "stable"
        };
        let mut acc = GradientsAccumulator::<MiniCpm>::new();
        let mut loss_sum = 0.0;
        for _ in 0..accum {
            let (batch, _) = mixture.next_batch(phase, t.micro_batch);
            let loss = lm_loss(&model, &batch, device);
            let scaled = if accum > 1 {
                loss.clone().div_scalar(accum as f64)
            } else {
                loss.clone()
            };
            let grads = GradientsParams::from_grads(scaled.backward(), &model);
            acc.accumulate(&model, grads);
            loss_sum += loss.into_scalar::<f32>() as f64;
        }
        let grads = acc.grads();
        let (mut grad_cos, mut max_update) = (None, None);
        let weights_before = (t.diagnostics && logged(s)).then(|| flat_weights(&model));
        if t.diagnostics && (logged(s) || logged(s + 1)) {
            let g = flat_gradients(&model, &grads);
            if let Some((prev_step, prev)) = &prev_grads {
                if *prev_step + 1 == s && logged(s) {
                    grad_cos = cosine(prev, &g);
                }
            }
            prev_grads = Some((s, g));
        }
        let (updated, stats) = opt.step(model, grads, lr);
        model = updated;
        if let Some(before) = weights_before {
            max_update = max_abs_change(&before, &flat_weights(&model));
        }
        state.step += 1;
        state.tokens += t.batch_tokens;
        state.data_cursor = mixture.cursor();
        window_tokens += t.batch_tokens;

        let done = state.step == t.steps;
        let stop = opts.stop.load(Ordering::SeqCst);
        let eval_now = evaluates_after(state.step);
        let eval = eval_now.then(|| evaluate(&model, &evals, bpt, device));
        if logged(s) {
            let elapsed = window_start.elapsed().as_secs_f64();
            let record = Record {
                step: s,
                tokens: state.tokens,
                lr,
                loss: loss_sum / accum as f64,
                grad_norm: stats.grad_norm,
                tok_s: window_tokens as f64 / elapsed.max(1e-9),
                eval_loss: eval.map(|e| e.loss),
                eval_bpb: eval.and_then(|e| e.bits_per_byte),
                grad_cos,
                max_update,
            };
            log.append(&record)?;
            bar.set_message(format!(
                "tokens {} loss {:.4} lr {:.2e} {:.0} tok/s{}",
                state.tokens,
                record.loss,
                lr,
                record.tok_s,
                eval.map_or(String::new(), |e| format!(" eval {:.4}", e.loss))
            ));
            window_start = Instant::now();
            window_tokens = 0;
        }
        if let Some(e) = eval {
            outcome.final_eval = Some(e);
        }
        bar.set_position(state.step);

        let branch_now = branch_steps.contains(&state.step);
        let ckpt_now = done
            || stop
            || branch_now
            || (t.checkpoint_every > 0 && state.step % t.checkpoint_every == 0);
        if ckpt_now {
            state.wall_time_s = wall_before + session_start.elapsed().as_secs_f64();
            let dir = checkpoint::save(run, &model, &opt, &state, tokenizer, retention)?;
            outcome.last_checkpoint = Some(dir);
        }
        if let (true, false, Some(spec)) = (branch_now, stop, &branch_spec) {
            if decay_branch(run, state.step, spec, t.batch_tokens, &opts, &bar)? {
                outcome.interrupted = true;
                break;
            }
        }
        if stop && !done {
            outcome.interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();
    outcome.steps_done = state.step;
    if outcome.last_checkpoint.is_none() {
        outcome.last_checkpoint = checkpoint::latest(run).map(|(_, p)| p);
    }
    Ok(outcome)
}

/// Makes (if needed) and trains to its end the automatic decay branch from update `at`;
/// returns whether it was interrupted.
fn decay_branch(
    run: &Path,
    at: u64,
    spec: &DecaySpec,
    batch_tokens: u64,
    opts: &TrainOptions,
    bar: &ProgressBar,
) -> Result<bool, TrainError> {
    let dir = run
        .join(branch::BRANCHES_DIR)
        .join(spec.default_name(at, batch_tokens));
    if !dir.join(RUN_CONFIG_FILE).is_file() {
        let from = checkpoint::checkpoints_dir(run).join(checkpoint::step_dir_name(at));
        branch::create(&from, spec, None, false)?;
    }
    let sub = TrainOptions {
        run_dir: dir.clone(),
        config: None,
        resume: true,
        stop: opts.stop.clone(),
        progress: opts.progress,
        device: opts.device.clone(),
    };
    let outcome = bar.suspend(|| train(sub))?;
    if let Some(e) = outcome.final_eval {
        tracing::info!(
            "branch {}: held-out loss {:.4} after {} updates",
            dir.display(),
            e.loss,
            outcome.steps_done
        );
    }
    Ok(outcome.interrupted)
}
