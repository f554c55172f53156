//! The training loop: each update draws its micro-batches from the run's [`Recipe`] (for
//! pre-training, the data mixture of its phase: MiniCPM's two-stage pre-training draws the decay
//! from the `decay` mixture; for fine-tuning, conversations or preference pairs), runs the one
//! training [`Step`] at the scheduled learning rate, and hands what happened to the components
//! that log, evaluate, save checkpoints and start decay branches. Ctrl-C saves and stops;
//! `--resume` continues exactly where a run stopped.
//!
//! Trained by several ranks (`TrainOptions::world`), every rank draws every micro-batch, so the
//! data order is the same whatever their number, and computes its share of them; rank 0 alone
//! evaluates, logs and writes checkpoints, and a stop asked of any rank stops all after the same
//! update.

use crate::branch_policy::BranchPolicy;
use crate::cadence::Cadence;
use crate::checkpoint::{self, CheckpointFiles, CheckpointPolicy};
use crate::collective::{self, agree, same_everywhere, Collective};
use crate::config::{RunConfig, TrainConfig};
use crate::diagnostics::{flat_gradients, flat_weights, Diagnostics};
use crate::error::TrainError;
use crate::finetune::{DpoRecipe, SftRecipe};
use crate::loss::{evaluate, EvalResult, LanguageModel};
use crate::metrics::{MetricsLog, Record, Rewards};
use crate::open_run::{self, OpenRun, RunInputs};
use crate::optimizer_shard::{self, Shard};
use crate::progress::Progress;
use crate::recipe::Recipe;
use crate::run_data::RunData;
use crate::step::{PhaseTimes, Step};
use burn::tensor::Device;
use minicpm_data::batches::eval_batches;
use minicpm_data::mixture::{Mixture, MixtureCursor};
use minicpm_data::Batch;
use minicpm_model::{hf, MiniCpm};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub use crate::open_run::RUN_CONFIG_FILE;

pub struct TrainOptions {
    pub run_dir: PathBuf,
    /// A new run's config; `None` with `resume` reads the run's own `run.toml`.
    pub config: Option<RunConfig>,
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to save a checkpoint and stop after the current update.
    pub stop: Arc<AtomicBool>,
    pub progress: bool,
    pub device: Device,
    /// The ranks training this run together; `None` for one process.
    pub world: Option<Rc<dyn Collective>>,
    /// With several ranks: each keeps the AdamW state of its share of the tensors only
    /// (optimizer_shard.rs).
    pub shard_optimizer: bool,
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

pub fn train(opts: TrainOptions) -> Result<TrainOutcome, TrainError> {
    let (run, device) = (&opts.run_dir, &opts.device);
    let world = opts.world.as_deref();
    let (mut open, data) =
        open_run::open_on(run, opts.config.as_ref(), opts.resume, device, world)?;
    if let Some(w) = world {
        let setting = "optimizer sharding (--shard-optimizer)";
        same_everywhere(w, setting, opts.shard_optimizer as u64)?;
        if opts.shard_optimizer {
            open.opt
                .keep_shard(Shard::of(&open.model, w.rank(), w.size()));
        }
    }
    let t = open.cfg.train.clone();
    let (seed, at) = (open.state.seed, open.state.data_cursor.clone());
    match data {
        RunInputs::Pretraining(d) => {
            let mut recipe = Pretraining::new(&d, &t, seed, &at, open.state.step)?;
            updates(open, &mut recipe, &opts)
        }
        RunInputs::Sft(d, f) => {
            let mut recipe = SftRecipe::new(&d, &f, t.seq_len, t.micro_batch, seed, &at);
            updates(open, &mut recipe, &opts)
        }
        RunInputs::Pairs(mut d, f) => {
            // The reference is the model the run started from: the one open now for a new
            // run, the base directory's for a resumed one.
            let reference = || match &open.resumed_from {
                None => Ok(open.model.clone()),
                Some(_) => Ok(hf::load_weights(&f.base, &open.model_cfg, device)?),
            };
            d.attach_reference(run, &f, reference, t.micro_batch, device)?;
            let mut recipe = DpoRecipe::new(&d, &f, t.micro_batch, seed, &at);
            updates(open, &mut recipe, &opts)
        }
    }
}

/// Pre-training's data: the phase's mixture at the update's row length, and held-out token
/// windows at the run's `seq_len`.
struct Pretraining<'a> {
    data: &'a RunData,
    train: TrainConfig,
    seed: u64,
    /// The row length `mixture` draws.
    length: usize,
    mixture: Mixture<'a>,
    evals: Vec<Batch>,
    bytes_per_token: Option<f64>,
}

