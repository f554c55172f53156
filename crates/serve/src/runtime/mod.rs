//! The inference runtime: the model without autodiff, its weights in their stored precision or
//! quantised, a preallocated KV cache, and a forward pass over a batch of sequences. The training
//! forward (`minicpm_model::MiniCpm`) is the reference it is tested against.

pub mod kernels;
pub mod matrix;
pub mod source;

pub use matrix::Matrix;
pub use source::{RopeLayout, TensorSource};
