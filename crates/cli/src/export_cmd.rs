//! `minicpm export gguf`: a model as a GGUF file that llama.cpp runs.

use crate::util;
use anyhow::Context;
use clap::{Args, Subcommand};
use minicpm_serve::gguf_model::{self, FileType};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ExportCommand {
    /// Write llama.cpp's GGUF (architecture `minicpm`) of an HF directory, a checkpoint or a run
    /// (its latest checkpoint). Norms stay f32 and the embedding f16 (f32 with --type f32).
    Gguf(GgufArgs),
}

#[derive(Args)]
pub struct GgufArgs {
    /// An HF model directory, a checkpoint directory or a run directory.
    model: PathBuf,
    /// Weight type: f32, f16, q8_0, q4_0 or q4_k.
    #[arg(long = "type", default_value = "f16")]
    ty: String,
    /// The GGUF file to write (replaced whole, never left half-written).
    #[arg(long)]
    out: PathBuf,
    /// `general.name` in the file (default: the model directory's name).
    #[arg(long)]
    name: Option<String>,
}

pub fn run(c: ExportCommand) -> anyhow::Result<ExitCode> {
    match c {
        ExportCommand::Gguf(a) => gguf(a),
    }
}

/// The model's name for `general.name`: its directory's or file's name.
pub fn default_name(model: &Path) -> String {
    let path = std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf());
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "minicpm".into())
}

fn gguf(a: GgufArgs) -> anyhow::Result<ExitCode> {
    let file_type: FileType = a.ty.parse().map_err(anyhow::Error::msg)?;
    let dir = util::resolve_model_dir(&a.model)?;
    let name = a.name.unwrap_or_else(|| default_name(&a.model));
    let summary = gguf_model::export(&dir, &a.out, &name, file_type)
        .with_context(|| format!("exporting {} to GGUF", dir.display()))?;
    report_written(&a.out, file_type, &summary, &dir);
    Ok(ExitCode::SUCCESS)
}

/// The line `export gguf` and `quantize` print when a file is written.
pub fn report_written(out: &Path, file_type: FileType, summary: &gguf_model::Summary, from: &Path) {
    eprintln!(
        "wrote {} ({}, {} tensors, {:.1} MiB) from {}",
        out.display(),
        file_type.name(),
        summary.tensors,
        summary.bytes as f64 / (1 << 20) as f64,
        from.display()
    );
}
