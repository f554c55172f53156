//! Export against llama.cpp's converter (a fixture made with its Python writer), and export then
//! import of random models through [`GgufSource`].

use super::export::{build, export, TOKENIZER_FILE};
use super::names::{rope_heads, unpermute_rows};
use super::{FileType, GgufSource};
use crate::gguf::{Gguf, TensorType, Value};
use crate::runtime::{RopeLayout, TensorSource};
use burn::tensor::Device;
use minicpm_model::config::{RopeScaling, TokenIds};
use minicpm_model::init::init_model;
use minicpm_model::params::tensor_shapes;
use minicpm_model::safetensors_io::TensorFile;
use minicpm_model::{hf, ModelConfig, Parametrization};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

/// scripts/reference/make_gguf_model_fixture.py's GGUF files against ours of the same HF
/// directory: every key with its type and value, every tensor's type, shape and bytes.
fn check_against_converter(file_type: FileType, fixture: &str) {
    let ours = build(&fixtures().join("model"), "fixture", file_type).unwrap();
    let theirs = Gguf::parse(&std::fs::read(fixtures().join(fixture)).unwrap()).unwrap();
    let keys = |g: &Gguf| {
        g.metadata
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&ours), keys(&theirs), "keys in order");
    for ((key, a), (_, b)) in ours.metadata.iter().zip(&theirs.metadata) {
        assert_eq!(a, b, "{key}");
    }
    assert_eq!(ours.tensors.len(), theirs.tensors.len());
    for t in &theirs.tensors {
        let o = ours.tensors.iter().find(|o| o.name == t.name).unwrap();
        assert_eq!((o.ty, &o.shape), (t.ty, &t.shape), "{}", t.name);
        assert!(o.data == t.data, "{}: bytes differ", t.name);
    }
}

#[test]
fn f32_export_is_what_llama_cpps_converter_writes() {
    check_against_converter(FileType::F32, "model-f32.gguf");
}

#[test]
fn q8_0_export_is_what_llama_cpps_converter_writes() {
    check_against_converter(FileType::Q8_0, "model-q8_0.gguf");
}

fn config(tied: bool, rope_scaling: Option<RopeScaling>) -> ModelConfig {
    ModelConfig {
        vocab_size: 48,
        hidden_size: 64,
        // Not whole 32-weight blocks: down_proj falls back to f16 in quantised files.
        intermediate_size: 80,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        hidden_act: "silu".into(),
        max_position_embeddings: 256,
        initializer_range: 0.1,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling,
        tie_word_embeddings: tied,
        bos_token_id: 1,
        eos_token_id: TokenIds::One(2),
        scale_emb: 12.0,
        scale_depth: 1.4,
        dim_model_base: 16.0,
        num_experts: None,
        num_experts_per_tok: None,
        router_aux_loss_coef: None,
        router_z_loss_coef: None,
    }
}

/// A random model saved as an HF directory with the fixture's tokenizer.
fn hf_dir(cfg: &ModelConfig, dir: &Path) {
    let model = init_model(cfg, Parametrization::Mup, 7, &Device::flex());
    hf::save(&model, dir).unwrap();
    std::fs::copy(
        fixtures().join("model").join(TOKENIZER_FILE),
        dir.join(TOKENIZER_FILE),
    )
    .unwrap();
}

/// What storing `values` (rows of `cols`) as `ty` and reading them back gives.
fn stored(values: &[f32], cols: usize, ty: TensorType) -> Vec<f32> {
    match ty {
        TensorType::F32 => values.to_vec(),
        TensorType::F16 => values
            .iter()
            .map(|v| half::f16::from_f32(*v).to_f32())
            .collect(),
        TensorType::Bf16 => unreachable!(),
        TensorType::Quant(q) => values
            .chunks_exact(cols)
            .flat_map(|row| q.dequantize(&q.quantize(row).unwrap()).unwrap())
            .collect(),
    }
}

