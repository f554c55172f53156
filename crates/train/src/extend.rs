//! Context extension (docs/MODEL.md section 13), MiniCPM-128K's recipe as a command: a
//! checkpoint becomes a new run that trains on longer rows, with RoPE changed for the new length
//! (none, ABF, dynamic NTK, linear or YaRN), optionally an untied LM head, and optionally a
//! long-document source mixed into the data.
//!
//! The new run directory holds one checkpoint at update 0: the parent's weights under the new
//! config, fresh AdamW moments, a fresh data cursor and the parent's seed. Its `run.toml` is the
//! parent's with the new model and `[train]` lengths, a WSD schedule over the extra tokens and an
//! `[extended]` record of its origin; `minicpm train --resume` trains it like any run. A length
//! curriculum is a chain of extensions, each from the last checkpoint of the one before (ABF to
//! 4x, then NTK to 16x, as MiniCPM went to 32K with ABF and on to 128K with NTK).

use crate::checkpoint::{self, TrainerState, OPTIMIZER_FILE, STATE_FILE};
use crate::config::RunConfig;
use crate::derived_run;
use crate::error::{InvalidSetting, TrainError};
use crate::length_schedule::LengthStage;
use crate::run_data::RunData;
use crate::schedule::{DecayFn, ScheduleConfig};
use burn::tensor::Device;
use minicpm_data::mixture::MixtureCursor;
use minicpm_model::config::RopeScaling;
use minicpm_model::named::named_tensors;
use minicpm_model::params::tensor_shapes;
use minicpm_model::safetensors_io::{write_atomic, write_f32, F32Tensor};
use minicpm_model::{hf, mup, MiniCpm, ModelConfig, Weights};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The name of the long-document source in an extended run's mixture.
pub const LONG_SOURCE: &str = "long";

/// How RoPE changes for the longer context.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeChange {
    /// No change: the model extrapolates to positions it never saw.
    None,
    /// ABF: a larger `rope_theta`.
    Abf { theta: f64 },
    /// Dynamic NTK scaling by `factor` past the parent's `max_position_embeddings`.
    Ntk { factor: f64 },
    /// ABF and dynamic NTK at once, MiniCPM-128K's released configuration (`rope_theta` 1e6,
    /// dynamic factor 4): the base grows past `length / factor`, so a length schedule's stage
    /// at that length trains ABF alone and the stages beyond it ABF with NTK.
    AbfNtk { theta: f64, factor: f64 },
    /// Linear position interpolation by `factor`.
    Linear { factor: f64 },
    /// YaRN by `factor` over the parent's `max_position_embeddings`.
    Yarn { factor: f64 },
}

impl std::str::FromStr for RopeChange {
    type Err = String;

    /// `none`, `abf:theta=1e6`, `ntk:factor=4`, `abf:theta=1e6,ntk:factor=4`,
    /// `linear:factor=4` or `yarn:factor=4`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((first, second)) = s.split_once(',') {
            return match (first.parse()?, second.parse()?) {
                (RopeChange::Abf { theta }, RopeChange::Ntk { factor }) => {
                    Ok(RopeChange::AbfNtk { theta, factor })
                }
                _ => Err(format!(
                    "--rope {s:?}: the one combination is abf:theta=X,ntk:factor=F"
                )),
            };
        }
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        let value = |key: &str| -> Result<f64, String> {
            let v = arg
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .ok_or_else(|| format!("--rope {kind}:{key}=VALUE, got {s:?}"))?;
            v.parse::<f64>()
                .map_err(|_| format!("--rope {s:?}: {v:?} is not a number"))
        };
        let change = match kind {
            "none" if arg.is_empty() => RopeChange::None,
            "abf" => RopeChange::Abf {
                theta: value("theta")?,
            },
            "ntk" => RopeChange::Ntk {
                factor: value("factor")?,
            },
            "linear" => RopeChange::Linear {
                factor: value("factor")?,
            },
            "yarn" => RopeChange::Yarn {
                factor: value("factor")?,
            },
            _ => {
                return Err(format!(
                    "--rope {s:?}: use none, abf:theta=X, ntk:factor=F, \
                     abf:theta=X,ntk:factor=F, linear:factor=F or yarn:factor=F"
                ))
            }
        };
        Ok(change)
    }
}

