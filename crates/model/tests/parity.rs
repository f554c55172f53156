//! Parity with an independent implementation: transformers' Granite model computing MiniCPM
//! (fixtures written by scripts/reference/make_fixtures.py).

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use minicpm_model::named::{visit_named, NamedVisitor};
use minicpm_model::safetensors_io::TensorFile;
use minicpm_model::{hf, MiniCpm};
use std::path::PathBuf;

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

fn reference(case: &str) -> TensorFile {
    TensorFile::open(&fixture(case).join("reference.safetensors")).unwrap()
}

fn input_ids(r: &TensorFile, device: &Device) -> (Tensor<2, Int>, Vec<i64>, [usize; 2]) {
    let (shape, ids) = r.i64("input_ids").unwrap();
    let dims = [shape[0], shape[1]];
    (
        Tensor::from_data(TensorData::new(ids.clone(), dims), device),
        ids,
        dims,
    )
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_logits(case: &str) {
    let device = Device::flex();
    let model = hf::load(&fixture(case), &device).unwrap();
    let r = reference(case);
    let (ids, _, _) = input_ids(&r, &device);
    let ours = to_vec(model.forward(ids, None));
    let theirs = r.f32("logits", None).unwrap();
    let err = max_abs_diff(&ours, &theirs);
    // Two f32 implementations agree to ~1e-7 here; 1e-5 leaves room for summation order while
    // still catching a wrong RoPE layout or residual scale (those move logits by >= 5e-5).
    assert!(err <= 1e-5, "{case}: max abs logit error {err}");
}

#[test]
fn logits_match_transformers_mha_tied() {
    check_logits("mha_tied");
}

#[test]
fn logits_match_transformers_gqa_untied() {
    check_logits("gqa_untied");
}

#[test]
fn logits_match_transformers_gqa_tied() {
    check_logits("gqa_tied");
}

/// Gradient of every parameter, by HF name.
fn named_grads(model: &MiniCpm, grads: &GradientsParams) -> Vec<(String, Vec<f32>)> {
    struct V<'a> {
        grads: &'a GradientsParams,
        out: Vec<(String, Vec<f32>)>,
    }
    impl NamedVisitor for V<'_> {
        fn visit<const D: usize>(&mut self, name: &str, p: &Param<Tensor<D>>) {
            let g = self
                .grads
                .get::<D>(p.id)
                .expect("every parameter has a gradient");
            self.out.push((name.to_string(), to_vec(g)));
        }
    }
    let mut v = V { grads, out: vec![] };
    visit_named(model, &mut v);
    v.out
}

fn check_gradients(case: &str) {
    let device = Device::flex().autodiff();
    let model = hf::load(&fixture(case), &device).unwrap();
    let r = reference(case);
    let (ids, raw, [b, t]) = input_ids(&r, &device);
    // HF's causal-LM loss: position i predicts token i + 1.
    let logits = model.forward(ids, None).narrow(1, 0, t - 1);
    let v = logits.dims()[2];
    let targets: Vec<i64> = (0..b)
        .flat_map(|row| raw[row * t + 1..row * t + t].to_vec())
        .collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [b * (t - 1), 1]), &device);
    let loss = log_softmax(logits.reshape([b * (t - 1), v]), 1)
        .gather(1, targets)
        .mean()
        .neg();
    let ours_loss = loss.clone().into_scalar::<f32>();
    let ref_loss = r.f32("loss", None).unwrap()[0];
    assert!(
        (ours_loss - ref_loss).abs() <= 1e-5,
        "{case}: loss {ours_loss} vs {ref_loss}"
    );

    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let named = named_grads(&model, &grads);
    let expected = r
        .names()
        .into_iter()
        .filter(|n| n.starts_with("grad."))
        .count();
    assert_eq!(named.len(), expected, "{case}: one gradient per tensor");
    for (name, ours) in named {
        let theirs = r.f32(&format!("grad.{name}"), None).unwrap();
        let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
        let rel = max_abs_diff(&ours, &theirs) / scale;
        assert!(
            rel <= 1e-4,
            "{case}: {name}: relative gradient error {rel} (scale {scale})"
        );
    }
}

#[test]
fn gradients_match_transformers_mha_tied() {
    check_gradients("mha_tied");
}

#[test]
fn gradients_match_transformers_gqa_untied() {
    check_gradients("gqa_untied");
}

#[test]
fn kv_cache_decoding_matches_the_full_forward() {
    let device = Device::flex();
    let model = hf::load(&fixture("gqa_untied"), &device).unwrap();
    let r = reference("gqa_untied");
    let (ids, _, [_, t]) = input_ids(&r, &device);
    let ids = ids.narrow(0, 0, 1);
    let full = to_vec(model.forward(ids.clone(), None));
    let mut cache = model.new_cache();
    let prefill = 3;
    let mut stepwise = to_vec(model.forward(ids.clone().narrow(1, 0, prefill), Some(&mut cache)));
    for pos in prefill..t {
        stepwise.extend(to_vec(
            model.forward(ids.clone().narrow(1, pos, 1), Some(&mut cache)),
        ));
    }
    assert_eq!(cache.len(), t);
    let err = max_abs_diff(&full, &stepwise);
    assert!(
        err <= 1e-5,
        "cached decoding differs from the full forward by {err}"
    );
}

#[test]
fn export_round_trips_hf_names_and_values() {
    let device = Device::flex();
    for case in ["mha_tied", "gqa_untied"] {
        let model = hf::load(&fixture(case), &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        hf::save(&model, dir.path()).unwrap();
        let original = TensorFile::open(&fixture(case).join(hf::WEIGHTS_FILE)).unwrap();
        let written = TensorFile::open(&dir.path().join(hf::WEIGHTS_FILE)).unwrap();
        assert_eq!(
            original.names(),
            written.names(),
            "{case}: same tensor names"
        );
        for n in original.names() {
            assert_eq!(
                original.f32(&n, None).unwrap(),
                written.f32(&n, None).unwrap(),
                "{case}: {n}"
            );
        }
        let again = hf::load(dir.path(), &device).unwrap();
        assert_eq!(again.config, model.config);
    }
}
