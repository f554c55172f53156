//! Bad checkpoints and configs give one-line errors that name the file and the culprit, and
//! nothing is written.

use burn::tensor::Device;
use minicpm_model::hf;
use std::path::{Path, PathBuf};

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

fn copy_fixture(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(case).join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    let e = hf::load(dir, &Device::flex())
        .expect_err("loading must fail")
        .to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(p, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn missing_weights_file() {
    let dir = copy_fixture("mha_tied");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn truncated_weights_file() {
    let dir = copy_fixture("mha_tied");
    let p = dir.path().join("model.safetensors");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let before = std::fs::read(&p).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    assert_eq!(std::fs::read(&p).unwrap(), before, "the file is left alone");
}

#[test]
fn tensor_shape_mismatch_names_the_tensor() {
    let dir = copy_fixture("mha_tied");
    edit_config(dir.path(), |m| {
        m.insert("intermediate_size".into(), 96.into());
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("shape"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_fixture("mha_tied");
    edit_config(dir.path(), |m| {
        m.insert("tie_word_embeddings".into(), false.into());
    });
    let e = load_err(dir.path());
    assert!(e.contains("lm_head.weight") && e.contains("missing"), "{e}");
}

#[test]
fn unknown_config_key_is_named() {
    let dir = copy_fixture("mha_tied");
    edit_config(dir.path(), |m| {
        m.insert("hidden_sise".into(), 32.into());
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json") && e.contains("hidden_sise") && e.contains("unknown"),
        "{e}"
    );
}

#[test]
fn wrong_type_and_inconsistent_heads_are_named() {
    let dir = copy_fixture("mha_tied");
    edit_config(dir.path(), |m| {
        m.insert("num_hidden_layers".into(), "two".into());
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json") && e.contains("num_hidden_layers") && e.contains("invalid type"),
        "{e}"
    );

    let dir = copy_fixture("mha_tied");
    edit_config(dir.path(), |m| {
        m.insert("num_attention_heads".into(), 3.into());
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("num_attention_heads") && e.contains("not divisible"),
        "{e}"
    );

    let dir = copy_fixture("mha_tied");
    edit_config(dir.path(), |m| {
        m.insert("num_key_value_heads".into(), 3.into());
    });
    let e = load_err(dir.path());
    assert!(e.contains("num_key_value_heads"), "{e}");
}

/// `case`'s weights split over two shards and an index; `drop` names a tensor left out of both.
fn shard_fixture(case: &str, drop: Option<&str>) -> tempfile::TempDir {
    use minicpm_model::safetensors_io::{write_f32, F32Tensor, TensorFile};
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture(case).join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let source = TensorFile::open(&fixture(case).join("model.safetensors")).unwrap();
    let names: Vec<String> = source
        .names()
        .into_iter()
        .filter(|n| Some(n.as_str()) != drop)
        .collect();
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    .iter()
    .enumerate()
    {
        let tensors: Vec<F32Tensor> = names
            .iter()
            .skip(i)
            .step_by(2)
            .map(|n| {
                weight_map.insert(n.clone(), serde_json::json!(shard));
                F32Tensor {
                    name: n.clone(),
                    shape: source.shape(n).unwrap(),
                    data: source.f32(n, None).unwrap(),
                }
            })
            .collect();
        write_f32(&dir.path().join(shard), &tensors, None).unwrap();
    }
    let index = serde_json::json!({ "weight_map": weight_map });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn sharded_checkpoints_name_a_missing_shard_or_tensor() {
    // Complete, it loads.
    hf::load(shard_fixture("mha_tied", None).path(), &Device::flex()).unwrap();

    let dir = shard_fixture("mha_tied", None);
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model-00002-of-00002.safetensors"), "{e}");

    // A tensor neither shard holds: the error names it and the index that should list it, not
    // a model.safetensors that does not exist.
    let dir = shard_fixture("mha_tied", Some("model.norm.weight"));
    let e = load_err(dir.path());
    assert!(
        e.contains("model.norm.weight")
            && e.contains("missing")
            && e.contains("model.safetensors.index.json"),
        "{e}"
    );

    let dir = shard_fixture("mha_tied", None);
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"metadata": {}}"#,
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors.index.json") && e.contains("weight_map"),
        "{e}"
    );
}

#[test]
fn moe_top_k_above_the_expert_count_is_refused() {
    let dir = copy_fixture("moe_tied");
    edit_config(dir.path(), |m| {
        m.insert("num_experts_per_tok".into(), 5.into());
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json")
            && e.contains("num_experts_per_tok")
            && e.contains("between 1 and num_experts (4)"),
        "{e}"
    );
}

#[test]
fn moe_with_zero_experts_is_refused() {
    let dir = copy_fixture("moe_tied");
    edit_config(dir.path(), |m| {
        m.insert("num_experts".into(), 0.into());
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("num_experts") && e.contains("must be positive"),
        "{e}"
    );
}

#[test]
fn experts_per_token_without_experts_is_refused() {
    let dir = copy_fixture("mha_tied");
    edit_config(dir.path(), |m| {
        m.insert("num_experts_per_tok".into(), 2.into());
    });
    let e = load_err(dir.path());
    assert!(e.contains("need num_experts"), "{e}");
}

/// A checkpoint that lost one expert's tensor names that tensor.
#[test]
fn moe_checkpoint_missing_an_expert_tensor_names_it() {
    use minicpm_model::safetensors_io::{write_f32, F32Tensor, TensorFile};
    let dir = copy_fixture("moe_tied");
    let p = dir.path().join("model.safetensors");
    let file = TensorFile::open(&p).unwrap();
    let gone = "model.layers.1.mlp.experts.2.w3.weight";
    let kept: Vec<F32Tensor> = file
        .names()
        .into_iter()
        .filter(|n| n != gone)
        .map(|n| F32Tensor {
            shape: file.shape(&n).unwrap(),
            data: file.f32(&n, None).unwrap(),
            name: n,
        })
        .collect();
    drop(file);
    write_f32(&p, &kept, None).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains(gone) && e.contains("missing"), "{e}");
}