impl std::fmt::Display for RopeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RopeChange::None => write!(f, "none"),
            RopeChange::Abf { theta } => write!(f, "abf:theta={theta}"),
            RopeChange::Ntk { factor } => write!(f, "ntk:factor={factor}"),
            RopeChange::AbfNtk { theta, factor } => {
                write!(f, "abf:theta={theta},ntk:factor={factor}")
            }
            RopeChange::Linear { factor } => write!(f, "linear:factor={factor}"),
            RopeChange::Yarn { factor } => write!(f, "yarn:factor={factor}"),
        }
    }
}

/// A length curriculum over the extension's updates: rows of each stage's length until that
/// share of the updates is done, then `--length`. `1024:0.5,2048:0.75` trains the first half on
/// rows of 1,024, the next quarter on 2,048, the rest at the full length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curriculum(pub Vec<(usize, f64)>);

impl std::str::FromStr for Curriculum {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let stage = |part: &str| -> Option<(usize, f64)> {
            let (length, until) = part.split_once(':')?;
            let until: f64 = until.parse().ok()?;
            Some((length.parse().ok()?, until)).filter(|_| 0.0 < until && until < 1.0)
        };
        s.split(',')
            .map(|part| {
                stage(part.trim()).ok_or_else(|| {
                    format!(
                        "--curriculum {s:?}: expected LENGTH:SHARE,... with each share of the \
                         updates in (0, 1), e.g. 1024:0.5"
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(Curriculum)
    }
}

impl std::fmt::Display for Curriculum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(l, u)| format!("{l}:{u}")).collect();
        write!(f, "{}", parts.join(","))
    }
}

/// What an extended run came from, recorded in its `run.toml` as `[extended]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendOrigin {
    /// The checkpoint, as given.
    pub checkpoint: String,
    /// Its update count and training tokens.
    pub step: u64,
    pub tokens: u64,
    /// The parent's row length and the new one.
    pub from_length: usize,
    pub length: usize,
    /// The RoPE change, as `--rope` takes it.
    pub rope: String,
    pub untied: bool,
    /// The length curriculum, as `--curriculum` takes it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub curriculum: String,
}

/// How to extend.
#[derive(Debug, Clone)]
pub struct ExtendSpec {
    /// Tokens per row of the new run.
    pub length: usize,
    pub rope: RopeChange,
    /// Shorter rows first (empty: rows of `length` throughout).
    pub curriculum: Curriculum,
    /// Give the LM head its own weights (a copy of the embedding) where they were tied.
    pub untie: bool,
    /// Training tokens of the new run (rounded up to whole updates).
    pub tokens: u64,
    /// Token-shard directories of long documents (whole books, passkey documents), each a
    /// source of its own: [`LONG_SOURCE`], then `long-2`, `long-3`, ...
    pub long_data: Vec<PathBuf>,
    /// The long sources' share of every mixture phase, split evenly between them.
    pub long_share: f64,
    /// `--set key=value` overrides of the new run's config, applied (and checked) before
    /// anything is written.
    pub overrides: Vec<String>,
}

/// The parent's model config changed for `spec`, the parent having trained on rows of
/// `trained` tokens. `max_position_embeddings` becomes the context the new run trains at, except
/// under dynamic NTK, which reads it as the trained context past which the base grows (and YaRN
/// keeps that as its `original_max_position_embeddings`).
pub fn extended_model(
    parent: &ModelConfig,
    trained: usize,
    spec: &ExtendSpec,
) -> Result<ModelConfig, String> {
    let mut cfg = parent.clone();
    cfg.max_position_embeddings = spec.length;
    let abf = |theta: f64| match theta.is_finite() && theta > 0.0 {
        true => Ok(theta),
        false => Err(format!("abf:theta={theta} must be a positive number")),
    };
    match spec.rope {
        RopeChange::None => {}
        RopeChange::Abf { theta } => cfg.rope_theta = abf(theta)?,
        RopeChange::Ntk { factor } => {
            cfg.rope_scaling = Some(RopeScaling::new("dynamic", factor));
            cfg.max_position_embeddings = trained;
        }
        RopeChange::AbfNtk { theta, factor } => {
            cfg.rope_theta = abf(theta)?;
            cfg.rope_scaling = Some(RopeScaling::new("dynamic", factor));
            let from = (spec.length as f64 / factor).round() as usize;
            if factor.is_finite() && factor >= 1.0 && from < trained {
                return Err(format!(
                    "ntk:factor={factor} grows the base past --length / factor = {from} tokens, \
                     shorter than the {trained} the parent trained at; use a factor of at most \
                     {}",
                    spec.length / trained
                ));
            }
            cfg.max_position_embeddings = from;
        }
        RopeChange::Linear { factor } => {
            cfg.rope_scaling = Some(RopeScaling::new("linear", factor))
        }
        RopeChange::Yarn { factor } => {
            let mut yarn = RopeScaling::new("yarn", factor);
            yarn.original_max_position_embeddings = Some(trained);
            cfg.rope_scaling = Some(yarn);
        }
    }
    if parent.rope_scaling.is_some() && spec.rope != RopeChange::None {
        return Err(format!(
            "the parent already scales RoPE ({}); extend it with --rope none, or from a \
             checkpoint without scaling",
            serde_json::to_string(&parent.rope_scaling).unwrap_or_default()
        ));
    }
    if spec.untie {
        cfg.tie_word_embeddings = false;
    }
    Ok(cfg)
}

