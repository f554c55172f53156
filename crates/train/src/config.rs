//! The run configuration: one TOML file with the model, optimizer, schedule, training and data
//! sections, `--set section.key=value` overrides, strict parsing (unknown keys are errors), and
//! the resolved form written next to the results as `run.toml`.

use crate::branch::{AutoBranches, BranchOrigin};
use crate::error::InvalidSetting;
use crate::extend::ExtendOrigin;
use crate::finetune::{FinetuneConfig, FinetuneKind};
use crate::length_schedule::LengthStage;
use crate::optimizer::OptimConfig;
use crate::schedule::ScheduleConfig;
use crate::upcycle::UpcycleOrigin;
use minicpm_data::mixture::PhaseWeights;
pub use minicpm_model::config::OneOrMany;
use minicpm_model::kernels::MatmulPrecision;
use minicpm_model::mup::Parametrization;
use minicpm_model::strict;
use minicpm_model::{ModelConfig, ModelError};
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The optional keys default to the values of [`TrainConfig::default`], the one place they are
/// written.
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer updates in the run.
    pub steps: u64,
    /// Tokens per optimizer update; must be a multiple of `micro_batch * seq_len`.
    pub batch_tokens: u64,
    /// Sequences per forward/backward pass (gradient accumulation makes up the rest).
    pub micro_batch: usize,
    /// On the CPU, micro-batches computed side by side, each on its share of the threads
    /// (lanes.rs): faster at small shapes, for `lanes` micro-batches' activations in memory at
    /// once. Each update's gradient and loss are bit-identical whatever the number.
    #[serde_inline_default(TrainConfig::default().lanes)]
    pub lanes: usize,
    /// The arithmetic of the linear layers' and the LM head's products on the CPU: `f32`, or
    /// `bf16` (operands rounded to bfloat16, sums in f32: `kernels/bf16_gemm.rs`), up to twice
    /// as fast on CPUs with AVX512_BF16. Weights, optimizer and every other pass stay f32.
    #[serde(default)]
    pub matmul: MatmulPrecision,
    /// Tokens per row: the run's context, and its held-out windows' length.
    pub seq_len: usize,
    /// Shorter rows for the first updates (length_schedule.rs); empty: `seq_len` throughout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub length_schedule: Vec<LengthStage>,
    #[serde_inline_default(TrainConfig::default().log_every)]
    pub log_every: u64,
    /// Evaluate every this many updates (0: only at the end).
    #[serde_inline_default(TrainConfig::default().eval_every)]
    pub eval_every: u64,
    #[serde_inline_default(TrainConfig::default().eval_batches)]
    pub eval_batches: usize,
    /// Save a checkpoint every this many updates (0: only at the end).
    #[serde_inline_default(TrainConfig::default().checkpoint_every)]
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk; older ones are deleted (0 keeps all).
    #[serde_inline_default(TrainConfig::default().keep_checkpoints)]
    pub keep_checkpoints: usize,
    /// Log decay diagnostics (consecutive-gradient cosine, largest weight change) on logged
    /// updates; they cost host copies of the gradients and weights there.
    #[serde_inline_default(TrainConfig::default().diagnostics)]
    pub diagnostics: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1000,
            batch_tokens: 4096,
            micro_batch: 8,
            lanes: 1,
            matmul: MatmulPrecision::F32,
            seq_len: 128,
            length_schedule: Vec::new(),
            log_every: 10,
            eval_every: 100,
            eval_batches: 8,
            checkpoint_every: 250,
            keep_checkpoints: 3,
            diagnostics: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// One token-shard directory to train on (shorthand for a single-source mixture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    /// Named token-shard directories for a mixture.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, PathBuf>,
    /// Weights per phase (`stable`, `decay`, later ones such as `sft`) per source. The trainer
    /// uses `decay` once the schedule enters its decay phase (falling back to `stable`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mixture: PhaseWeights,
    /// Token-shard directory (or a list of them, e.g. one per source) for held-out evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<OneOrMany<PathBuf>>,
    /// tokenizer.json, copied into every checkpoint so each is a complete HF directory.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// The mixture phase drawn from while the schedule decays (default `decay`, which falls
    /// back to `stable` when the mixture has no such phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay_phase: Option<String>,
}

