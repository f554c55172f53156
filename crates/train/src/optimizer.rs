//! AdamW with MiniCPM's parameter groups: each tensor's learning-rate scale and weight decay come
//! from the muP rules (by HF name), global-norm gradient clipping, and state that is saved to and
//! restored from `optimizer.safetensors` exactly.

use crate::adamw_host;
use crate::error::InvalidSetting;
use crate::optimizer_shard::Shard;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use minicpm_model::mup::{rule, Parametrization, TensorRole, TensorRule};
use minicpm_model::named::{map_named, visit_named, NamedMapper, NamedVisitor};
use minicpm_model::safetensors_io::{write_f32, F32Tensor, TensorFile};
use minicpm_model::{MiniCpm, ModelConfig, ModelError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak base learning rate (muP: hidden matrices get `lr / scale_width`).
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// Decoupled weight decay (never applied to norm weights).
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
}

fn d_lr() -> f64 {
    0.01
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.95
}
fn d_eps() -> f64 {
    1e-8
}
fn d_wd() -> f64 {
    0.1
}
fn d_clip() -> f64 {
    1.0
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: d_lr(),
            beta1: d_beta1(),
            beta2: d_beta2(),
            eps: d_eps(),
            weight_decay: d_wd(),
            grad_clip: d_clip(),
        }
    }
}

impl OptimConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.checked()
            .map_err(|msg| InvalidSetting::new("optim", msg))
    }

    fn checked(&self) -> Result<(), String> {
        let in01 = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("optim.{name} must be in [0, 1), got {v}"))
            }
        };
        in01("beta1", self.beta1)?;
        in01("beta2", self.beta2)?;
        for (name, v) in [
            ("lr", self.lr),
            ("eps", self.eps),
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "optim.{name} must be a non-negative number, got {v}"
                ));
            }
        }
        Ok(())
    }
}

/// First and second moments of one tensor, flattened.
#[derive(Clone)]
pub(crate) struct Moments {
    pub(crate) m: Tensor<1>,
    pub(crate) v: Tensor<1>,
}

/// What one optimizer step did, for the logs.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

pub struct AdamW {
    pub cfg: OptimConfig,
    model_cfg: ModelConfig,
    param: Parametrization,
    state: HashMap<String, Moments>,
    /// Updates applied so far (Adam's bias-correction step count).
    pub steps: u64,
    /// Across ranks with sharded state: the tensors whose state this rank keeps and updates
    /// (optimizer_shard.rs); `None` keeps and updates all.
    shard: Option<Shard>,
}

impl AdamW {
    pub fn new(cfg: OptimConfig, model_cfg: &ModelConfig, param: Parametrization) -> Self {
        AdamW {
            cfg,
            model_cfg: model_cfg.clone(),
            param,
            state: HashMap::new(),
            steps: 0,
            shard: None,
        }
    }

    /// From now on keeps and updates only the state of `shard`'s tensors, dropping the rest.
    pub fn keep_shard(&mut self, shard: Shard) {
        self.state.retain(|name, _| shard.owns(name));
        self.shard = Some(shard);
    }

    /// The tensors this rank keeps state for, when sharded.
    pub fn shard(&self) -> Option<&Shard> {
        self.shard.as_ref()
    }

    pub(crate) fn moments(&self) -> &HashMap<String, Moments> {
        &self.state
    }

    /// An unsharded optimizer of the same settings and step count holding `state`.
    pub(crate) fn with_moments(&self, state: HashMap<String, Moments>) -> AdamW {
        AdamW {
            cfg: self.cfg.clone(),
            model_cfg: self.model_cfg.clone(),
            param: self.param,
            state,
            steps: self.steps,
            shard: None,
        }
    }

    pub fn rule(&self, name: &str) -> TensorRule {
        rule(&self.model_cfg, self.param, TensorRole::of(name))
    }