/// The parent's run config made into the extended run's.
fn extended_run(
    parent: &RunConfig,
    spec: &ExtendSpec,
    origin: ExtendOrigin,
) -> Result<RunConfig, TrainError> {
    let usage = |m: String| TrainError::from(InvalidSetting::new("extend", m));
    let mut cfg = parent.clone();
    cfg.model = extended_model(&parent.model, parent.train.seq_len, spec).map_err(usage)?;
    let t = &mut cfg.train;
    // The same tokens per micro-batch where they make at least one row, and per update.
    let row_tokens = (parent.train.micro_batch * parent.train.seq_len) as u64;
    t.micro_batch = (row_tokens / spec.length as u64).max(1) as usize;
    t.seq_len = spec.length;
    let micro = (t.micro_batch * t.seq_len) as u64;
    t.batch_tokens = parent.train.batch_tokens.div_ceil(micro) * micro;
    t.steps = spec.tokens.div_ceil(t.batch_tokens).max(1);
    t.length_schedule = spec
        .curriculum
        .0
        .iter()
        .map(|&(seq_len, share)| LengthStage {
            seq_len,
            until: (share * t.steps as f64).round() as u64,
        })
        .collect();
    t.eval_every = (t.steps / 4).max(1);
    t.checkpoint_every = 0;
    t.log_every = t.log_every.min(t.steps).max(1);
    cfg.schedule = ScheduleConfig::Wsd {
        warmup_steps: (t.steps / 20).max(1),
        decay_fraction: Some(0.2),
        decay_steps: None,
        decay: DecayFn::Exp,
        half_life: None,
        floor: 0.0,
        decay_from: None,
    };
    if !spec.long_data.is_empty() {
        let share = spec.long_share;
        if !(0.0 < share && share <= 1.0) {
            return Err(usage(format!("--long-share {share} must be in (0, 1]")));
        }
        let (mut sources, weights) = parent.data.resolved_mixture()?;
        let long = long_sources(&spec.long_data)?;
        for (name, dir) in &long {
            // A parent that is itself an extension (a curriculum's earlier stage) has the
            // source already: the same directory takes the new share.
            if let Some(had) = sources.get(name).filter(|&had| had != dir) {
                return Err(usage(format!(
                    "the parent's data has a source `{name}` of its own ({}), not {}",
                    had.display(),
                    dir.display()
                )));
            }
            sources.insert(name.clone(), dir.clone());
        }
        let each = share / long.len() as f64;
        cfg.data.train = None;
        cfg.data.sources = sources;
        cfg.data.mixture = weights
            .into_iter()
            .map(|(phase, w)| {
                let others: Vec<(String, f64)> = w
                    .into_iter()
                    .filter(|(name, _)| !long.contains_key(name))
                    .collect();
                let total: f64 = others.iter().map(|(_, x)| x).sum();
                let mut mixed: BTreeMap<String, f64> = others
                    .into_iter()
                    .map(|(name, x)| (name, x / total * (1.0 - share)))
                    .collect();
                mixed.extend(long.keys().map(|name| (name.clone(), each)));
                (phase, mixed)
            })
            .collect();
    }
    cfg.branches = None;
    cfg.branch = None;
    cfg.extended = Some(origin);
    Ok(RunConfig::parse(&cfg.to_toml(), "extend", &spec.overrides)?)
}

