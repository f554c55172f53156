//! The fine-tuning losses against independent references (fixtures written by
//! scripts/reference/make_sft_dpo_fixture.py): the masked SFT cross-entropy of transformers'
//! Granite model, padded and packed, and one batch of TRL's `DPOTrainer` with precomputed
//! reference log-probabilities, sigmoid and IPO; values and every parameter's gradient.

use crate::dpo::{sequence_log_probs, Dpo, PairBatch, PreferenceLoss};
use crate::loss::MaskedLanguageModel;
use crate::step::tests::grads_by_name;
use crate::step::{Objective, Step};
use burn::tensor::Device;
use minicpm_data::{Batch, IGNORE};
use minicpm_model::safetensors_io::TensorFile;
use minicpm_model::{hf, MiniCpm};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sft_dpo")
}

fn file(name: &str) -> TensorFile {
    TensorFile::open(&dir().join(name)).unwrap()
}

fn policy(device: &Device) -> MiniCpm {
    hf::load(&dir(), device).unwrap()
}

/// HF's unshifted `input_ids` and `labels` (-100 ignored) as our batch: the target of position
/// `t` is label `t + 1`, and the last position has none.
fn hf_batch(f: &TensorFile, ids: &str, labels: &str, positions: Option<&str>) -> Batch {
    let (shape, ids) = f.i64(ids).unwrap();
    let (_, labels) = f.i64(labels).unwrap();
    let (rows, len) = (shape[0], shape[1]);
    let targets = (0..rows * len)
        .map(|i| match i % len + 1 < len && labels[i + 1] != -100 {
            true => labels[i + 1] as u32,
            false => IGNORE,
        })
        .collect();
    Batch {
        inputs: ids.iter().map(|&x| x as u32).collect(),
        targets,
        rows,
        seq_len: len,
        positions: positions.map(|p| f.i64(p).unwrap().1.iter().map(|&x| x as u32).collect()),
    }
}

/// Our loss and gradients for `batch` against `<prefix>.loss` and `<prefix>.grad.<name>`.
fn check<O: Objective>(objective: &O, batch: O::Batch, f: &TensorFile, prefix: &str) {
    let device = Device::flex().autodiff();
    let model = policy(&device);
    let g = Step::new(objective, &device).gradients(&model, &[batch]);
    let want = f.f32(&format!("{prefix}.loss"), None).unwrap()[0] as f64;
    assert!(
        (g.loss - want).abs() <= 1e-5 * want.abs(),
        "{prefix}: loss {} vs {want}",
        g.loss
    );
    let grads = grads_by_name(&model, &g.grads);
    assert_eq!(grads.len(), 21);
    for (name, ours) in grads {
        let theirs = f.f32(&format!("{prefix}.grad.{name}"), None).unwrap();
        let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = ours
            .iter()
            .zip(&theirs)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // f32 rounding of two implementations: ~1e-7 relative to the tensor's largest entry.
        assert!(
            err <= 1e-4 * scale,
            "{prefix}: {name} differs by {err} (scale {scale})"
        );
    }
}

#[test]
fn masked_sft_loss_matches_granite_padded() {
    let f = file("sft.safetensors");
    let batch = hf_batch(&f, "padded.input_ids", "padded.labels", None);
    check(&MaskedLanguageModel, batch, &f, "padded");
}

/// Packed rows: positions restart per conversation and attention stays inside it.
#[test]
fn masked_sft_loss_matches_granite_packed() {
    let f = file("sft.safetensors");
    let batch = hf_batch(
        &f,
        "packed.input_ids",
        "packed.labels",
        Some("packed.position_ids"),
    );
    check(&MaskedLanguageModel, batch, &f, "packed");
}

/// Chosen rows, then rejected rows, with their reference log-probabilities.
fn pairs(f: &TensorFile, reference: Vec<f32>) -> PairBatch {
    let chosen = hf_batch(f, "chosen_input_ids", "chosen_labels", None);
    let rejected = hf_batch(f, "rejected_input_ids", "rejected_labels", None);
    let mut sequences = chosen.clone();
    sequences.inputs.extend(rejected.inputs);
    sequences.targets.extend(rejected.targets);
    sequences.rows *= 2;
    PairBatch {
        sequences,
        reference,
    }
}

fn stored(f: &TensorFile, a: &str, b: &str) -> Vec<f32> {
    [f.f32(a, None).unwrap(), f.f32(b, None).unwrap()].concat()
}

/// The reference model's answer log-probabilities, as TRL precomputed them, and the policy's.
#[test]
fn sequence_log_probs_match_trl() {
    let f = file("dpo.safetensors");
    let device = Device::flex();
    let seqs = pairs(&f, vec![]).sequences;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir().join("config.json"), tmp.path().join("config.json")).unwrap();
    std::fs::copy(
        dir().join("reference_model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    let reference = hf::load(tmp.path(), &device).unwrap();
    for (model, a, b) in [
        (&reference, "ref_chosen_logps", "ref_rejected_logps"),
        (&policy(&device), "chosen_logps", "rejected_logps"),
    ] {
        let ours = sequence_log_probs(model, &seqs, &device);
        for (x, y) in ours.iter().zip(stored(&f, a, b)) {
            assert!((x - y).abs() < 1e-4, "{a}: {x} vs {y}");
        }
    }
}

#[test]
fn dpo_sigmoid_loss_matches_trl() {
    let f = file("dpo.safetensors");
    let reference = stored(&f, "ref_chosen_logps", "ref_rejected_logps");
    let dpo = Dpo::new(0.1, PreferenceLoss::Sigmoid);
    check(&dpo, pairs(&f, reference), &f, "sigmoid");
    let stats = dpo.take_stats();
    let mean = |k: &str| f.f32(k, None).unwrap().iter().sum::<f32>() as f64 / 3.0;
    assert!((stats.mean_chosen() - mean("sigmoid.chosen_rewards")).abs() < 1e-5);
    assert!((stats.mean_rejected() - mean("sigmoid.rejected_rewards")).abs() < 1e-5);
}

/// IPO as TRL computes it: log-probabilities averaged over each answer's tokens.
#[test]
fn ipo_loss_matches_trl() {
    let f = file("dpo.safetensors");
    let reference = stored(&f, "ref_chosen_logps", "ref_rejected_logps");
    check(
        &Dpo::new(0.1, PreferenceLoss::Ipo),
        pairs(&f, reference),
        &f,
        "ipo",
    );
}
