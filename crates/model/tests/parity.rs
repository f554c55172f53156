//! Parity with an independent implementation: transformers' Granite model computing MiniCPM
//! (fixtures written by scripts/reference/make_fixtures.py, make_moe_fixtures.py and
//! make_rope_fixtures.py).

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

/// Every RoPE scaling against transformers' implementation of the same type (fixture written by
/// scripts/reference/make_rope_fixtures.py): the logits of a 96-token input, three times past
/// `max_position_embeddings`, and the cos and sin tables at positions up to 131071 of a
/// 131072-token sequence, where a frequency off by one f32 rounding would turn the angle by
/// about 1e-2.
#[test]
fn rope_scalings_match_transformers() {
    let device = Device::flex();
    let dir = fixture("rope_scaling");
    let r = reference("rope_scaling");
    let (ids, _, _) = input_ids(&r, &device);
    let (_, positions) = r.i64("positions").unwrap();
    for mode in ["abf", "linear", "dynamic", "yarn", "yarn_options"] {
        let cfg =
            minicpm_model::ModelConfig::from_hf_json(&dir.join(format!("{mode}.json"))).unwrap();
        let model = hf::load_weights(&dir, &cfg, &device).unwrap();
        let ours = to_vec(model.forward(ids.clone(), None));
        let theirs = r.f32(&format!("logits.{mode}"), None).unwrap();
        let err = max_abs_diff(&ours, &theirs);
        assert!(err <= 1e-5, "{mode}: max abs logit error {err}");

        let freqs = minicpm_model::rope::Frequencies::new(&cfg, 131_072);
        let half = cfg.head_dim() / 2;
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for &p in &positions {
            let (c, s): (Vec<f32>, Vec<f32>) = freqs.cos_sin(p as usize).unzip();
            for _ in 0..2 {
                cos.extend_from_slice(&c[..half]);
                sin.extend_from_slice(&s[..half]);
            }
        }
        let (want_cos, want_sin) = (
            r.f32(&format!("cos.{mode}"), None).unwrap(),
            r.f32(&format!("sin.{mode}"), None).unwrap(),
        );
        let err = max_abs_diff(&cos, &want_cos).max(max_abs_diff(&sin, &want_sin));
        assert!(err <= 1e-5, "{mode}: cos/sin tables off by {err}");
    }
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
fn moe_logits_match_transformers_granitemoe_tied() {
    check_logits("moe_tied");
}

#[test]
fn moe_logits_match_transformers_granitemoe_untied() {
    check_logits("moe_untied");
}

#[test]
fn moe_gradients_match_transformers_granitemoe_tied() {
    check_gradients("moe_tied");
}

#[test]
fn moe_gradients_match_transformers_granitemoe_untied() {
    check_gradients("moe_untied");
}

/// The routing (each layer's router softmax and top-k choice) as transformers computed it,
/// and the load-balancing and z losses as the fixture script's transcription of the formulas
/// (docs/MODEL.md section 12) computed them from transformers' router logits.
#[test]
fn moe_routing_and_router_losses_match_the_reference() {
    for case in ["moe_tied", "moe_untied"] {
        let device = Device::flex();
        let model = hf::load(&fixture(case), &device).unwrap();
        let r = reference(case);
        let (ids, _, _) = input_ids(&r, &device);
        let (_, routers) = model.hidden_routed(ids, None);
        assert_eq!(routers.len(), model.config.num_hidden_layers);
        let (mut balance, mut z) = (0.0f32, 0.0f32);
        for (i, router) in routers.iter().enumerate() {
            let (_, chosen) = r.i64(&format!("topk_index.{i}")).unwrap();
            let k = model.config.num_experts_per_tok.unwrap();
            let e = model.config.num_experts.unwrap();
            let mut load = vec![0f32; e];
            for &c in &chosen {
                load[c as usize] += 1.0 / chosen.len() as f32;
            }
            assert_eq!(chosen.len() % k, 0);
            let diff = max_abs_diff(&router.load, &load);
            assert!(diff < 1e-6, "{case} layer {i}: expert load {diff}");
            balance += router.balance_loss.clone().into_scalar::<f32>();
            z += router.z_loss.clone().into_scalar::<f32>();
        }
        let layers = routers.len() as f32;
        let (balance, z) = (balance / layers, z / layers);
        let want_balance = r.f32("aux_loss", None).unwrap()[0];
        let want_z = r.f32("z_loss", None).unwrap()[0];
        assert!(
            (balance - want_balance).abs() <= 1e-5 * want_balance,
            "{case}: balance loss {balance} vs {want_balance}"
        );
        assert!(
            (z - want_z).abs() <= 1e-5 * want_z,
            "{case}: z loss {z} vs {want_z}"
        );
    }
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

/// Every weight of `model` as written by `hf::save`, by HF name.
fn saved_weights(model: &MiniCpm) -> std::collections::BTreeMap<String, Vec<f32>> {
    let dir = tempfile::tempdir().unwrap();
    hf::save(model, dir.path()).unwrap();
    let file = TensorFile::open(&dir.path().join(hf::WEIGHTS_FILE)).unwrap();
    file.names()
        .into_iter()
        .map(|n| {
            let v = file.f32(&n, None).unwrap();
            (n, v)
        })
        .collect()
}

/// A safetensors file of `tensors` (name, shape, little-endian bytes) stored as `dtype`.
fn write_tensors(
    path: &std::path::Path,
    dtype: safetensors::Dtype,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, shape, bytes)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// bfloat16 by hand: the upper half of the f32 bits, rounded to nearest, ties to even.
fn round_to_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

#[test]
fn bf16_and_f16_checkpoints_load_as_their_rounded_values() {
    let device = Device::flex();
    let source = TensorFile::open(&fixture("gqa_untied").join(hf::WEIGHTS_FILE)).unwrap();
    let originals: Vec<(String, Vec<usize>, Vec<f32>)> = source
        .names()
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                source.shape(&n).unwrap(),
                source.f32(&n, None).unwrap(),
            )
        })
        .collect();
    type Half = (safetensors::Dtype, fn(f32) -> [u8; 2], fn(f32) -> f32);
    let formats: [(&str, Half); 2] = [
        (
            "bf16",
            (
                safetensors::Dtype::BF16,
                |x| half::bf16::from_f32(x).to_le_bytes(),
                round_to_bf16,
            ),
        ),
        (
            "f16",
            (
                safetensors::Dtype::F16,
                |x| half::f16::from_f32(x).to_le_bytes(),
                |x| half::f16::from_f32(x).to_f32(),
            ),
        ),
    ];
    for (label, (dtype, encode, rounded)) in formats {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            fixture("gqa_untied").join(hf::CONFIG_FILE),
            dir.path().join(hf::CONFIG_FILE),
        )
        .unwrap();
        let tensors: Vec<_> = originals
            .iter()
            .map(|(n, shape, v)| {
                (
                    n.clone(),
                    shape.clone(),
                    v.iter().flat_map(|&x| encode(x)).collect(),
                )
            })
            .collect();
        write_tensors(&dir.path().join(hf::WEIGHTS_FILE), dtype, &tensors);
        let model = hf::load(dir.path(), &device).unwrap();
        let loaded = saved_weights(&model);
        assert_eq!(loaded.len(), originals.len(), "{label}: every tensor");
        let mut changed = 0;
        for (name, _, v) in &originals {
            let want: Vec<f32> = v.iter().map(|&x| rounded(x)).collect();
            assert_eq!(loaded[name], want, "{label}: {name}");
            // f16 keeps 11 significant bits, bf16 8: the rounding error is at most half an ulp
            // (below 2^-14, f16's subnormals have a fixed spacing of 2^-24).
            let (rel, abs) = if label == "f16" {
                (2f32.powi(-11), 2f32.powi(-25))
            } else {
                (2f32.powi(-8), 0.0)
            };
            for (&a, &b) in v.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= rel * a.abs() + abs,
                    "{label}: {name}: {a} -> {b}"
                );
            }
            changed += v.iter().zip(&want).filter(|(a, b)| a != b).count();
        }
        assert!(changed > 0, "{label}: the rounding was not a no-op");
    }
}

