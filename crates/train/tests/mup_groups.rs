//! The built model and optimizer follow MiniCPM's muP table: init stds measured on the tensors,
//! and per-group learning rates measured on the first AdamW update.

use burn::optim::GradientsParams;
use burn::tensor::Device;
use minicpm_model::hf::named_tensors;
use minicpm_model::init::init_model;
use minicpm_model::mup::{Parametrization, TensorRole};
use minicpm_model::ModelConfig;
use minicpm_train::loss::lm_loss;
use minicpm_train::optimizer::{AdamW, OptimConfig};

fn config() -> ModelConfig {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 512, "hidden_size": 256, "intermediate_size": 640, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": false,
        "scale_emb": 12, "scale_depth": 1.4, "dim_model_base": 64, "initializer_range": 0.1
    }))
    .unwrap()
}

fn std_of(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn init_stds_follow_the_mup_table() {
    let cfg = config(); // scale_width = 256 / 64 = 4
                        // The MoE variant adds routers, N(0, 0.01^2) at any width.
    let moe = ModelConfig {
        num_experts: Some(4),
        num_experts_per_tok: Some(2),
        ..cfg.clone()
    };
    for c in [&cfg, &moe] {
        let model = init_model(c, Parametrization::Mup, 1, &Device::flex());
        for t in named_tensors(&model) {
            let s = std_of(&t.data);
            match TensorRole::of(&t.name) {
                TensorRole::Norm => assert!(t.data.iter().all(|&x| x == 1.0), "{}", t.name),
                TensorRole::Matrix => {
                    assert!((s - 0.1 / 2.0).abs() < 0.05 * 0.05, "{}: std {s}", t.name)
                }
                TensorRole::Embedding | TensorRole::LmHead => {
                    assert!((s - 0.1).abs() < 0.05 * 0.1, "{}: std {s}", t.name)
                }
                TensorRole::Router => {
                    assert!((s - 0.01).abs() < 0.1 * 0.01, "{}: std {s}", t.name)
                }
            }
        }
    }
    // SP: one std everywhere.
    let sp = init_model(
        &minicpm_model::mup::resolve(&cfg, Parametrization::Sp),
        Parametrization::Sp,
        1,
        &Device::flex(),
    );
    for t in named_tensors(&sp)
        .iter()
        .filter(|t| TensorRole::of(&t.name) != TensorRole::Norm)
    {
        assert!((std_of(&t.data) - 0.1).abs() < 0.005, "{}", t.name);
    }
}

#[test]
fn first_update_moves_each_group_by_its_learning_rate() {
    // Adam's first update is lr * g / (|g| + eps) = lr * sign(g) per element, so the largest
    // change of each tensor measures its group's learning rate (weight decay off).
    let cfg = config();
    let device = Device::flex().autodiff();
    let model = init_model(&cfg, Parametrization::Mup, 3, &device);
    let before = named_tensors(&model);
    let inputs: Vec<u32> = (0..64).map(|i| (i * 37 % 512) as u32).collect();
    let targets: Vec<u32> = (0..64).map(|i| (i * 91 % 512) as u32).collect();
    let batch = minicpm_data::Batch {
        inputs,
        targets,
        rows: 2,
        seq_len: 32,
        positions: None,
    };
    let loss = lm_loss(&model, &batch, &device);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let optim = OptimConfig {
        weight_decay: 0.0,
        grad_clip: 0.0,
        ..OptimConfig::default()
    };
    let mut opt = AdamW::new(optim, &cfg, Parametrization::Mup);
    let (model, _) = opt.step(model, grads, 0.01);
    for (b, a) in before.iter().zip(named_tensors(&model)) {
        let moved = b
            .data
            .iter()
            .zip(&a.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max) as f64;
        let want = match TensorRole::of(&b.name) {
            TensorRole::Matrix => 0.01 / 4.0,
            _ => 0.01,
        };
        assert!(
            (moved - want).abs() < 0.02 * want,
            "{}: moved {moved}, group lr {want}",
            b.name
        );
    }
}

/// The fixture written by scripts/reference/make_adamw_fixture.py: torch.optim.AdamW's weights
/// after each of five updates of a tiny model, with MiniCPM's three parameter groups (hidden
/// matrices at lr / scale_width, embeddings and norms at lr, no decay on norms), a varying base
/// learning rate, and global-norm clipping on updates 1, 3 and 5.
fn adamw_fixture() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adamw")
}