impl DataConfig {
    /// The phase the decay draws from.
    pub fn decay_phase(&self) -> &str {
        self.decay_phase.as_deref().unwrap_or("decay")
    }

    /// A phase named explicitly must exist (`stable` always does).
    pub fn check_decay_phase(&self) -> Result<(), InvalidSetting> {
        match &self.decay_phase {
            Some(p) if p != "stable" && !self.mixture.contains_key(p) => Err(InvalidSetting::new(
                "data.decay_phase",
                format!(
                    "data.decay_phase: the mixture has no phase `{p}` (it has: {})",
                    std::iter::once("stable")
                        .chain(
                            self.mixture
                                .keys()
                                .map(String::as_str)
                                .filter(|k| *k != "stable")
                        )
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The training sources and their phase weights, with `train = ...` as a one-source mixture.
    pub fn resolved_mixture(
        &self,
    ) -> Result<(BTreeMap<String, PathBuf>, PhaseWeights), InvalidSetting> {
        self.checked_mixture()
            .map_err(|msg| InvalidSetting::new("data", msg))
    }

    fn checked_mixture(&self) -> Result<(BTreeMap<String, PathBuf>, PhaseWeights), String> {
        match (&self.train, self.sources.is_empty()) {
            (Some(_), false) => {
                Err("data: give either `train` or `sources` + `mixture`, not both".into())
            }
            (Some(path), true) => {
                if !self.mixture.is_empty() {
                    return Err("data.mixture needs data.sources".into());
                }
                let sources = BTreeMap::from([("train".to_string(), path.clone())]);
                let weights = BTreeMap::from([(
                    "stable".to_string(),
                    BTreeMap::from([("train".to_string(), 1.0)]),
                )]);
                Ok((sources, weights))
            }
            (None, false) => {
                let names: Vec<String> = self.sources.keys().cloned().collect();
                minicpm_data::mixture::validate(&self.mixture, &names)
                    .map_err(|e| e.to_string())?;
                Ok((self.sources.clone(), self.mixture.clone()))
            }
            (None, true) => Err(
                "data.train: no training data configured (set `train` or `sources` + `mixture`)"
                    .into(),
            ),
        }
    }
}

#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde_inline_default(42)]
    pub seed: u64,
    #[serde(default)]
    pub parametrization: Parametrization,
    pub model: ModelConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub data: DataConfig,
    /// Decay branches to make automatically as the run passes given token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<AutoBranches>,
    /// Set in a decay branch: the run and checkpoint it starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchOrigin>,
    /// Set in an upcycled mixture-of-experts run: the dense checkpoint it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upcycled: Option<UpcycleOrigin>,
    /// Set in a context-extension run: the checkpoint it was made from and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<ExtendOrigin>,
    /// Set in a fine-tuning run (SFT or DPO): the model it starts from and its data; the
    /// `data` section's shards are then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneConfig>,
}

/// Sets `dotted.key = value` in a config tree; the value is parsed as a TOML literal when it is
/// one (numbers, booleans, arrays) and taken as a string otherwise.
fn apply_override(tree: &mut serde_json::Value, assignment: &str) -> Result<(), String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--set {assignment:?}: expected key=value"))?;
    let value: serde_json::Value =
        match toml::from_str::<toml::Table>(&format!("v = {}", raw.trim())) {
            Ok(mut t) => {
                serde_json::to_value(t.remove("v").expect("parsed v")).map_err(|e| e.to_string())?
            }
            Err(_) => serde_json::Value::String(raw.trim().to_string()),
        };
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut node = tree;
    for (i, part) in parts.iter().enumerate() {
        let map = node
            .as_object_mut()
            .ok_or_else(|| format!("--set {key}: `{}` is not a section", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        node = map
            .entry(part.to_string())
            .or_insert_with(|| serde_json::json!({}));
    }
    Ok(())
}

impl RunConfig {
    /// Reads a TOML run config, applies `--set` overrides, checks every field.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ModelError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(&text, &origin, overrides)
    }

    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ModelError> {
        let cfg = Self::parse_unchecked(text, origin, overrides)?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// [`RunConfig::load`] without the final check, for a base config that a command completes
    /// (say, with a proxy's shape) and checks afterwards.
    pub fn load_unchecked(path: &Path, overrides: &[String]) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse_unchecked(&text, &path.display().to_string(), overrides)
    }

    fn parse_unchecked(text: &str, origin: &str, overrides: &[String]) -> Result<Self, ModelError> {
        let mut tree = strict::toml_to_value(text, origin)?;
        for o in overrides {
            apply_override(&mut tree, o).map_err(|msg| ModelError::Parse {
                origin: origin.to_string(),
                msg,
            })?;
        }
        strict::from_value(tree, origin)
    }

    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        self.model.validate(origin)?;
        let field = |field: &str, msg: String| ModelError::Config {
            origin: origin.into(),
            field: field.into(),
            msg,
        };
        let setting = |e: InvalidSetting| field(&e.key, e.msg);
        self.optim.validate().map_err(setting)?;
        self.schedule.resolve(self.train.steps).map_err(setting)?;
        let t = &self.train;
        for (name, v) in [
            ("train.steps", t.steps),
            ("train.batch_tokens", t.batch_tokens),
            ("train.micro_batch", t.micro_batch as u64),
            ("train.lanes", t.lanes as u64),
            ("train.seq_len", t.seq_len as u64),
        ] {
            if v == 0 {
                return Err(field(name, "must be positive".into()));
            }
        }
        self.data.check_decay_phase().map_err(setting)?;
        t.check_length_schedule().map_err(setting)?;
        if let Some(f) = &self.finetune {
            f.validate().map_err(setting)?;
            if !t.length_schedule.is_empty() {
                let msg = "fine-tuning trains at train.seq_len throughout; remove the schedule";
                return Err(field("train.length_schedule", msg.into()));
            }
        }
        if let Some(b) = &self.branches {
            b.spec().map_err(setting)?;
            b.steps(self).map_err(setting)?;
        }
        // Without RoPE scaling the model is defined up to max_position_embeddings positions;
        // training longer rows needs a scaling (or a larger rope_theta with a larger maximum).
        let max_positions = self.model.max_position_embeddings;
        if self.model.rope_scaling.is_none() && t.seq_len > max_positions {
            return Err(field(
                "train.seq_len",
                format!(
                    "{} is beyond model.max_position_embeddings ({max_positions}) and the model \
                     has no rope_scaling",
                    t.seq_len
                ),
            ));
        }
        let micro_tokens = (t.micro_batch * t.seq_len) as u64;
        if !t.batch_tokens.is_multiple_of(micro_tokens) {
            return Err(field(
                "train.batch_tokens",
                format!(
                    "{} is not a multiple of micro_batch x seq_len = {micro_tokens}",
                    t.batch_tokens
                ),
            ));
        }
        Ok(())
    }

    /// The parametrisation whose learning-rate rules the optimizer applies: DPO's runs use one
    /// learning rate for every tensor, as the released DPO model was trained (no muP scaling).
    pub fn lr_rules(&self) -> Parametrization {
        match &self.finetune {
            Some(f) if f.kind == FinetuneKind::Dpo => Parametrization::Sp,
            _ => self.parametrization,
        }
    }

    /// Micro-batches accumulated into one optimizer update.
    pub fn accumulation(&self) -> u64 {
        self.train.batch_tokens / (self.train.micro_batch * self.train.seq_len) as u64
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a run config always serialises")
    }

    /// Applies `--set` overrides on top of this config, as if it were a file, and checks the
    /// result: how a user's settings keep the last word over values a command computed.
    pub fn with_overrides(&self, origin: &str, overrides: &[String]) -> Result<Self, ModelError> {
        Self::parse(&self.to_toml(), origin, overrides)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small valid run config, for tests across the crate.
    pub(crate) const BASE: &str = r#"
[model]
vocab_size = 256
hidden_size = 64
intermediate_size = 160
num_hidden_layers = 2
num_attention_heads = 1
[train]
steps = 10
batch_tokens = 512
micro_batch = 2
seq_len = 64
"#;

    #[test]
    fn overrides_and_round_trip() {
        let cfg = RunConfig::parse(
            BASE,
            "t.toml",
            &["optim.lr=0.02".into(), "schedule.kind=\"cosine\"".into()],
        )
        .unwrap();
        assert_eq!(cfg.optim.lr, 0.02);
        assert!(matches!(cfg.schedule, ScheduleConfig::Cosine { .. }));
        assert_eq!(cfg.accumulation(), 4);
        let again = RunConfig::parse(&cfg.to_toml(), "run.toml", &[]).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn overrides_win_over_typed_edits() {
        let mut cfg = RunConfig::parse(BASE, "t.toml", &[]).unwrap();
        cfg.optim.lr = 0.5;
        cfg.train.steps = 7;
        let sets = ["optim.lr=0.02".to_string(), "seed=3".into()];
        let edited = cfg.with_overrides("t.toml", &sets).unwrap();
        assert_eq!(
            (edited.optim.lr, edited.seed, edited.train.steps),
            (0.02, 3, 7)
        );
        // Applying them to the file as written gives the same config, but for the edit kept.
        let mut direct = RunConfig::parse(BASE, "t.toml", &sets).unwrap();
        direct.train.steps = 7;
        assert_eq!(edited, direct);
        let e = cfg
            .with_overrides("t.toml", &["train.micro_batch=0".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml") && e.contains("train.micro_batch"),
            "{e}"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = RunConfig::parse(
            &format!("{BASE}\n[optim]\nlearning_rate = 1\n"),
            "t.toml",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.toml") && e.contains("optim.learning_rate"),
            "{e}"
        );
        let e = RunConfig::parse(BASE, "t.toml", &["model.hidden_size=\"wide\"".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.hidden_size") && e.contains("invalid type"),
            "{e}"
        );
        let e = RunConfig::parse(BASE, "t.toml", &["train.batch_tokens=100".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.batch_tokens"), "{e}");
        let e = RunConfig::parse(BASE, "t.toml", &["model.num_attention_heads=3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_attention_heads"), "{e}");
    }

    /// Rows longer than the model's positions need a RoPE scaling; a bad scaling is named.
    #[test]
    fn a_length_beyond_the_positions_needs_rope_scaling() {
        let short = ["model.max_position_embeddings=32".to_string()];
        let e = RunConfig::parse(BASE, "t.toml", &short)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("train.seq_len")
                && e.contains("64 is beyond model.max_position_embeddings (32)"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let scaled = [
            short[0].clone(),
            "model.rope_scaling={type=\"dynamic\", factor=2.0}".into(),
        ];
        RunConfig::parse(BASE, "t.toml", &scaled).unwrap();
        for (scaling, culprit) in [
            (
                "{type=\"ntk-by-parts\", factor=2.0}",
                "\"ntk-by-parts\" is not supported",
            ),
            ("{type=\"linear\", factor=0.5}", "factor must be >= 1"),
            (
                "{type=\"linear\", factor=2.0, beta_fast=8.0}",
                "beta_fast applies to type \"yarn\" only",
            ),
            (
                "{type=\"yarn\", factor=4.0, beta_slow=-1.0}",
                "beta_slow must be",
            ),
        ] {
            let set = [format!("model.rope_scaling={scaling}")];
            let e = RunConfig::parse(BASE, "t.toml", &set)
                .unwrap_err()
                .to_string();
            assert!(e.contains("rope_scaling") && e.contains(culprit), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
