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
    let model = init_model(&cfg, Parametrization::Mup, 1, &Device::flex());
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
