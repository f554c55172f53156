//! Pieces shared by the subcommands: devices, running training with Ctrl-C handling, finding
//! models.

use burn::tensor::Device;
use minicpm_model::hf;
use minicpm_train::checkpoint;
use minicpm_train::{Collective, TrainOptions, TrainOutcome};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The CPU backend, or the first CUDA GPU when built with the `cuda` feature and
/// MINICPM_DEVICE=cuda is set.
pub fn training_device() -> Device {
    #[cfg(feature = "cuda")]
    if std::env::var("MINICPM_DEVICE").is_ok_and(|d| d == "cuda") {
        return Device::cuda(0).autodiff();
    }
    Device::flex().autodiff()
}

/// One process-wide flag, set by Ctrl-C: the trainer saves a checkpoint and stops.
pub(crate) fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                // A second Ctrl-C: the user wants out now.
                std::process::exit(130);
            }
            // Rank 0 speaks for a launch of several ranks, each of which gets the signal.
            if !crate::launch::is_other_rank() {
                eprintln!(
                    "\ninterrupt: saving a checkpoint after this update (Ctrl-C again to quit now)"
                );
            }
        });
        if let Err(e) = installed {
            tracing::warn!("Ctrl-C handler not installed: {e}");
        }
        flag
    })
    .clone()
}

/// The ranks a run trains on, and how.
pub struct Ranks {
    pub world: Rc<dyn Collective>,
    /// Each rank keeps the AdamW state of its share of the tensors.
    pub shard_optimizer: bool,
}

/// Trains `run_dir` in this process, or on every rank of `ranks`.
pub fn run_training(
    run_dir: PathBuf,
    config: minicpm_train::RunConfig,
    resume: bool,
    progress: bool,
    ranks: Option<Ranks>,
) -> anyhow::Result<TrainOutcome> {
    let shard_optimizer = ranks.as_ref().is_some_and(|r| r.shard_optimizer);
    let world = ranks.map(|r| r.world);
    let opts = TrainOptions {
        run_dir,
        config: Some(config),
        resume,
        stop: stop_flag(),
        progress,
        device: training_device(),
        world,
        shard_optimizer,
    };
    Ok(minicpm_train::train(opts)?)
}

/// [`run_training`], then [`report`]: the exit code is 130 when Ctrl-C stopped it.
pub fn train_and_report(
    run_dir: PathBuf,
    config: minicpm_train::RunConfig,
    resume: bool,
    progress: bool,
    ranks: Option<Ranks>,
) -> anyhow::Result<std::process::ExitCode> {
    let speaks = minicpm_train::collective::leads(ranks.as_ref().map(|r| r.world.as_ref()));
    let outcome = run_training(run_dir, config, resume, progress, ranks)?;
    if speaks {
        report(&outcome);
    }
    Ok(match outcome.interrupted {
        true => std::process::ExitCode::from(130),
        false => std::process::ExitCode::SUCCESS,
    })
}

pub fn report(o: &TrainOutcome) {
    if o.interrupted {
        eprintln!("stopped after update {}", o.steps_done);
    }
    let show = |what: &str, e: &minicpm_train::loss::EvalResult| {
        let bpb = e
            .bits_per_byte
            .map_or(String::new(), |b| format!(", {b:.4} bits/byte"));
        let pairs = e.pairs.map_or(String::new(), |p| {
            format!(
                ", pair accuracy {:.3}, reward margin {:.4}",
                p.accuracy(),
                p.margin()
            )
        });
        eprintln!("held-out loss {what}: {:.4}{bpb}{pairs}", e.loss);
    };
    if let Some(e) = &o.initial_eval {
        show("at the start", e);
    }
    if let Some(e) = &o.final_eval {
        show("after training", e);
    }
    if let Some(c) = &o.last_checkpoint {
        eprintln!("checkpoint: {}", c.display());
    }
}

/// A model directory from an HF directory, a checkpoint directory or a run directory.
pub fn resolve_model_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if path.join(hf::CONFIG_FILE).exists() {
        return Ok(path.to_path_buf());
    }
    if let Some((_, dir)) = checkpoint::latest(path) {
        return Ok(dir);
    }
    anyhow::bail!(
        "{}: no config.json here and no checkpoints (is it a model or run directory?)",
        path.display()
    )
}