fn check_round_trip(cfg: &ModelConfig, file_type: FileType) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    hf_dir(cfg, &dir);
    let out = tmp.path().join("model.gguf");
    let summary = export(&dir, &out, "tiny", file_type).unwrap();
    assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());

    let source = GgufSource::open(&out).unwrap();
    assert_eq!(source.config(), cfg, "config round trip");
    assert_eq!(source.rope_layout(), RopeLayout::Interleaved);
    let tokenizer = std::fs::read_to_string(dir.join(TOKENIZER_FILE)).unwrap();
    assert_eq!(source.tokenizer_json().as_deref(), Some(tokenizer.as_str()));
    assert!(source.chat_template().unwrap().contains("<用户>"));
    assert_eq!(source.contains("lm_head.weight"), !cfg.tie_word_embeddings);

    let original = TensorFile::open(&dir.join(hf::WEIGHTS_FILE)).unwrap();
    let shapes = tensor_shapes(cfg);
    assert_eq!(shapes.len(), source.header().tensors.len());
    for (name, shape) in shapes {
        let want = original.f32(&name, Some(&shape)).unwrap();
        if let [len] = shape[..] {
            assert_eq!(source.vector(&name, len).unwrap(), want, "{name}");
            continue;
        }
        let (rows, cols) = (shape[0], shape[1]);
        let m = source.matrix(&name, rows, cols).unwrap();
        let heads = rope_heads(&name, cfg.num_attention_heads, cfg.num_kv_heads());
        let permuted = match heads {
            Some(h) => super::names::permute_rows(&want, cols, h),
            None => want.clone(),
        };
        // Exactly what storing the permuted rows in the tensor's type gives...
        let got = m.to_f32();
        assert_eq!(
            got,
            stored(&permuted, cols, m.ty()),
            "{name} as {:?}",
            m.ty()
        );
        // ...which is the original in HF's order once the permutation is undone.
        let back = match heads {
            Some(h) => unpermute_rows(&got, cols, h),
            None => got,
        };
        let max = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        let tol = match m.ty() {
            TensorType::F32 => 0.0,
            TensorType::F16 => max / 1000.0,
            _ => max / 4.0,
        };
        for (a, b) in back.iter().zip(&want) {
            assert!((a - b).abs() <= tol, "{name}: {a} vs {b}");
        }
    }
}

#[test]
fn every_type_round_trips_tied_and_untied() {
    let mut yarn = RopeScaling::new("yarn", 4.0);
    yarn.original_max_position_embeddings = Some(64);
    for file_type in FileType::ALL {
        check_round_trip(&config(true, None), file_type);
        check_round_trip(&config(false, Some(yarn.clone())), file_type);
    }
    let linear = RopeScaling::new("linear", 2.0);
    check_round_trip(&config(true, Some(linear)), FileType::F16);
}

#[test]
fn tensor_types_follow_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(false, None);
    hf_dir(&cfg, tmp.path());
    let g = build(tmp.path(), "tiny", FileType::Q4_0).unwrap();
    let ty = |n: &str| g.tensors.iter().find(|t| t.name == n).unwrap().ty;
    let q4 = TensorType::Quant(crate::quant::QuantType::Q4_0);
    assert_eq!(ty("token_embd.weight"), TensorType::F16);
    assert_eq!(ty("output.weight"), TensorType::F16);
    assert_eq!(ty("output_norm.weight"), TensorType::F32);
    assert_eq!(ty("blk.1.attn_k.weight"), q4);
    assert_eq!(ty("blk.1.ffn_up.weight"), q4);
    assert_eq!(ty("blk.1.ffn_down.weight"), TensorType::F16);
    assert_eq!(g.get("general.file_type"), Some(&Value::U32(2)));
}

fn exported(cfg: &ModelConfig) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    hf_dir(cfg, &dir);
    let out = tmp.path().join("model.gguf");
    export(&dir, &out, "tiny", FileType::F32).unwrap();
    (tmp, out)
}

