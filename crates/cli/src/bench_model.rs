//! `minicpm bench random-model`: a GGUF file with a config's shapes and random weights, for
//! speed comparisons (with `bench generate` and llama.cpp's llama-bench on the same file) where
//! no trained model of that size exists. Its tokenizer is the smallest our family has (the three
//! specials and the 256 byte tokens), padded to the vocabulary as llama.cpp pads.

use clap::Args;
use minicpm_data::tokenizer::SPECIAL_TOKENS;
use minicpm_serve::gguf_model::export::{build_from, write, TokenizerFiles};
use minicpm_serve::gguf_model::FileType;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct RandomModelArgs {
    /// A run config (TOML) whose [model] gives the shapes, e.g. configs/minicpm-1b.toml.
    #[arg(long)]
    config: PathBuf,
    /// f32, f16, q8_0, q4_0 or q4_k.
    #[arg(long = "type", default_value = "f16")]
    ty: String,
    /// The GGUF file to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u32,
}

/// A tokenizer.json of the specials and byte tokens alone.
fn byte_tokenizer() -> String {
    let mut vocab = serde_json::Map::new();
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    for b in 0..=255u32 {
        vocab.insert(format!("<0x{b:02X}>"), (3 + b).into());
    }
    let added: Vec<serde_json::Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(id, t)| {
            serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "ByteFallback"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": []}
    })
    .to_string()
}

pub fn run(a: RandomModelArgs) -> anyhow::Result<ExitCode> {
    let file_type: FileType = a.ty.parse().map_err(anyhow::Error::msg)?;
    let cfg = minicpm_train::RunConfig::load(&a.config, &[])?.model;
    let tokenizer = TokenizerFiles {
        json: byte_tokenizer(),
        config: None,
        origin: "byte tokenizer".into(),
    };
    // Uniform weights of standard deviation 0.02 (norms 1), a stream of its own per tensor: the
    // values do not change the speed.
    let half_width = 0.02 * 3f32.sqrt();
    let mut stream = a.seed;
    let values = |_: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        if shape.len() == 1 {
            return Ok(vec![1.0; n]);
        }
        stream = stream.wrapping_add(1);
        let mut v = minicpm_serve::synthetic::uniform(n, stream);
        v.iter_mut().for_each(|x| *x *= half_width);
        Ok(v)
    };
    let origin = a.config.display().to_string();
    let gguf = build_from(&cfg, &origin, &tokenizer, "random", file_type, values)?;
    let summary = write(&gguf, &a.out)?;
    eprintln!(
        "wrote {} ({}, random weights of {}'s shapes, {:.2} GB)",
        a.out.display(),
        file_type.name(),
        a.config.display(),
        summary.bytes as f64 / 1e9
    );
    Ok(ExitCode::SUCCESS)
}