/// The long sources' names for `dirs`, in order: [`LONG_SOURCE`], `long-2`, `long-3`, ...
fn long_sources(dirs: &[PathBuf]) -> Result<BTreeMap<String, PathBuf>, TrainError> {
    let mut named = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        if dirs[..i].contains(dir) {
            let m = format!("--long-data {} is given twice", dir.display());
            return Err(InvalidSetting::new("extend", m).into());
        }
        let name = match i {
            0 => LONG_SOURCE.to_string(),
            _ => format!("{LONG_SOURCE}-{}", i + 1),
        };
        named.insert(name, dir.clone());
    }
    Ok(named)
}

/// The parent's weights under `cfg`: every tensor copied, an untied head from the embedding.
fn extended_weights(parent: &MiniCpm, cfg: &ModelConfig, device: &Device) -> MiniCpm {
    let tensors: HashMap<String, F32Tensor> = named_tensors(parent)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut source = |name: &str, shape: &[usize]| -> Result<Vec<f32>, std::convert::Infallible> {
        let from = match tensors.contains_key(name) {
            true => name,
            false => "model.embed_tokens.weight",
        };
        let t = &tensors[from];
        assert_eq!(t.shape, shape, "{name} copies {from} of the same shape");
        Ok(t.data.clone())
    };
    match MiniCpm::new(&mut Weights::new(&mut source, device), cfg) {
        Ok(m) => m,
        Err(never) => match never {},
    }
}