impl<'a> Pretraining<'a> {
    /// The data of update `step`, `at` being the cursor saved after the update before it.
    fn new(
        data: &'a RunData,
        t: &TrainConfig,
        seed: u64,
        at: &MixtureCursor,
        step: u64,
    ) -> Result<Self, TrainError> {
        let length = t.row_length(step);
        // A cursor of a shorter stage than this update's: the update starts the next stage.
        let start = match at.seq_len.unwrap_or(t.seq_len) == length {
            true => at.clone(),
            false => MixtureCursor::default(),
        };
        Ok(Pretraining {
            data,
            train: t.clone(),
            seed,
            length,
            mixture: data.mixture(length, Self::seed_at(seed, length, t), &start)?,
            evals: eval_batches(&data.valid, t.seq_len, t.micro_batch, t.eval_batches),
            bytes_per_token: data.valid.bytes_per_token(),
        })
    }

    /// The data order's seed at rows of `length`: the run's own at `seq_len`, so that a run
    /// without a length schedule draws what it always drew; another for each shorter length.
    fn seed_at(seed: u64, length: usize, t: &TrainConfig) -> u64 {
        match length == t.seq_len {
            true => seed,
            false => seed ^ (length as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }
}

impl Recipe for Pretraining<'_> {
    type Objective = LanguageModel;

    fn objective(&self) -> &LanguageModel {
        &LanguageModel
    }

    fn next_batch(&mut self, phase: &str, rows: usize) -> Result<Batch, TrainError> {
        Ok(self.mixture.next_batch(phase, rows).0)
    }

    fn cursor(&self) -> MixtureCursor {
        MixtureCursor {
            seq_len: (self.length != self.train.seq_len).then_some(self.length),
            ..self.mixture.cursor()
        }
    }

    fn start_update(&mut self, step: u64) -> Result<(), TrainError> {
        let length = self.train.row_length(step);
        if length != self.length {
            let seed = Self::seed_at(self.seed, length, &self.train);
            self.mixture = self.data.mixture(length, seed, &MixtureCursor::default())?;
            self.length = length;
        }
        Ok(())
    }

    fn evaluate(&self, model: &MiniCpm, device: &Device) -> Option<EvalResult> {
        Some(evaluate(model, &self.evals, self.bytes_per_token, device))
    }
}

/// The run's updates, from where it stands to its end or a stop.
fn updates<R: Recipe>(
    open: OpenRun,
    recipe: &mut R,
    opts: &TrainOptions,
) -> Result<TrainOutcome, TrainError> {
    let (run, device) = (&opts.run_dir, &opts.device);
    let world = opts.world.as_deref();
    let leads = collective::leads(world);
    let OpenRun {
        cfg,
        mut model,
        mut opt,
        mut state,
        resumed_from,
        ..
    } = open;
    let t = &cfg.train;
    crate::step::set_matmul_precision(t.matmul, device)?;
    let schedule = cfg.schedule.resolve(t.steps)?;
    let branches = BranchPolicy::of(&cfg)?;
    let checkpoints = CheckpointPolicy {
        every: t.checkpoint_every,
        keep: t.keep_checkpoints,
        pinned: branches.steps().to_vec(),
    };
    let files = CheckpointFiles {
        tokenizer: match &cfg.finetune {
            Some(f) => Some(f.base.join("tokenizer.json")).filter(|p| p.exists()),
            None => cfg.data.tokenizer.clone().filter(|p| p.exists()),
        },
        chat_template: cfg.finetune.as_ref().map(|f| f.template),
    };
    let cadence = Cadence::new(t);
    let mut diagnostics = Diagnostics::new(t.diagnostics);
    let mut log = match leads {
        true => Some(MetricsLog::open(run, state.step)?),
        false => None,
    };
    let progress = Progress::new(opts.progress && leads, t.steps, state.step);
    let mut outcome = TrainOutcome {
        steps_done: state.step,
        interrupted: false,
        initial_eval: match (&resumed_from, leads) {
            (None, true) => recipe.evaluate(&model, device),
            _ => None,
        },
        final_eval: None,
        last_checkpoint: None,
    };
    for at in branches.owed_at(state.step) {
        if decay_branch(run, &branches, at, opts, &progress)? {
            outcome.interrupted = true;
            return Ok(outcome);
        }
    }
    let (session_start, wall_before) = (Instant::now(), state.wall_time_s);
    let (mut window_start, mut window_tokens) = (Instant::now(), 0u64);
    // The time spent summing over the ranks, by the updates of the logging window.
    let (mut window_phases, mut window_updates) = (PhaseTimes::default(), 0u32);
    while state.step < t.steps {
        let s = state.step;
        let lr = cfg.optim.lr * schedule.factor(s);
        let phase = match schedule.in_decay(s) {
            true => cfg.data.decay_phase(),
            false => "stable",
        };
        recipe.start_update(s)?;
        let batches = (0..cfg.accumulation())
            .map(|_| recipe.next_batch(phase, t.rows_at(s)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut step = Step::new(recipe.objective(), device);
        step.world = world;
        step.lanes = t.lanes;
        if world.is_some() {
            step.timer = Some(&mut window_phases);
        }
        let g = step.gradients(&model, &batches);
        let grad_cos = diagnostics.before_update(
            s,
            cadence.logs(s) && leads,
            cadence.logs(s + 1) && leads,
            || flat_gradients(&model, &g.grads),
            || flat_weights(&model),
        );
        let (updated, stats) = step.update(model, &mut opt, g.grads, lr);
        model = updated;
        let rewards = recipe.train_pairs();
        let max_update = diagnostics.after_update(|| flat_weights(&model));
        state.step += 1;
        state.tokens += t.batch_tokens;
        state.data_cursor = recipe.cursor();
        window_tokens += t.batch_tokens;
        window_updates += 1;

        let stop = opts.stop.load(Ordering::SeqCst);
        let (done, stop) = (
            state.step == t.steps,
            world.map_or(stop, |w| collective::any(w, stop)),
        );
        let eval = match cadence.evaluates_after(state.step) && leads {
            true => recipe.evaluate(&model, device),
            false => None,
        };
        let routing = eval.as_ref().and_then(|e| e.routing.as_ref());
        let record = (cadence.logs(s) && leads).then(|| Record {
            step: s,
            tokens: state.tokens,
            lr,
            loss: g.loss,
            grad_norm: stats.grad_norm,
            tok_s: window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9),
            eval_loss: eval.as_ref().map(|e| e.loss),
            eval_bpb: eval.as_ref().and_then(|e| e.bits_per_byte),
            grad_cos,
            max_update,
            rewards: rewards.map(Rewards::from),
            eval_rewards: eval.as_ref().and_then(|e| e.pairs).map(Rewards::from),
            expert_load: routing.map(|r| r.load.clone()),
            router_entropy: routing.map(|r| r.entropy.clone()),
            reduce_s: world.map(|_| window_phases.reduce.as_secs_f64() / window_updates as f64),
            seq_len: (!t.length_schedule.is_empty()).then(|| t.row_length(s)),
        });
        if let (Some(r), Some(log)) = (&record, log.as_mut()) {
            log.append(r)?;
        }
        if cadence.logs(s) {
            (window_start, window_tokens) = (Instant::now(), 0);
            (window_phases, window_updates) = (PhaseTimes::default(), 0);
        }
        progress.update(state.step, record.as_ref());
        outcome.final_eval = eval.or(outcome.final_eval);

        if checkpoints.due(state.step, done, stop) {
            // Sharded state is gathered by every rank for rank 0 to write.
            let whole = match (world, opt.shard()) {
                (Some(w), Some(_)) => Some(optimizer_shard::gathered(&opt, &model, w)),
                _ => None,
            };
            if leads {
                state.wall_time_s = wall_before + session_start.elapsed().as_secs_f64();
                let retention = checkpoints.retention();
                let saved = whole.as_ref().unwrap_or(&opt);
                let dir = checkpoint::save(run, &model, saved, &state, &files, retention)?;
                outcome.last_checkpoint = Some(dir);
            }
        }
        if branches.starts_at(state.step)
            && !stop
            && decay_branch(run, &branches, state.step, opts, &progress)?
        {
            outcome.interrupted = true;
            break;
        }
        if stop && !done {
            outcome.interrupted = true;
            break;
        }
    }
    progress.finish();
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
    branches: &BranchPolicy,
    at: u64,
    opts: &TrainOptions,
    progress: &Progress,
) -> Result<bool, TrainError> {
    let Some((dir, spec)) = branches.branch(run, at) else {
        return Ok(false);
    };
    let world = opts.world.as_deref();
    let made = match collective::leads(world) && !dir.join(RUN_CONFIG_FILE).is_file() {
        true => {
            let from = checkpoint::checkpoints_dir(run).join(checkpoint::step_dir_name(at));
            crate::branch::create(&from, spec, None, false).map(|_| ())
        }
        false => Ok(()),
    };
    match world {
        Some(w) => agree(w, made)?,
        None => made?,
    }
    let sub = TrainOptions {
        run_dir: dir.clone(),
        config: None,
        resume: true,
        stop: opts.stop.clone(),
        progress: opts.progress,
        device: opts.device.clone(),
        world: opts.world.clone(),
        shard_optimizer: opts.shard_optimizer,
    };
    let outcome = progress.suspend(|| train(sub))?;
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
