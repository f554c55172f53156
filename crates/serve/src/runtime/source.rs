//! Where the runtime's weights come from: an HF directory (safetensors) or a GGUF file. A
//! source answers by HF tensor name (`model.layers.3.self_attn.q_proj.weight`), whatever the
//! file calls the tensor, and says how its q/k rows are laid out for RoPE.

use super::matrix::Matrix;
use minicpm_model::error::ModelError;

/// The order of the dimensions within each attention head of the q and k projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// HF's `rotate_half`: dimension `i` pairs with `i + head_dim/2` (safetensors checkpoints).
    Halves,
    /// llama.cpp's layout: dimension `2i` pairs with `2i + 1` (GGUF files, whose q/k rows are
    /// permuted at conversion; docs/MODEL.md section 11).
    Interleaved,
}

pub trait TensorSource {
    /// The file or directory, for error messages.
    fn origin(&self) -> String;
    /// Whether the source holds the tensor (an untied `lm_head.weight`, for instance).
    fn contains(&self, name: &str) -> bool;
    /// The 2-D weight `name`, which must be `[rows, cols]`, in its stored type.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, ModelError>;
    /// The 1-D tensor `name` (a norm's weight) as f32; it must have `len` elements.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError>;
    fn rope_layout(&self) -> RopeLayout;
}
