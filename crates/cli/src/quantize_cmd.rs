//! `minicpm quantize`: a model as a GGUF file of weight-only quantised blocks in llama.cpp's
//! layouts (so llama.cpp runs the same bytes). Embeddings and norms stay unquantised; rows that
//! are not whole blocks fall back as gguf_model::tensor_type says.

use crate::inference;
use anyhow::Context;
use clap::Args;
use minicpm_serve::gguf_model::{self, requantize, FileType, GgufSource};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct QuantizeArgs {
    /// An HF model directory, a checkpoint, a run or a GGUF file written by `export gguf`.
    model: PathBuf,
    /// q8_0, q4_0, q4_k (or f16, f32 to convert without quantising).
    #[arg(long = "type")]
    ty: String,
    /// The GGUF file to write (replaced whole, never left half-written).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: QuantizeArgs) -> anyhow::Result<ExitCode> {
    let file_type: FileType = a.ty.parse().map_err(anyhow::Error::msg)?;
    let path = inference::model_path(&a.model)?;
    let name = crate::export_cmd::default_name(&a.model);
    let gguf = if path.is_file() {
        anyhow::ensure!(
            std::fs::canonicalize(&path).ok() != std::fs::canonicalize(&a.out).ok(),
            "{}: --out is the input file; write the quantised model to another file",
            a.out.display()
        );
        requantize::rebuild(&GgufSource::open(&path)?, &name, file_type)?
    } else {
        gguf_model::export::build(&path, &name, file_type)?
    };
    let summary = gguf_model::export::write(&gguf, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    crate::export_cmd::report_written(&a.out, file_type, &summary, &path);
    Ok(ExitCode::SUCCESS)
}
