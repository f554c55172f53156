//! Sparse upcycling (docs/MODEL.md section 12): a dense checkpoint becomes a mixture-of-experts
//! run. Every MLP becomes E experts that are exact
//! copies of it, behind a new router drawn from N(0, 0.01^2); attention, norms and embeddings are
//! kept. The new run directory holds one checkpoint at the parent's update, with the parent's
//! data cursor and schedule, so `minicpm train --resume` continues exactly where the dense run
//! would have, on the same tokens.
//!
//! Optimizer state: each expert starts with its dense MLP's AdamW moments (the default: the copy
//! continues the trajectory its parent was on, and the step count that Adam's bias correction
//! uses stays valid for every tensor), or with zero moments (`fresh`). The router always starts
//! with zero moments.

use crate::checkpoint::{self, OPTIMIZER_FILE, STATE_FILE};
use crate::derived_run;
use crate::error::{InvalidSetting, TrainError};
use burn::tensor::Device;
use minicpm_model::init::init_values;
use minicpm_model::mup::{self, TensorRole};
use minicpm_model::named::named_tensors;
use minicpm_model::params::tensor_shapes;
use minicpm_model::safetensors_io::{write_atomic, write_f32, F32Tensor, TensorFile};
use minicpm_model::{hf, MiniCpm, ModelConfig, ModelError, Parametrization, Weights};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the experts' AdamW moments come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpertMoments {
    /// Each expert's moments are its dense MLP's.
    Copied,
    /// Zero moments (the step count stays the run's).
    Fresh,
}

/// What an upcycled run came from, recorded in its `run.toml` as `[upcycled]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpcycleOrigin {
    /// The dense checkpoint, as given.
    pub checkpoint: String,
    /// Its update count and tokens.
    pub step: u64,
    pub tokens: u64,
    pub expert_moments: ExpertMoments,
}

/// How to upcycle.
#[derive(Debug, Clone)]
pub struct UpcycleSpec {
    pub experts: usize,
    pub top_k: usize,
    pub expert_moments: ExpertMoments,
    /// Seeds the routers' initialisation; `None` takes the run's seed.
    pub seed: Option<u64>,
}

/// The dense tensor an upcycled one copies; `None` for a router (it is new).
pub fn dense_source(name: &str) -> Option<String> {
    if TensorRole::of(name) == TensorRole::Router {
        return None;
    }
    let Some((layer, rest)) = name.split_once(".mlp.experts.") else {
        return Some(name.to_string());
    };
    let (_, weight) = rest.split_once('.')?;
    let dense = match weight {
        "w1.weight" => "gate_proj.weight",
        "w3.weight" => "up_proj.weight",
        "w2.weight" => "down_proj.weight",
        _ => return Some(name.to_string()),
    };
    Some(format!("{layer}.mlp.{dense}"))
}

/// The config of `dense` with `experts` experts of which each token uses `top_k`.
pub fn moe_config(dense: &ModelConfig, experts: usize, top_k: usize) -> ModelConfig {
    ModelConfig {
        num_experts: Some(experts),
        num_experts_per_tok: Some(top_k),
        ..dense.clone()
    }
}

/// `dense` upcycled into a model of `moe_cfg` (already validated): experts copy the MLPs, routers
/// are drawn by the parametrisation's rule from `seed`.
pub fn upcycle_model(
    dense: &MiniCpm,
    moe_cfg: &ModelConfig,
    param: Parametrization,
    seed: u64,
    device: &Device,
) -> MiniCpm {
    let tensors: HashMap<String, F32Tensor> = named_tensors(dense)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut source = |name: &str, shape: &[usize]| -> Result<Vec<f32>, std::convert::Infallible> {
        Ok(match dense_source(name) {
            None => init_values(moe_cfg, param, seed, name, shape),
            Some(from) => {
                let t = &tensors[&from];
                assert_eq!(t.shape, shape, "{name} copies {from} of the same shape");
                t.data.clone()
            }
        })
    };
    match MiniCpm::new(&mut Weights::new(&mut source, device), moe_cfg) {
        Ok(m) => m,
        Err(never) => match never {},
    }
}

