//! `minicpm sft` and `minicpm dpo` (docs/FINETUNE.md): a fine-tuning run from a model and its
//! data, the run config completed from the model's own pre-training run when it has one.
//!
//! SFT follows MiniCPM's recipe: WSD again, its peak the learning rate the base model's
//! schedule had reached at that checkpoint, with pre-training's muP rules. DPO follows the
//! released DPO model: one learning rate for every tensor (no muP scaling) on a cosine
//! schedule. Both continue with `minicpm train --resume RUN` like any run.

use crate::util;
use clap::{Args, ValueEnum};
use minicpm_data::chat_template::ChatTemplate;
use minicpm_data::sft_batches::Layout;
use minicpm_model::{hf, ModelConfig};
use minicpm_train::branch::run_of_checkpoint;
use minicpm_train::checkpoint::read_state;
use minicpm_train::config::DataConfig;
use minicpm_train::dpo::PreferenceLoss;
use minicpm_train::finetune::{FinetuneConfig, FinetuneKind};
use minicpm_train::schedule::{DecayFn, ScheduleConfig};
use minicpm_train::trainer::RUN_CONFIG_FILE;
use minicpm_train::RunConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum TemplateArg {
    Minicpm,
    Chatml,
}

/// What both commands take.
#[derive(Args)]
pub struct FinetuneArgs {
    /// The model to start from: an HF directory, a checkpoint, or a run (its latest checkpoint).
    #[arg(long)]
    model: PathBuf,
    /// Training data (JSONL): conversations for `sft`, preference pairs for `dpo`.
    #[arg(long)]
    data: PathBuf,
    /// Held-out data of the same kind, evaluated as the run goes.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Directory of the new run.
    #[arg(long)]
    out: PathBuf,
    /// A run config to start from instead of the model's own run's.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Optimizer updates.
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// The chat template.
    #[arg(long, value_enum, default_value = "minicpm")]
    template: TemplateArg,
    /// Override a config value, e.g. --set optim.lr=0.001 (repeatable; last word).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
pub struct SftArgs {
    #[command(flatten)]
    common: FinetuneArgs,
    /// One conversation per row, padded, instead of several packed per row.
    #[arg(long)]
    padding: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LossArg {
    Sigmoid,
    Ipo,
}

#[derive(Args)]
pub struct DpoArgs {
    #[command(flatten)]
    common: FinetuneArgs,
    /// DPO's beta: how far the policy may move from the reference.
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// The preference loss.
    #[arg(long, value_enum, default_value = "sigmoid")]
    loss: LossArg,
    /// The peak learning rate (MiniCPM's DPO used 1e-5 at 2.4B parameters).
    #[arg(long, default_value_t = 1e-5)]
    lr: f64,
}

/// The starting model's directory, and the config of the run it came from with the learning
/// rate its schedule had reached there, when it came from one.
fn base(model: &Path) -> anyhow::Result<(PathBuf, Option<(RunConfig, f64)>)> {
    let dir = util::resolve_model_dir(model)?.canonicalize()?;
    let Some(run) = run_of_checkpoint(&dir) else {
        return Ok((dir, None));
    };
    let run_toml = run.join(RUN_CONFIG_FILE);
    if !run_toml.is_file() {
        return Ok((dir, None));
    }
    let cfg = RunConfig::load(&run_toml, &[])?;
    let step = read_state(&dir)?.step;
    let factor = cfg
        .schedule
        .resolve(cfg.train.steps)?
        .factor(step.saturating_sub(1));
    Ok((dir, Some((cfg, factor))))
}

/// What a fine-tuning run is made of, whichever command makes it.
pub struct Plan {
    pub model: PathBuf,
    pub data: PathBuf,
    pub valid: Option<PathBuf>,
    /// A run config to start from instead of the model's own run's.
    pub config: Option<PathBuf>,
    pub steps: u64,
    pub template: ChatTemplate,
}

impl FinetuneArgs {
    fn plan(&self) -> Plan {
        Plan {
            model: self.model.clone(),
            data: self.data.clone(),
            valid: self.valid.clone(),
            config: self.config.clone(),
            steps: self.steps,
            template: template(self.template),
        }
    }
}

/// The run config of a fine-tuning run of `kind`, and the learning rate the base model's own
/// run had reached, when it came from one.
fn config(p: &Plan, kind: FinetuneKind) -> anyhow::Result<(RunConfig, Option<f64>)> {
    let (dir, parent) = base(&p.model)?;
    let (mut cfg, lr_reached) = match (&p.config, parent) {
        (Some(path), _) => (RunConfig::load_unchecked(path, &[])?, None),
        (None, Some((cfg, factor))) => {
            let lr = cfg.optim.lr * factor;
            (cfg, Some(lr))
        }
        (None, None) => {
            // A model of its own: its config.json, and every other setting at its default.
            let model = ModelConfig::from_hf_json(&dir.join(hf::CONFIG_FILE))?;
            let cfg: RunConfig = serde_json::from_value(serde_json::json!({ "model": model }))?;
            (cfg, None)
        }
    };
    cfg.train.steps = p.steps;
    cfg.branches = None;
    cfg.branch = None;
    cfg.data = DataConfig::default();
    // Absolute, so that `train --resume` reads the same files from any directory.
    let absolute = |f: &Path| {
        f.canonicalize()
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))
    };
    cfg.finetune = Some(FinetuneConfig {
        kind,
        base: dir,
        train: absolute(&p.data)?,
        valid: p.valid.as_deref().map(absolute).transpose()?,
        template: p.template,
        layout: Layout::Packed,
        beta: 0.1,
        loss: PreferenceLoss::Sigmoid,
    });
    Ok((cfg, lr_reached))
}