fn one_line(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "{s}");
    s
}

#[test]
fn a_truncated_file_is_a_one_line_error_naming_it() {
    let (_tmp, out) = exported(&config(true, None));
    let bytes = std::fs::read(&out).unwrap();
    let cut = out.with_extension("cut.gguf");
    for len in [10, bytes.len() / 3, bytes.len() - 100] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let e = one_line(GgufSource::open(&cut).err().unwrap());
        assert!(e.contains(&cut.display().to_string()), "{e}");
        assert!(e.contains("truncated"), "{e}");
    }
}

#[test]
fn wrong_shapes_missing_tensors_and_other_architectures_are_named() {
    let (_tmp, out) = exported(&config(true, None));
    let source = GgufSource::open(&out).unwrap();
    let e = one_line(
        source
            .matrix("model.layers.0.self_attn.q_proj.weight", 64, 32)
            .err()
            .unwrap(),
    );
    assert!(e.contains(&out.display().to_string()), "{e}");
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("shape [64, 64], expected [64, 32]"),
        "{e}"
    );
    let e = one_line(source.matrix("lm_head.weight", 48, 64).err().unwrap());
    assert!(e.contains("output.weight") && e.contains("missing"), "{e}");
    let e = one_line(source.vector("model.norm.weight", 63).err().unwrap());
    assert!(e.contains("output_norm.weight"), "{e}");

    let mut g = Gguf::parse(&std::fs::read(&out).unwrap()).unwrap();
    g.metadata[0].1 = Value::String("llama".into());
    std::fs::write(&out, g.to_bytes()).unwrap();
    let e = one_line(GgufSource::open(&out).err().unwrap());
    assert!(
        e.contains("general.architecture") && e.contains("\"llama\""),
        "{e}"
    );
}

#[test]
fn export_refuses_a_directory_without_a_tokenizer_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    hf_dir(&config(true, None), &dir);
    std::fs::remove_file(dir.join(TOKENIZER_FILE)).unwrap();
    let out = tmp.path().join("model.gguf");
    let e = one_line(export(&dir, &out, "tiny", FileType::F16).unwrap_err());
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
    assert!(!out.exists());
    let listing: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(listing.len(), 1, "no temp file left behind");
}

/// Re-quantising an exported f32 file gives the tensors and metadata of quantising the HF
/// directory directly (the q/k permutation undone and redone), GQA and untied included.
#[test]
fn requantising_an_f32_file_equals_quantising_the_directory() {
    let cfg = config(false, None);
    let tmp = tempfile::tempdir().unwrap();
    hf_dir(&cfg, tmp.path());
    let f32_file = tmp.path().join("model-f32.gguf");
    export(tmp.path(), &f32_file, "m", FileType::F32).unwrap();
    let src = super::GgufSource::open(&f32_file).unwrap();
    for ty in [FileType::Q8_0, FileType::Q4_0, FileType::F16] {
        let direct = build(tmp.path(), "m", ty).unwrap();
        let again = super::requantize::rebuild(&src, "m", ty).unwrap();
        assert_eq!(again.tensors, direct.tensors, "{ty:?}");
        assert_eq!(again.metadata, direct.metadata, "{ty:?}");
    }
}

#[test]
fn export_refuses_rope_scalings_llama_cpp_cannot_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut custom_yarn = RopeScaling::new("yarn", 4.0);
    custom_yarn.attention_factor = Some(1.5);
    for (scaling, culprit) in [
        (RopeScaling::new("dynamic", 4.0), "dynamic NTK"),
        (custom_yarn, "attention_factor"),
    ] {
        let dir = tmp.path().join(&scaling.kind);
        hf_dir(&config(false, Some(scaling)), &dir);
        let out = tmp.path().join("model.gguf");
        let e = export(&dir, &out, "tiny", FileType::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rope_scaling") && e.contains(culprit), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(!out.exists(), "nothing written");
    }
}