/// The AdamW state of the upcycled model from the dense checkpoint's `optimizer.safetensors`.
fn upcycle_moments(
    dense_opt: &TensorFile,
    moe_cfg: &ModelConfig,
    moments: ExpertMoments,
) -> Result<(Vec<F32Tensor>, HashMap<String, String>), ModelError> {
    let mut out = vec![];
    for (name, shape) in tensor_shapes(moe_cfg) {
        let n: usize = shape.iter().product();
        let from = match (dense_source(&name), moments) {
            (Some(_), ExpertMoments::Fresh) if name.contains(".mlp.experts.") => None,
            (from, _) => from,
        };
        for suffix in ["exp_avg", "exp_avg_sq"] {
            let data = match &from {
                Some(dense) => dense_opt.f32(&format!("{dense}.{suffix}"), Some(&[n]))?,
                None => vec![0.0; n],
            };
            out.push(F32Tensor {
                name: format!("{name}.{suffix}"),
                shape: vec![n],
                data,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, dense_opt.user_metadata()))
}

/// Makes the upcycled run `out` from the dense `checkpoint` (`<run>/checkpoints/step-N`).
pub fn create(checkpoint: &Path, spec: &UpcycleSpec, out: &Path) -> Result<PathBuf, TrainError> {
    let usage = |m: String| TrainError::from(InvalidSetting::new("upcycle", m));
    let parent = derived_run::open_parent(checkpoint, out, "upcycle")?;
    let abs = &parent.checkpoint;
    if parent.config.model.moe().is_some() {
        return Err(usage(format!(
            "{}: already a mixture of experts",
            checkpoint.display()
        )));
    }
    let state = checkpoint::read_state(abs)?;
    let mut cfg = parent.config.clone();
    cfg.model = moe_config(&parent.config.model, spec.experts, spec.top_k);
    cfg.branches = None;
    cfg.upcycled = Some(UpcycleOrigin {
        checkpoint: checkpoint.display().to_string(),
        step: state.step,
        tokens: state.tokens,
        expert_moments: spec.expert_moments,
    });
    cfg.validate("upcycle")?;

    let device = Device::flex();
    let dense_cfg = mup::resolve(&parent.config.model, parent.config.parametrization);
    let moe_cfg = mup::resolve(&cfg.model, cfg.parametrization);
    let dense = hf::load_weights(abs, &dense_cfg, &device)?;
    let seed = spec.seed.unwrap_or(cfg.seed);
    let moe = upcycle_model(&dense, &moe_cfg, cfg.parametrization, seed, &device);
    let dense_opt = TensorFile::open(&abs.join(OPTIMIZER_FILE))?;
    let (moments, meta) = upcycle_moments(&dense_opt, &moe_cfg, spec.expert_moments)?;
    derived_run::write_run(out, &parent, &cfg, state.step, |ckpt| {
        hf::save(&moe, ckpt)?;
        write_f32(&ckpt.join(OPTIMIZER_FILE), &moments, Some(meta))?;
        // The parent's trainer state: the run continues on its tokens.
        let state_file = abs.join(STATE_FILE);
        let bytes = std::fs::read(&state_file).map_err(|e| ModelError::io(&state_file, e))?;
        write_atomic(&ckpt.join(STATE_FILE), &bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Int, Tensor, TensorData};
    use minicpm_model::init;

    #[test]
    fn experts_copy_the_mlp_and_everything_else_is_kept() {
        let l = "model.layers.3.mlp";
        assert_eq!(
            dense_source(&format!("{l}.experts.5.w1.weight")).as_deref(),
            Some("model.layers.3.mlp.gate_proj.weight")
        );
        assert_eq!(
            dense_source(&format!("{l}.experts.0.w3.weight")).as_deref(),
            Some("model.layers.3.mlp.up_proj.weight")
        );
        assert_eq!(
            dense_source(&format!("{l}.experts.7.w2.weight")).as_deref(),
            Some("model.layers.3.mlp.down_proj.weight")
        );
        assert_eq!(dense_source(&format!("{l}.gate.weight")), None);
        let q = "model.layers.0.self_attn.q_proj.weight";
        assert_eq!(dense_source(q).as_deref(), Some(q));
    }

    /// Upcycling is exact at step 0: identical experts whose weights sum to 1 give the dense
    /// model's logits, whatever the router's weights.
    #[test]
    fn the_upcycled_model_computes_the_dense_model() {
        let device = Device::flex();
        let dense_cfg: ModelConfig = serde_json::from_value(serde_json::json!({
            "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "scale_emb": 12.0, "scale_depth": 1.4, "dim_model_base": 8.0
        }))
        .unwrap();
        let dense = init::init_model(&dense_cfg, Parametrization::Mup, 7, &device);
        let ids: Vec<i64> = (0..2 * 24).map(|i| (i * 17 % 50) as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 24]), &device);
        let want: Vec<f32> = dense
            .forward(ids.clone(), None)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (experts, top_k, seed) in [(8, 2, 1), (4, 1, 2), (3, 3, 3), (8, 2, 4)] {
            let moe_cfg = moe_config(&dense_cfg, experts, top_k);
            moe_cfg.validate("test").unwrap();
            let moe = upcycle_model(&dense, &moe_cfg, Parametrization::Mup, seed, &device);
            // Any router: a large one routes each token very differently from a small one.
            let moe = scale_routers(moe, seed as f32 * 300.0);
            let got: Vec<f32> = moe
                .forward(ids.clone(), None)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let err = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= 1e-6 * scale.max(1.0),
                "E{experts} k{top_k}: logits differ by {err} (scale {scale})"
            );
        }
    }

    fn scale_routers(model: MiniCpm, factor: f32) -> MiniCpm {
        use burn::module::Param;
        use minicpm_model::named::{map_named, NamedMapper};
        struct Scale(f32);
        impl NamedMapper for Scale {
            fn map<const D: usize>(&mut self, name: &str, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                match TensorRole::of(name) {
                    TensorRole::Router => p.map(|t| t.mul_scalar(self.0)),
                    _ => p,
                }
            }
        }
        map_named(model, &mut Scale(factor))
    }
}