/// Zero AdamW moments for every tensor of `cfg`, at step 0.
fn fresh_moments(cfg: &ModelConfig) -> (Vec<F32Tensor>, HashMap<String, String>) {
    let mut out = Vec::new();
    for (name, shape) in tensor_shapes(cfg) {
        let n: usize = shape.iter().product();
        for suffix in ["exp_avg", "exp_avg_sq"] {
            out.push(F32Tensor {
                name: format!("{name}.{suffix}"),
                shape: vec![n],
                data: vec![0.0; n],
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    (out, HashMap::from([("steps".to_string(), "0".to_string())]))
}

/// Makes the extended run `out` from `checkpoint` (`<run>/checkpoints/step-N`).
pub fn create(checkpoint: &Path, spec: &ExtendSpec, out: &Path) -> Result<PathBuf, TrainError> {
    if spec.length == 0 || spec.tokens == 0 {
        let msg = "--length and --tokens must be positive";
        return Err(InvalidSetting::new("extend", msg).into());
    }
    let parent = derived_run::open_parent(checkpoint, out, "extend")?;
    let state = checkpoint::read_state(&parent.checkpoint)?;
    let origin = ExtendOrigin {
        checkpoint: checkpoint.display().to_string(),
        step: state.step,
        tokens: state.tokens,
        from_length: parent.config.train.seq_len,
        length: spec.length,
        rope: spec.rope.to_string(),
        untied: spec.untie && parent.config.model.tie_word_embeddings,
        curriculum: spec.curriculum.to_string(),
    };
    let cfg = extended_run(&parent.config, spec, origin)?;
    if cfg.finetune.is_none() {
        // The data opens as training will open it, before anything is written: a missing or
        // foreign --long-data directory, or a source too short for rows of --length, is refused
        // here rather than after the run exists.
        RunData::open(&cfg, cfg.model.vocab_size)?;
    }

    let device = Device::flex();
    let parent_model = mup::resolve(&parent.config.model, parent.config.parametrization);
    let model_cfg = mup::resolve(&cfg.model, cfg.parametrization);
    let weights = hf::load_weights(&parent.checkpoint, &parent_model, &device)?;
    let model = extended_weights(&weights, &model_cfg, &device);
    let (moments, meta) = fresh_moments(&model_cfg);
    let fresh = TrainerState {
        step: 0,
        tokens: 0,
        data_cursor: MixtureCursor::default(),
        seed: state.seed,
        wall_time_s: 0.0,
    };
    derived_run::write_run(out, &parent, &cfg, 0, |ckpt| {
        hf::save(&model, ckpt)?;
        write_f32(&ckpt.join(OPTIMIZER_FILE), &moments, Some(meta))?;
        let state_json = serde_json::to_string_pretty(&fresh).expect("a trainer state serialises");
        write_atomic(&ckpt.join(STATE_FILE), state_json.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 128
        }))
        .unwrap()
    }

    fn spec(rope: &str) -> ExtendSpec {
        ExtendSpec {
            length: 2048,
            rope: rope.parse().unwrap(),
            curriculum: Curriculum::default(),
            untie: false,
            tokens: 1,
            long_data: vec![],
            long_share: 0.5,
            overrides: Vec::new(),
        }
    }

    #[test]
    fn each_rope_change_sets_the_config_transformers_reads() {
        let p = parent();
        let extend = |p: &ModelConfig, rope: &str| extended_model(p, 128, &spec(rope));
        let none = extend(&p, "none").unwrap();
        assert_eq!((none.max_position_embeddings, none.rope_theta), (2048, 1e4));
        let abf = extend(&p, "abf:theta=1e6").unwrap();
        assert_eq!((abf.max_position_embeddings, abf.rope_theta), (2048, 1e6));
        let ntk = extend(&p, "ntk:factor=16").unwrap();
        let why = "dynamic NTK scales past the trained context";
        assert_eq!(ntk.max_position_embeddings, 128, "{why}");
        assert_eq!(ntk.rope_scaling, Some(RopeScaling::new("dynamic", 16.0)));
        let yarn = extend(&p, "yarn:factor=16").unwrap();
        assert_eq!(yarn.max_position_embeddings, 2048);
        let r = yarn.rope_scaling.unwrap();
        let original = (r.kind.as_str(), r.original_max_position_embeddings);
        assert_eq!(original, ("yarn", Some(128)));
        let untied = ExtendSpec {
            untie: true,
            ..spec("none")
        };
        assert!(
            !extended_model(&p, 128, &untied)
                .unwrap()
                .tie_word_embeddings
        );
        // Both at once: NTK grows the base past 2048 / 4 = 512 tokens.
        let both = extend(&p, "abf:theta=1e6,ntk:factor=4").unwrap();
        assert_eq!((both.max_position_embeddings, both.rope_theta), (512, 1e6));
        assert_eq!(both.rope_scaling, Some(RopeScaling::new("dynamic", 4.0)));
        let e = extend(&p, "abf:theta=1e6,ntk:factor=32").unwrap_err();
        assert!(e.contains("64 tokens") && e.contains("at most 16"), "{e}");
        // ABF, then NTK on top (the curriculum's second stage); but not two scalings.
        assert!(extend(&abf, "ntk:factor=4").is_ok());
        let e = extend(&ntk, "yarn:factor=2").unwrap_err();
        assert!(e.contains("already scales RoPE"), "{e}");
    }

    #[test]
    fn rope_changes_parse_and_print_alike_and_bad_ones_are_named() {
        for s in [
            "none",
            "abf:theta=1000000",
            "ntk:factor=4",
            "linear:factor=2",
            "yarn:factor=8",
            "abf:theta=1000000,ntk:factor=4",
        ] {
            assert_eq!(s.parse::<RopeChange>().unwrap().to_string(), s);
        }
        for (bad, culprit) in [
            ("ntk", "ntk:factor=VALUE"),
            ("ntk:factor=4,abf:theta=1e6", "the one combination"),
            ("abf:theta=1e6,ntk:factor=x", "\"x\" is not a number"),
            ("abf:theta=big", "\"big\" is not a number"),
            ("rope2", "use none, abf"),
        ] {
            let e = bad.parse::<RopeChange>().unwrap_err();
            assert!(e.contains(culprit), "{bad}: {e}");
        }
    }

    #[test]
    fn curricula_parse_and_print_alike_and_bad_ones_are_named() {
        let c: Curriculum = "1024:0.5,2048:0.75".parse().unwrap();
        assert_eq!(c.0, [(1024, 0.5), (2048, 0.75)]);
        assert_eq!(c.to_string(), "1024:0.5,2048:0.75");
        for bad in [
            "1024",
            "1024:1",
            "1024:0",
            "x:0.5",
            "1024:0.5,",
            "1024:half",
        ] {
            let e = bad.parse::<Curriculum>().unwrap_err();
            assert!(e.contains("LENGTH:SHARE") && e.contains(bad), "{bad}: {e}");
        }
    }
}