#[test]
fn a_sharded_checkpoint_loads_the_same_model_as_the_single_file() {
    let device = Device::flex();
    let case = fixture("gqa_untied");
    let single = hf::load(&case, &device).unwrap();
    let source = TensorFile::open(&case.join(hf::WEIGHTS_FILE)).unwrap();
    let names = source.names();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(case.join(hf::CONFIG_FILE), dir.path().join(hf::CONFIG_FILE)).unwrap();
    // Alternate tensors between the shards, so both hold parts of every layer, as HF's
    // size-based sharding does for large models.
    let shard_names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shard_names.iter().enumerate() {
        let tensors: Vec<_> = names
            .iter()
            .skip(i)
            .step_by(2)
            .map(|n| {
                weight_map.insert(n.clone(), serde_json::json!(shard));
                let bytes = source
                    .f32(n, None)
                    .unwrap()
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect();
                (n.clone(), source.shape(n).unwrap(), bytes)
            })
            .collect();
        assert!(!tensors.is_empty());
        write_tensors(&dir.path().join(shard), safetensors::Dtype::F32, &tensors);
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
    assert!(!dir.path().join(hf::WEIGHTS_FILE).exists());

    let sharded = hf::load(dir.path(), &device).unwrap();
    assert_eq!(sharded.config, single.config);
    assert_eq!(saved_weights(&sharded), saved_weights(&single));
    let r = reference("gqa_untied");
    let (ids, _, _) = input_ids(&r, &device);
    assert_eq!(
        to_vec(sharded.forward(ids.clone(), None)),
        to_vec(single.forward(ids, None))
    );
}

#[test]
fn an_eos_list_in_config_json_is_read_kept_and_written_back() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for f in [hf::CONFIG_FILE, hf::WEIGHTS_FILE] {
        std::fs::copy(fixture("mha_tied").join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join(hf::CONFIG_FILE);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // A list, as chat models ship it: stop at the end of the text or at the end of a turn.
    cfg["eos_token_id"] = serde_json::json!([2, 73440]);
    std::fs::write(&path, cfg.to_string()).unwrap();

    let model = hf::load(dir.path(), &device).unwrap();
    let eos = &model.config.eos_token_id;
    assert!(eos.contains(2) && eos.contains(73440));
    assert!(!eos.contains(1) && !eos.contains(73441));

    let out = tempfile::tempdir().unwrap();
    hf::save(&model, out.path()).unwrap();
    for file in [hf::CONFIG_FILE, "generation_config.json"] {
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join(file)).unwrap()).unwrap();
        assert_eq!(
            written["eos_token_id"],
            serde_json::json!([2, 73440]),
            "{file}"
        );
    }
    assert_eq!(hf::load(out.path(), &device).unwrap().config, model.config);
}