pub fn template(t: TemplateArg) -> ChatTemplate {
    match t {
        TemplateArg::Minicpm => ChatTemplate::MiniCpm,
        TemplateArg::Chatml => ChatTemplate::ChatMl,
    }
}

/// An SFT run: WSD from the rate the base model's schedule had reached.
pub fn sft_config(p: &Plan, layout: Layout) -> anyhow::Result<RunConfig> {
    let (mut cfg, lr_reached) = config(p, FinetuneKind::Sft)?;
    if let Some(lr) = lr_reached {
        eprintln!("sft: peak learning rate {lr:.3e}, where the base model's schedule had reached");
        cfg.optim.lr = lr;
    }
    cfg.schedule = ScheduleConfig::wsd((p.steps / 20).max(1), 0.1, DecayFn::Exp);
    if let Some(f) = &mut cfg.finetune {
        f.layout = layout;
    }
    Ok(cfg)
}

/// A DPO run: one learning rate for every tensor, cosine from `lr` to 0 after 10% warmup.
pub fn dpo_config(p: &Plan, beta: f64, loss: PreferenceLoss, lr: f64) -> anyhow::Result<RunConfig> {
    let (mut cfg, _) = config(p, FinetuneKind::Dpo)?;
    cfg.optim.lr = lr;
    cfg.schedule = ScheduleConfig::Cosine {
        warmup_steps: (p.steps / 10).max(1),
        period: None,
        floor: 0.0,
    };
    if let Some(f) = &mut cfg.finetune {
        (f.beta, f.loss) = (beta, loss);
    }
    Ok(cfg)
}

pub fn sft(a: SftArgs) -> anyhow::Result<ExitCode> {
    let layout = match a.padding {
        true => Layout::Padded,
        false => Layout::Packed,
    };
    launch(&a.common, sft_config(&a.common.plan(), layout)?)
}

pub fn dpo(a: DpoArgs) -> anyhow::Result<ExitCode> {
    let loss = match a.loss {
        LossArg::Sigmoid => PreferenceLoss::Sigmoid,
        LossArg::Ipo => PreferenceLoss::Ipo,
    };
    launch(&a.common, dpo_config(&a.common.plan(), a.beta, loss, a.lr)?)
}

fn launch(a: &FinetuneArgs, cfg: RunConfig) -> anyhow::Result<ExitCode> {
    let cfg = cfg.with_overrides("the fine-tuning config", &a.set)?;
    util::train_and_report(a.out.clone(), cfg, false, !a.quiet, None)
}