    /// Global L2 norm of all gradients (one device sync).
    pub fn grad_norm(model: &MiniCpm, grads: &GradientsParams) -> f64 {
        struct SumSq<'a> {
            grads: &'a GradientsParams,
            acc: Option<Tensor<1>>,
        }
        impl ModuleVisitor for SumSq<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.grads.get::<D>(param.id) {
                    let s = sum_of_squares(g);
                    self.acc = Some(match self.acc.take() {
                        Some(a) => a + s,
                        None => s,
                    });
                }
            }
        }
        let mut v = SumSq { grads, acc: None };
        model.visit(&mut v);
        v.acc
            .map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt())
    }

    /// One AdamW update of every parameter that has a gradient, at base learning rate `lr`.
    pub fn step(
        &mut self,
        model: MiniCpm,
        mut grads: GradientsParams,
        lr: f64,
    ) -> (MiniCpm, StepStats) {
        let grad_norm = Self::grad_norm(&model, &grads);
        let clip = if self.cfg.grad_clip > 0.0 && grad_norm > self.cfg.grad_clip {
            self.cfg.grad_clip / (grad_norm + 1e-6)
        } else {
            1.0
        };
        self.steps += 1;
        let t = self.steps as i32;
        let (bias1, bias2) = (1.0 - self.cfg.beta1.powi(t), 1.0 - self.cfg.beta2.powi(t));
        let mut mapper = Update {
            opt: self,
            grads: &mut grads,
            lr,
            clip,
            bias1,
            bias2,
        };
        let model = map_named(model, &mut mapper);
        (model, StepStats { grad_norm })
    }

    /// Writes the moments and the step count to `path`.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let mut names: Vec<&String> = self.state.keys().collect();
        names.sort();
        let mut tensors = Vec::with_capacity(2 * names.len());
        for n in names {
            let s = &self.state[n];
            for (suffix, t) in [("exp_avg", &s.m), ("exp_avg_sq", &s.v)] {
                let data = t
                    .to_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32");
                tensors.push(F32Tensor {
                    name: format!("{n}.{suffix}"),
                    shape: vec![data.len()],
                    data,
                });
            }
        }
        let mut meta = HashMap::new();
        meta.insert("steps".to_string(), self.steps.to_string());
        write_f32(path, &tensors, Some(meta))
    }

    /// Restores the state written by [`AdamW::save`]; every tensor must match the model's size.
    pub fn load(&mut self, path: &Path, model: &MiniCpm) -> Result<(), ModelError> {
        let file = TensorFile::open(path)?;
        let origin = path.display().to_string();
        self.steps = file
            .user_metadata()
            .get("steps")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ModelError::Parse {
                origin: origin.clone(),
                msg: "no `steps` in the metadata".into(),
            })?;
        let device = model
            .devices()
            .into_iter()
            .next()
            .expect("model has a device");
        struct Read<'a> {
            file: &'a TensorFile,
            device: burn::tensor::Device,
            state: HashMap<String, Moments>,
            err: Option<ModelError>,
        }
        impl NamedVisitor for Read<'_> {
            fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
                if self.err.is_some() {
                    return;
                }
                let n = param.lazy_shape().num_elements();
                let read = |suffix: &str| -> Result<Tensor<1>, ModelError> {
                    let v = self.file.f32(&format!("{name}.{suffix}"), Some(&[n]))?;
                    Ok(Tensor::<1>::from_floats(v.as_slice(), &self.device).inner())
                };
                match (read("exp_avg"), read("exp_avg_sq")) {
                    (Ok(m), Ok(v)) => {
                        self.state.insert(name.to_string(), Moments { m, v });
                    }
                    (Err(e), _) | (_, Err(e)) => self.err = Some(e),
                }
            }
        }
        let mut read = Read {
            file: &file,
            device,
            state: HashMap::new(),
            err: None,
        };
        visit_named(model, &mut read);
        let (state, err) = (read.state, read.err);
        if let Some(e) = err {
            return Err(e);
        }
        self.state = state;
        Ok(())
    }
}