/// One parameter of a model: HF name, id, shape and values.
struct NamedParam {
    name: String,
    id: burn::module::ParamId,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Every parameter of `model`, in module order.
fn named_params(model: &minicpm_model::MiniCpm) -> Vec<NamedParam> {
    use burn::module::Param;
    use minicpm_model::named::{visit_named, NamedVisitor};
    struct Ids(Vec<NamedParam>);
    impl NamedVisitor for Ids {
        fn visit<const D: usize>(&mut self, name: &str, p: &Param<burn::tensor::Tensor<D>>) {
            let t = p.val();
            self.0.push(NamedParam {
                name: name.to_string(),
                id: p.id,
                shape: t.dims().to_vec(),
                values: t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(),
            });
        }
    }
    let mut v = Ids(vec![]);
    visit_named(model, &mut v);
    v.0
}

#[test]
fn adamw_matches_torch_over_several_clipped_and_unclipped_updates() {
    use burn::tensor::{Tensor, TensorData};
    use minicpm_model::hf;
    use minicpm_model::safetensors_io::TensorFile;

    let dir = adamw_fixture();
    let device = Device::flex();
    let mut model = hf::load(&dir, &device).unwrap();
    let cfg = model.config.clone();
    let reference = TensorFile::open(&dir.join("steps.safetensors")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&reference.user_metadata()["reference"]).unwrap();
    let hyper = |key: &str| meta[key].as_f64().unwrap();
    let base_lr: Vec<f64> = serde_json::from_value(meta["base_lr"].clone()).unwrap();
    let torch_norms: Vec<f64> = serde_json::from_value(meta["grad_norm"].clone()).unwrap();
    let clipped: Vec<bool> = serde_json::from_value(meta["clipped"].clone()).unwrap();
    assert!(clipped.contains(&true) && clipped.contains(&false));
    let optim = OptimConfig {
        lr: base_lr[0],
        beta1: hyper("beta1"),
        beta2: hyper("beta2"),
        eps: hyper("eps"),
        weight_decay: hyper("weight_decay"),
        grad_clip: hyper("grad_clip"),
    };
    // The fixture was made with the trainer's defaults; a change of defaults needs a new fixture.
    assert_eq!(
        optim,
        OptimConfig {
            lr: base_lr[0],
            ..OptimConfig::default()
        }
    );
    assert_eq!(cfg.scale_width(), hyper("scale_width"));

    let params = named_params(&model);
    assert_eq!(params.len(), 12, "one layer, untied: twelve tensors");
    let initial = TensorFile::open(&dir.join(hf::WEIGHTS_FILE)).unwrap();
    let mut opt = AdamW::new(optim, &cfg, Parametrization::Mup);
    for (k, &lr) in base_lr.iter().enumerate() {
        let step = k + 1;
        let mut grads = GradientsParams::new();
        for NamedParam {
            name, id, shape, ..
        } in &params
        {
            let g = reference
                .f32(&format!("step{step}.grad.{name}"), Some(shape))
                .unwrap();
            match shape.len() {
                1 => grads.register::<1>(
                    *id,
                    Tensor::from_data(TensorData::new(g, [shape[0]]), &device),
                ),
                2 => grads.register::<2>(
                    *id,
                    Tensor::from_data(TensorData::new(g, [shape[0], shape[1]]), &device),
                ),
                n => panic!("{name}: unexpected rank {n}"),
            }
        }
        let (updated, stats) = opt.step(model, grads, lr);
        model = updated;
        let want_norm = torch_norms[k];
        assert!(
            (stats.grad_norm - want_norm).abs() <= 1e-6 * want_norm,
            "update {step}: gradient norm {} vs torch {want_norm}",
            stats.grad_norm
        );
        for t in named_params(&model) {
            let want = reference
                .f32(&format!("step{step}.weight.{}", t.name), None)
                .unwrap();
            let start = initial.f32(&t.name, None).unwrap();
            let max_abs = |v: &mut dyn Iterator<Item = f32>| v.fold(0f32, |m, x| m.max(x.abs()));
            let err = max_abs(&mut t.values.iter().zip(&want).map(|(a, b)| a - b));
            let scale = max_abs(&mut want.iter().copied());
            assert!(
                err <= 1e-6 * scale,
                "update {step}: {}: max error {err} on weights of size {scale}",
                t.name
            );
            // The weights hardly move per update, so also compare the movement itself: a wrong
            // group learning rate, bias correction or decay shows here at the percent level.
            let moved = max_abs(&mut want.iter().zip(&start).map(|(a, b)| a - b));
            assert!(
                err <= 1e-4 * moved,
                "update {step}: {}: max error {err} on a total movement of {moved}",
                t.name
            );
        }
    }
    assert_eq!(opt.steps, base_lr.len() as u64);
}