struct Update<'a> {
    opt: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    lr: f64,
    clip: f64,
    bias1: f64,
    bias2: f64,
}

impl NamedMapper for Update<'_> {
    fn map<const D: usize>(&mut self, name: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        if self.opt.shard.as_ref().is_some_and(|s| !s.owns(name)) {
            return param; // its owner updates it (optimizer_shard.rs)
        }
        let name = name.to_string();
        let rule = self.opt.rule(&name);
        let cfg = self.opt.cfg.clone();
        let (id, value, mapper) = param.consume();
        let dims = value.dims();
        let require_grad = value.is_require_grad();
        let w = value.inner().reshape([-1]);
        let g = grad.reshape([-1]);
        let (m, v) = match self.opt.state.remove(&name) {
            Some(s) => (s.m, s.v),
            None => (g.zeros_like(), g.zeros_like()),
        };
        let lr = self.lr * rule.lr_scale;
        let decays = rule.weight_decay && cfg.weight_decay > 0.0;
        let hyper = adamw_host::Hyper {
            lr,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: if decays { cfg.weight_decay } else { 0.0 },
            clip: self.clip,
            bias1: self.bias1,
            bias2: self.bias2,
        };
        let (w, m, v) = if minicpm_model::kernels::available(&w.device()) {
            adamw_host::update(w, g, m, v, &hyper)
        } else {
            adamw_host::update_with_tensor_ops(w, g, m, v, &hyper)
        };
        self.opt.state.insert(name, Moments { m, v });
        let mut w = Tensor::from_inner(w.reshape(dims));
        if require_grad {
            w = w.require_grad();
        }
        Param::from_mapped_value(id, w, mapper)
    }
}

/// Elements per piece of [`sum_of_squares`]. burn's CPU `sum` splits a tensor of 4M elements or
/// more over the thread pool and adds the parts in the order the threads finish, so the same
/// gradients gave norms a rounding apart and runs with such a tensor (d512's embedding, 8192 x
/// 512) were not reproducible; a piece this size is summed on one thread.
const NORM_PIECE: usize = 1 << 20;

/// The sum of `g`'s squared elements, as pieces of [`NORM_PIECE`] elements added in order: the
/// same bits whatever the threads (and, for a tensor of one piece, `g.square().sum()`).
fn sum_of_squares<const D: usize>(g: Tensor<D>) -> Tensor<1> {
    let n = g.shape().num_elements();
    let flat = g.reshape([n]);
    (0..n)
        .step_by(NORM_PIECE)
        .map(|start| {
            let piece = flat.clone().slice(start..(start + NORM_PIECE).min(n));
            piece.square().sum()
        })
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Tensor::zeros([1], &flat.device()))
}

#[cfg(test)]
mod tests {
    use super::{sum_of_squares, NORM_PIECE};
    use burn::tensor::{Device, Tensor, TensorData};

    /// A gradient past burn's threshold for splitting a sum over the threads: its sum of squares
    /// is the same whatever the threads, and agrees with an f64 sum.
    #[test]
    fn the_sum_of_squares_has_the_same_bits_on_any_number_of_threads() {
        let n = 4 * NORM_PIECE + 12_345;
        let values: Vec<f32> = (0..n).map(|i| ((i % 977) as f32 * 0.013).sin()).collect();
        let want: f64 = values.iter().map(|&v| v as f64 * v as f64).sum();
        let device = Device::flex();
        let g = Tensor::<1>::from_data(TensorData::new(values, [n]), &device);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| sum_of_squares(g.clone()).into_scalar::<f32>())
        };
        let one = on(1);
        assert!(
            (one as f64 - want).abs() <= 1e-5 * want,
            "{one} against {want}"
        );
        for threads in [2, 3, 2] {
            assert_eq!(on(threads).to_bits(), one.to_bits(), "{threads} threads");
        }
    }
}
